package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ferry-oci/ferry/graph"
)

// memorySource serves repositories from memory stores.
type memorySource map[string]*memory.Store

func (s memorySource) Repository(_ context.Context, repo string) (oras.ReadOnlyTarget, error) {
	return s[repo], nil
}

func ExamplePlanCopy() {
	ctx := context.Background()
	repo := memory.New()
	push := func(st *memory.Store, mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := st.Push(ctx, d, bytes.NewReader(data)); err != nil {
			panic(err)
		}
		return d
	}
	layerData := bytes.Repeat([]byte("layer "), 1000)
	layer := push(repo, ocispec.MediaTypeImageLayer, layerData)
	config := push(repo, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	raw, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}})
	manifest := push(repo, ocispec.MediaTypeImageManifest, raw)
	if err := repo.Tag(ctx, manifest, "v1"); err != nil {
		panic(err)
	}
	src := memorySource{"example.com/app": repo}
	g, err := graph.Discover(ctx, src, []graph.RootSpec{{Ref: "example.com/app:v1", Kind: graph.RootImage}}, graph.DiscoverOptions{})
	if err != nil {
		panic(err)
	}

	// The destination has the layer already.
	dest := memory.New()
	push(dest, ocispec.MediaTypeImageLayer, layerData)

	plan, err := graph.PlanCopy(ctx, src, g, graph.PlanOptions{Dest: dest})
	if err != nil {
		panic(err)
	}
	t := plan.Total
	fmt.Printf("%d blobs, %d bytes: %d to fetch, %d already at the destination\n", t.Blobs, t.Total, t.Fetch, t.Dest)
	for _, pb := range plan.Blobs {
		fmt.Println(pb.Desc.MediaType, pb.Fetch, pb.AtDest)
	}
	// Output:
	// 3 blobs, 6433 bytes: 433 to fetch, 6000 already at the destination
	// application/vnd.oci.image.manifest.v1+json true false
	// application/vnd.oci.image.config.v1+json true false
	// application/vnd.oci.image.layer.v1.tar false true
}
