package graph

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// manifestOf reads a manifest back from a test repository.
func manifestOf(t *testing.T, w *world, repo string, desc ocispec.Descriptor) ocispec.Manifest {
	t.Helper()
	var m ocispec.Manifest
	data, err := fetchSmall(context.Background(), w.src.store(repo), desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// blobSizes adds desc, its config and its layers to sizes.
func blobSizes(sizes map[digest.Digest]int64, desc ocispec.Descriptor, m ocispec.Manifest) {
	sizes[desc.Digest] = desc.Size
	sizes[m.Config.Digest] = m.Config.Size
	for _, l := range m.Layers {
		sizes[l.Digest] = l.Size
	}
}

func sum(sizes map[digest.Digest]int64) int64 {
	var s int64
	for _, v := range sizes {
		s += v
	}
	return s
}

func TestDescribeSizesAndIndexChildren(t *testing.T) {
	w := newWorld(t)
	// platforms on the index entries, and a signature on A
	multi := w.src.store("src.io/multi")
	amd, arm := w.m1, w.m2
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	w.m = pushIndex(t, multi, []ocispec.Descriptor{amd, arm})
	w.o = pushBundle(t, w.src.store("src.io/bundle"), "outer", []string{
		ref("src.io/app1", w.a), ref("src.io/inner", w.i), ref("src.io/app2", w.b), ref("src.io/multi", w.m),
	}, "v1")
	sig := pushImage(t, w.src.store("src.io/app1"), imageSpec{layers: [][]byte{[]byte("signature of A")}, tags: []string{digestTag(w.a.Digest, ".sig")}})

	ctx := context.Background()
	g, err := Discover(ctx, w.src, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{CosignSignatures: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Describe(ctx, w.src, g, DescribeOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	root := g.Roots[0]
	a, inner, b, idx := root.Images[0], root.Images[1], root.Images[2], root.Images[3]

	// An image: manifest + config + layers.
	aMan := manifestOf(t, w, "src.io/app1", w.a)
	aSizes := map[digest.Digest]int64{}
	blobSizes(aSizes, w.a, aMan)
	ma := d.Manifest(a)
	if ma == nil || ma.IsIndex() || ma.Config.Digest != aMan.Config.Digest || len(ma.Layers) != 2 || ma.Size != sum(aSizes) {
		t.Fatalf("manifest of A = %+v, want config %s, 2 layers, size %d", ma, aMan.Config.Digest, sum(aSizes))
	}

	// An index: its children in order with platforms, size of everything.
	mi := d.Manifest(idx)
	if mi == nil || !mi.IsIndex() || len(mi.Children) != 2 {
		t.Fatalf("manifest of the index = %+v", mi)
	}
	idxSizes := map[digest.Digest]int64{w.m.Digest: w.m.Size}
	for i, want := range []ocispec.Descriptor{amd, arm} {
		c := mi.Children[i]
		if c.Desc.Digest != want.Digest || c.Desc.Platform == nil || !reflect.DeepEqual(c.Desc.Platform, want.Platform) {
			t.Errorf("child %d = %s %+v, want %s %+v", i, c.Desc.Digest, c.Desc.Platform, want.Digest, want.Platform)
		}
		cSizes := map[digest.Digest]int64{}
		blobSizes(cSizes, want, manifestOf(t, w, "src.io/multi", want))
		if c.Size != sum(cSizes) || len(c.Layers) != 1 {
			t.Errorf("child %d size %d with %d layers, want %d with 1", i, c.Size, len(c.Layers), sum(cSizes))
		}
		blobSizes(idxSizes, want, manifestOf(t, w, "src.io/multi", want))
	}
	if mi.Size != sum(idxSizes) {
		t.Errorf("index size = %d, want %d", mi.Size, sum(idxSizes))
	}

	// Totals: the shared layer of A and B counts once; signatures count.
	bSizes := map[digest.Digest]int64{}
	blobSizes(bSizes, w.b, manifestOf(t, w, "src.io/app2", w.b))
	innerSizes := map[digest.Digest]int64{}
	blobSizes(innerSizes, w.i, manifestOf(t, w, "src.io/inner", w.i))
	wantInner := map[digest.Digest]int64{}
	for _, m := range []map[digest.Digest]int64{innerSizes, bSizes} {
		for k, v := range m {
			wantInner[k] = v
		}
	}
	if got, n := d.Total(inner); got != sum(wantInner) || n != len(wantInner) {
		t.Errorf("total of inner = %d in %d blobs, want %d in %d", got, n, sum(wantInner), len(wantInner))
	}
	if got := d.Manifest(b).Size; got != sum(bSizes) {
		t.Errorf("size of B = %d, want %d", got, sum(bSizes))
	}

	all := map[digest.Digest]int64{}
	blobSizes(all, w.o, manifestOf(t, w, "src.io/bundle", w.o))
	blobSizes(all, sig, manifestOf(t, w, "src.io/app1", sig))
	for _, m := range []map[digest.Digest]int64{aSizes, wantInner, idxSizes} {
		for k, v := range m {
			all[k] = v
		}
	}
	if _, shared := aSizes[aMan.Layers[1].Digest]; !shared {
		t.Fatal("fixture: A's second layer should be the shared one")
	}
	got, n := d.Total(root)
	if got != sum(all) || n != len(all) {
		t.Errorf("total of the bundle = %d in %d blobs, want %d in %d", got, n, sum(all), len(all))
	}
	if gt, gn := d.GraphTotal(); gt != got || gn != n {
		t.Errorf("graph total = %d in %d, want %d in %d", gt, gn, got, n)
	}
	if ms := d.Manifest(a.Signatures[0]); ms == nil || ms.Desc.Digest != sig.Digest || len(ms.Layers) != 1 {
		t.Errorf("signature manifest = %+v", ms)
	}
	if d.Manifest(&Node{}) != nil {
		t.Error("Manifest of a foreign node is not nil")
	}
}

func TestDescribeNestedIndexAndForeignEntries(t *testing.T) {
	src := newTestSource()
	st := src.store("src.io/nested")
	leaf := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("leaf")}})
	inner := pushIndex(t, st, []ocispec.Descriptor{leaf})
	// an entry of an unknown type is listed, not read
	odd := ocispec.Descriptor{MediaType: "application/vnd.example.thing", Digest: digest.FromString("not stored"), Size: 10}
	outer := pushIndex(t, st, []ocispec.Descriptor{inner, odd}, "v1")

	ctx := context.Background()
	g, err := Discover(ctx, src, []RootSpec{{Ref: "src.io/nested:v1"}}, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Describe(ctx, src, g, DescribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := d.Manifest(g.Roots[0])
	if len(m.Children) != 2 || !m.Children[0].IsIndex() || len(m.Children[0].Children) != 1 || m.Children[0].Children[0].Desc.Digest != leaf.Digest {
		t.Fatalf("nested index not followed: %+v", m)
	}
	if c := m.Children[1]; c.Desc.Digest != odd.Digest || c.Size != 10 || c.Children != nil || c.Layers != nil {
		t.Errorf("foreign entry = %+v", c)
	}
	want := outer.Size + inner.Size + m.Children[0].Children[0].Size + odd.Size
	if m.Size != want {
		t.Errorf("size = %d, want %d", m.Size, want)
	}
	if got := digestsOf(g.Nodes); !slices.Equal(got, []digest.Digest{outer.Digest}) {
		t.Errorf("nodes = %v", got)
	}
}

func TestDescribeMissingManifest(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	g, err := Discover(ctx, w.src, []RootSpec{{Ref: "src.io/bundle:v1"}}, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// the content is gone between Discover and Describe
	_, err = Describe(ctx, newTestSource(), g, DescribeOptions{})
	if !errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
}

func digestsOf(nodes []*Node) []digest.Digest {
	out := make([]digest.Digest, len(nodes))
	for i, n := range nodes {
		out[i] = n.Desc.Digest
	}
	return out
}
