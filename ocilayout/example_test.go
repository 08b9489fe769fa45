package ocilayout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/ocilayout"
)

// memBlobs is a BlobOpener over blobs held in memory.
type memBlobs map[digest.Digest][]byte

func (m memBlobs) OpenBlob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m[d.Digest])), nil
}

func (m memBlobs) add(mt string, b []byte) ocispec.Descriptor {
	m[digest.FromBytes(b)] = b
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// Write a one-image layout as a tar, then read it back in place.
func Example() {
	ctx := context.Background()
	blobs := memBlobs{}
	layer := blobs.add(ocispec.MediaTypeImageLayer, []byte("layer bytes"))
	config := blobs.add(ocispec.MediaTypeImageConfig, []byte(`{"os":"linux"}`))
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}})
	manifest := blobs.add(ocispec.MediaTypeImageManifest, m)

	index, err := ocilayout.NewIndex([]ocilayout.Root{
		{Desc: manifest, Tag: "v1", OriginalRef: "registry.example/app:v1"},
	})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.tar")
	if _, err := ocilayout.WriteTar(ctx, path, []ocispec.Descriptor{layer, config, manifest}, index, blobs, ocilayout.WriteOptions{}); err != nil {
		panic(err)
	}

	t, err := ocilayout.OpenTar(ctx, path)
	if err != nil {
		panic(err)
	}
	defer t.Close()
	for _, r := range t.Roots() {
		fmt.Println(r.RefName(), r.OriginalRef, r.Desc.MediaType)
	}
	desc, _ := t.Resolve(ctx, "v1")
	problems, _ := t.Verify(ctx)
	fmt.Println(desc.Digest == manifest.Digest, len(t.Blobs()), "blobs,", len(problems), "problems")
	// Output:
	// v1 registry.example/app:v1 application/vnd.oci.image.manifest.v1+json
	// true 3 blobs, 0 problems
}

// Write the same tar while the blobs arrive, in any order and from several
// goroutines: the layer first here, then Commit writes the rest.
func ExampleCreateTar() {
	ctx := context.Background()
	blobs := memBlobs{}
	layer := blobs.add(ocispec.MediaTypeImageLayer, []byte("layer bytes"))
	config := blobs.add(ocispec.MediaTypeImageConfig, []byte(`{"os":"linux"}`))
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}})
	manifest := blobs.add(ocispec.MediaTypeImageManifest, m)
	all := []ocispec.Descriptor{layer, config, manifest}
	index, err := ocilayout.NewIndex([]ocilayout.Root{{Desc: manifest, Tag: "v1"}})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	b, err := ocilayout.CreateTar(ctx, filepath.Join(dir, "built.tar"), all, index, ocilayout.WriteOptions{})
	if err != nil {
		panic(err)
	}
	defer b.Abort() // removes the unfinished tar on any early return
	if err := b.WriteBlob(ctx, layer, blobs); err != nil {
		panic(err)
	}
	built, err := b.Commit(ctx, blobs)
	if err != nil {
		panic(err)
	}
	written, err := ocilayout.WriteTar(ctx, filepath.Join(dir, "written.tar"), all, index, blobs, ocilayout.WriteOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println(built == written)
	// Output:
	// true
}
