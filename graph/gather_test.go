package graph

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// TestGather checks that every blob of the graph ends up in local storage,
// listed once and sorted, including what sits below a manifest that local
// already had (discovery through a caching store commits manifests first).
func TestGather(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	local := memory.New()
	// Pre-seed local with the root manifest only, as a store would hold
	// it after discovery: its layers must still be gathered.
	rootBody, err := w.src.store("src.io/bundle").Fetch(ctx, w.o)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Push(ctx, w.o, rootBody); err != nil {
		t.Fatal(err)
	}
	rootBody.Close()

	var called atomic.Int64
	got, err := Gather(ctx, w.src, g, local, GatherOptions{OnBlob: func(ocispec.Descriptor) { called.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	want := map[digest.Digest]bool{}
	for _, n := range g.Nodes {
		for _, d := range blobsOf(t, w.src.store(n.Repo), n.Desc) {
			want[d.Digest] = true
		}
	}
	if len(got.Blobs) != len(want) || called.Load() != int64(len(want)) {
		t.Fatalf("gathered %d blobs (OnBlob %d times), want %d", len(got.Blobs), called.Load(), len(want))
	}
	for i, d := range got.Blobs {
		if !want[d.Digest] {
			t.Errorf("gathered %s, which is not in the graph", d.Digest)
		}
		if i > 0 && got.Blobs[i-1].Digest >= d.Digest {
			t.Errorf("blobs not sorted and unique at %d: %s then %s", i, got.Blobs[i-1].Digest, d.Digest)
		}
		if ok, err := local.Exists(ctx, d); err != nil || !ok {
			t.Errorf("%s not in local storage (err %v)", d.Digest, err)
		}
	}
}
