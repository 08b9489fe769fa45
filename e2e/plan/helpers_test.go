// Package plan_test runs `ferry copy --dry-run`, `copy --json` and the
// progress display against registries started in process: the plan says
// what the copy then does, the JSON documents carry their fields, and bars
// are drawn on a terminal only.
package plan_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The JSON documents as a script reads them; decoding rejects unknown
// fields so that a renamed field fails here.
type (
	planBytes struct {
		Blobs       int   `json:"blobs"`
		Bytes       int64 `json:"bytes"`
		Fetch       int64 `json:"fetch"`
		Store       int64 `json:"store"`
		Destination int64 `json:"destination"`
		LeftOut     int64 `json:"leftOut"`
	}
	movedBytes struct {
		Blobs     int   `json:"blobs"`
		Bytes     int64 `json:"bytes"`
		Moved     int64 `json:"moved"`
		Skipped   int64 `json:"skipped"`
		Mounted   int64 `json:"mounted"`
		Fetched   int64 `json:"fetched"`
		FromStore int64 `json:"fromStore"`
		LeftOut   int64 `json:"leftOut"`
	}
	rootDoc struct {
		Ref         string   `json:"ref"`
		Digest      string   `json:"digest"`
		Kind        string   `json:"kind"`
		MediaType   string   `json:"mediaType"`
		Size        int64    `json:"size"`
		Destination string   `json:"destination"`
		Tags        []string `json:"tags"`
	}
	destinationDoc struct {
		Type       string `json:"type"`
		Repository string `json:"repository"`
		Path       string `json:"path"`
		SHA256     string `json:"sha256"`
		LockOutput string `json:"lockOutput"`
	}
	imageDoc struct {
		Ref           string `json:"ref"`
		Digest        string `json:"digest"`
		Kind          string `json:"kind"`
		MediaType     string `json:"mediaType"`
		Source        string `json:"source"`
		Destination   string `json:"destination"`
		AtDestination bool   `json:"atDestination"`
	}
	leftOutDoc struct {
		Image  string `json:"image"`
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
		Reason string `json:"reason"`
	}
	planDoc struct {
		DryRun      bool           `json:"dryRun"`
		Roots       []rootDoc      `json:"roots"`
		Destination destinationDoc `json:"destination"`
		Images      []struct {
			imageDoc
			Bytes planBytes `json:"bytes"`
		} `json:"images"`
		Total            planBytes    `json:"total"`
		LeftOut          []leftOutDoc `json:"leftOut"`
		DiscoveryFetched int64        `json:"discoveryFetched"`
	}
	resultDoc struct {
		DryRun      bool           `json:"dryRun"`
		Roots       []rootDoc      `json:"roots"`
		Destination destinationDoc `json:"destination"`
		Images      []struct {
			imageDoc
			Bytes movedBytes `json:"bytes"`
		} `json:"images"`
		Total   movedBytes   `json:"total"`
		LeftOut []leftOutDoc `json:"leftOut"`
	}
)

// decode parses stdout as exactly one JSON document.
func decode[T any](t *testing.T, stdout string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not the expected JSON document: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document on stdout:\n%s", stdout)
	}
	return v
}

// layersOf returns the layer descriptors of the image manifest d in repoRef.
func layersOf(ctx context.Context, t *testing.T, b *harness.Builder, repoRef string, d digest.Digest) []ocispec.Descriptor {
	t.Helper()
	_, raw := b.FetchManifest(ctx, t, repoRef, d.String())
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m.Layers
}

// noWrites fails when the proxy saw a request that writes.
func noWrites(t *testing.T, name string, s harness.Stats) {
	t.Helper()
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		if n := s.Count(m, ""); n != 0 {
			t.Errorf("%s: %d %s requests during a dry run", name, n, m)
		}
	}
	if s.BlobBytesUploaded != 0 {
		t.Errorf("%s: %d bytes uploaded during a dry run", name, s.BlobBytesUploaded)
	}
}

// world is a bundle on a source registry (behind a counting proxy) and an
// empty destination registry (behind its own proxy).
type world struct {
	src, dst           *harness.Registry
	srcProxy, dstProxy *harness.Proxy
	builder            *harness.Builder
	bundle             ocispec.Descriptor
	app, worker, multi ocispec.Descriptor
	win                ocispec.Descriptor // has a non-distributable layer
	refs               []string           // images.yml, through the source proxy
}

// bundleRef is the bundle's tag through the source proxy.
func (w *world) bundleRef() string { return w.srcProxy.Ref("team/bundle") + ":v1" }

// newWorld pushes a bundle of four images: app (two layers on a shared
// base), worker (a Docker image on the same base), multi (an index of two
// images) and win (an image with a non-distributable layer). layer is the
// size of app's and worker's own layers.
func newWorld(t *testing.T, layer int) *world {
	t.Helper()
	ctx := t.Context()
	w := &world{
		src: harness.StartRegistry(t, harness.RegistryOptions{}),
		dst: harness.StartRegistry(t, harness.RegistryOptions{}),
	}
	w.srcProxy = harness.StartProxy(t, w.src.Host)
	w.dstProxy = harness.StartProxy(t, w.dst.Host)
	w.builder = w.src.Builder(7)
	b := w.builder
	base := []byte(strings.Repeat("shared base layer of the plan images\n", 2000))
	w.app = b.Image(ctx, t, w.src.Ref("team/app"), harness.ImageSpec{Layers: []int{layer, layer / 2}, SharedBase: base})
	w.worker = b.Image(ctx, t, w.src.Ref("team/worker"), harness.ImageSpec{Layers: []int{layer}, SharedBase: base, Docker: true})
	w.multi = b.Index(ctx, t, w.src.Ref("team/multi"), harness.IndexSpec{Layers: []int{4000}})
	w.win = b.Image(ctx, t, w.src.Ref("team/win"), harness.ImageSpec{NonDistributable: true, Docker: true})
	w.refs = []string{
		harness.DigestRef(w.srcProxy.Ref("team/app"), w.app.Digest),
		harness.DigestRef(w.srcProxy.Ref("team/worker"), w.worker.Digest),
		harness.DigestRef(w.srcProxy.Ref("team/multi"), w.multi.Digest),
		harness.DigestRef(w.srcProxy.Ref("team/win"), w.win.Digest),
	}
	w.bundle = b.Bundle(ctx, t, w.src.Ref("team/bundle"), harness.BundleSpec{Images: w.refs, Tag: "v1"})
	return w
}
