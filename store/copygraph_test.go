package store

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
)

// countingTarget counts the fetches that reach a target.
type countingTarget struct {
	oras.ReadOnlyTarget
	fetches atomic.Int64
}

func (c *countingTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	c.fetches.Add(1)
	return c.ReadOnlyTarget.Fetch(ctx, desc)
}

// testImage pushes a small image (config, two layers, manifest) to a new
// memory store and returns it with the manifest's descriptor.
func testImage(t *testing.T) (*memory.Store, ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	mem := memory.New()
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := descOf(data)
		d.MediaType = mediaType
		if err := mem.Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	layer1, _ := randomBlob(t, 300_000)
	layer2, _ := randomBlob(t, 100_000)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`)),
		Layers: []ocispec.Descriptor{
			push(ocispec.MediaTypeImageLayerGzip, layer1),
			push(ocispec.MediaTypeImageLayerGzip, layer2),
		},
	}
	m.SchemaVersion = 2
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return mem, push(ocispec.MediaTypeImageManifest, data)
}

func TestCopyGraphThroughCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mem, root := testImage(t)
	remote := &countingTarget{ReadOnlyTarget: mem}
	s := openStore(t, t.TempDir())

	dst := memory.New()
	if err := oras.CopyGraph(ctx, s.Cache(remote), dst, root, oras.CopyGraphOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := remote.fetches.Load(); n != 4 {
		t.Errorf("first copy fetched %d times from the remote, want 4", n)
	}
	if u := mustUsage(t, s); u.Blobs != 4 || u.Partials != 0 {
		t.Errorf("store after the first copy: %+v, want 4 blobs", u)
	}
	// A second copy to an empty destination fetches nothing remotely.
	dst2 := memory.New()
	if err := oras.CopyGraph(ctx, s.Cache(remote), dst2, root, oras.CopyGraphOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := remote.fetches.Load(); n != 4 {
		t.Errorf("second copy fetched from the remote: %d fetches in all", n)
	}
	if ok, err := dst2.Exists(ctx, root); err != nil || !ok {
		t.Errorf("second destination lacks the manifest: %v", err)
	}
	mustVerifyClean(t, s)

	// Copying from a store's cache into the same store ends (no wait on
	// its own lock) and stores the image.
	s2 := openStore(t, t.TempDir())
	if err := oras.CopyGraph(ctx, s2.Cache(mem), s2, root, oras.CopyGraphOptions{}); err != nil {
		t.Fatal(err)
	}
	if u := mustUsage(t, s2); u.Blobs != 4 {
		t.Errorf("store filled by CopyGraph into itself: %+v, want 4 blobs", u)
	}
}
