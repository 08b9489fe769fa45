package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/bundle"
)

// world is a source registry "src.io" with:
//
//	src.io/app1   image A
//	src.io/app2   image B (shares a layer with A)
//	src.io/multi  index M of two images
//	src.io/inner  bundle I listing app2@B
//	src.io/bundle bundle O (tag v1) listing app1@A, inner@I, app2@B, multi@M
type world struct {
	src                   *testSource
	a, b, m, m1, m2, i, o ocispec.Descriptor
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{src: newTestSource()}
	w.a = pushImage(t, w.src.store("src.io/app1"), imageSpec{layers: [][]byte{[]byte("layer a1"), []byte("shared layer")}})
	w.b = pushImage(t, w.src.store("src.io/app2"), imageSpec{layers: [][]byte{[]byte("layer b1"), []byte("shared layer")}})
	multi := w.src.store("src.io/multi")
	w.m1 = pushImage(t, multi, imageSpec{layers: [][]byte{[]byte("amd64 layer")}})
	w.m2 = pushImage(t, multi, imageSpec{layers: [][]byte{[]byte("arm64 layer")}})
	w.m = pushIndex(t, multi, []ocispec.Descriptor{w.m1, w.m2})
	w.i = pushBundle(t, w.src.store("src.io/inner"), "inner", []string{ref("src.io/app2", w.b)})
	w.o = pushBundle(t, w.src.store("src.io/bundle"), "outer", []string{
		ref("src.io/app1", w.a), ref("src.io/inner", w.i), ref("src.io/app2", w.b), ref("src.io/multi", w.m),
	}, "v1")
	return w
}

func digests(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Desc.Digest.String()
	}
	return out
}

func TestDiscoverBundle(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	seen := map[string]int{}
	g, err := Discover(context.Background(), w.src, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{
		OnImage: func(n *Node) { mu.Lock(); seen[n.Desc.Digest.String()]++; mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	root := g.Roots[0]
	if root.Desc.Digest != w.o.Digest || !root.Bundle || !root.Root || root.Repo != "src.io/bundle" {
		t.Fatalf("root = %+v", root)
	}
	if !slices.Equal(root.Tags, []string{"v1"}) {
		t.Errorf("root tags = %v, want [v1]", root.Tags)
	}
	// images in images.yml order, each found in its own repository
	wantImages := []string{w.a.Digest.String(), w.i.Digest.String(), w.b.Digest.String(), w.m.Digest.String()}
	if got := digests(root.Images); !slices.Equal(got, wantImages) {
		t.Fatalf("images = %v, want %v", got, wantImages)
	}
	wantRepos := []string{"src.io/app1", "src.io/inner", "src.io/app2", "src.io/multi"}
	for i, n := range root.Images {
		if n.Repo != wantRepos[i] {
			t.Errorf("image %d repo = %s, want %s", i, n.Repo, wantRepos[i])
		}
		if n.Ref != root.Lock.Images[i].Image {
			t.Errorf("image %d ref = %s, want %s", i, n.Ref, root.Lock.Images[i].Image)
		}
	}
	// nested bundle followed, B shared with it (one node)
	inner := root.Images[1]
	if !inner.Bundle || inner.Lock == nil || len(inner.Images) != 1 || inner.Images[0] != root.Images[2] {
		t.Fatalf("inner bundle = %+v", inner)
	}
	if !root.Images[3].Index || root.Images[3].Bundle {
		t.Errorf("multi: index=%v bundle=%v", root.Images[3].Index, root.Images[3].Bundle)
	}
	// every node once, depth first
	want := []string{w.o.Digest.String(), w.a.Digest.String(), w.i.Digest.String(), w.b.Digest.String(), w.m.Digest.String()}
	if got := digests(g.Nodes); !slices.Equal(got, want) {
		t.Errorf("nodes = %v, want %v", got, want)
	}
	if len(seen) != 5 {
		t.Errorf("OnImage saw %d nodes, want 5", len(seen))
	}
	for d, n := range seen {
		if n != 1 {
			t.Errorf("OnImage called %d times for %s", n, d)
		}
	}
	if got := digests(g.Bundles()); !slices.Equal(got, []string{w.o.Digest.String(), w.i.Digest.String()}) {
		t.Errorf("bundles = %v", got)
	}
}

func TestDiscoverPrefersBundleRepo(t *testing.T) {
	tests := []struct {
		name      string
		relocated bool // the image was copied next to the bundle
		wantRepo  string
	}{
		{"image also in bundle repo", true, "dst.io/copy"},
		{"only at original location", false, "src.io/app1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			copyRepo := w.src.store("dst.io/copy")
			b := pushBundle(t, copyRepo, "relocated", []string{ref("src.io/app1", w.a)})
			if tt.relocated {
				pushImage(t, copyRepo, imageSpec{layers: [][]byte{[]byte("layer a1"), []byte("shared layer")}})
			}
			g, err := Discover(context.Background(), w.src, []RootSpec{{Ref: ref("dst.io/copy", b), Kind: RootBundle}}, DiscoverOptions{})
			if err != nil {
				t.Fatal(err)
			}
			img := g.Roots[0].Images[0]
			if img.Repo != tt.wantRepo || img.Desc.Digest != w.a.Digest {
				t.Errorf("image found in %s (%s), want %s", img.Repo, img.Desc.Digest, tt.wantRepo)
			}
			if img.Ref != ref("src.io/app1", w.a) {
				t.Errorf("ref = %s, want the images.yml ref", img.Ref)
			}
			if got := w.src.asked["src.io/app1"]; tt.relocated && got != 0 {
				t.Errorf("original repository asked %d times, want 0", got)
			}
		})
	}
}

func TestDiscoverDeniedBundleRepoCountsAsAbsent(t *testing.T) {
	for _, code := range []int{401, 403, 404} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			w := newWorld(t)
			// A bundle whose own repository denies image lookups: a wrapper
			// source serves the bundle manifest but answers code for digests.
			b := pushBundle(t, w.src.store("dst.io/copy"), "x", []string{ref("src.io/app1", w.a)})
			src := &denyDigestSource{testSource: w.src, repo: "dst.io/copy", code: code, allow: b.Digest.String()}
			g, err := Discover(context.Background(), src, []RootSpec{{Ref: ref("dst.io/copy", b)}}, DiscoverOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := g.Roots[0].Images[0].Repo; got != "src.io/app1" {
				t.Errorf("repo = %s, want src.io/app1", got)
			}
		})
	}
}

// denyDigestSource answers reads of every reference but allow in repo with
// an HTTP status.
type denyDigestSource struct {
	*testSource
	repo  string
	code  int
	allow string
}

func (s *denyDigestSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := s.testSource.Repository(ctx, repo)
	if err != nil || repo != s.repo {
		return t, err
	}
	return &denyTarget{ReadOnlyTarget: t, code: s.code, allow: s.allow}, nil
}

type denyTarget struct {
	oras.ReadOnlyTarget
	code  int
	allow string
}

func (d *denyTarget) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	if reference != d.allow {
		return ocispec.Descriptor{}, statusTarget{code: d.code}.err()
	}
	return d.ReadOnlyTarget.Resolve(ctx, reference)
}

func TestDiscoverRepeatedDigests(t *testing.T) {
	w := newWorld(t)
	// a bundle listing the same image twice, and two roots naming one bundle
	b := pushBundle(t, w.src.store("src.io/twice"), "twice", []string{ref("src.io/app1", w.a), ref("src.io/app1", w.a), ref("src.io/bundle", w.o)})
	g, err := Discover(context.Background(), w.src, []RootSpec{
		{Ref: ref("src.io/twice", b)},
		{Ref: ref("src.io/twice", b), Tag: "again"},
	}, DiscoverOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if g.Roots[0] != g.Roots[1] {
		t.Error("two roots with one digest should share the node")
	}
	r := g.Roots[0]
	if r.Images[0] != r.Images[1] {
		t.Error("a digest listed twice should be one node")
	}
	if !slices.Equal(r.Tags, []string{"again"}) {
		t.Errorf("tags = %v", r.Tags)
	}
	// twice, A, O, I, B, M: every digest once
	if len(g.Nodes) != 6 {
		t.Errorf("nodes = %d, want 6: %v", len(g.Nodes), digests(g.Nodes))
	}
}

// lyingTarget serves, for one digest, the content of another manifest: the
// only way to build a "cycle" of content-addressed manifests.
type lyingTarget struct {
	*regStore
	asked, served ocispec.Descriptor
}

func (l *lyingTarget) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	if reference == l.asked.Digest.String() {
		return l.served, nil
	}
	return l.regStore.Resolve(ctx, reference)
}

type lyingSource struct {
	*testSource
	lie *lyingTarget
}

func (s *lyingSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	if repo == "src.io/loop" {
		return s.lie, nil
	}
	return s.testSource.Repository(ctx, repo)
}

func TestDiscoverCycleTerminates(t *testing.T) {
	// Bundle X lists src.io/loop@D; the repository answers D with X itself.
	// Digests make real cycles impossible; discovery must still stop.
	src := newTestSource()
	st := src.store("src.io/loop")
	fake := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("placeholder")}})
	x := pushBundle(t, st, "x", []string{ref("src.io/loop", fake)})
	src2 := &lyingSource{testSource: src, lie: &lyingTarget{regStore: st, asked: fake, served: x}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Discover(ctx, src2, []RootSpec{{Ref: ref("src.io/loop", x)}}, DiscoverOptions{})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	if ctx.Err() != nil {
		t.Fatal("discovery did not terminate")
	}
}

func TestDiscoverRootKind(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name     string
		spec     RootSpec
		wantErr  error
		wantHint string
	}{
		{"bundle as -b", RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle}, nil, ""},
		{"image as -b", RootSpec{Ref: ref("src.io/app1", w.a), Kind: RootBundle}, ErrNotBundle, "use -i"},
		{"index as -b", RootSpec{Ref: ref("src.io/multi", w.m), Kind: RootBundle}, ErrNotBundle, "use -i"},
		{"bundle as -i", RootSpec{Ref: "src.io/bundle:v1", Kind: RootImage}, ErrIsBundle, "use -b"},
		{"bundle as -i allowed", RootSpec{Ref: "src.io/bundle:v1", Kind: RootImage, AllowBundle: true}, nil, ""},
		{"image as -i", RootSpec{Ref: ref("src.io/app1", w.a), Kind: RootImage}, nil, ""},
		{"bad reference", RootSpec{Ref: "src.io/app1"}, ErrInvalidReference, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Discover(context.Background(), w.src, []RootSpec{tt.spec}, DiscoverOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantHint) || !strings.Contains(err.Error(), tt.spec.Ref) {
					t.Errorf("error %q should name %s and hint %q", err, tt.spec.Ref, tt.wantHint)
				}
				return
			}
			if tt.spec.AllowBundle {
				r := g.Roots[0]
				if !r.Bundle || r.Lock != nil || len(r.Images) != 0 || len(g.Nodes) != 1 {
					t.Errorf("bundle taken as image should not be followed: %+v", r)
				}
			}
		})
	}
}

func TestDiscoverBundleWithTwoLayers(t *testing.T) {
	src := newTestSource()
	st := src.store("src.io/two")
	layer := tarGz(t, map[string]string{".imgpkg/images.yml": imagesYML(t)})
	b := pushImage(t, st, imageSpec{layers: [][]byte{layer, []byte("second")}, labels: map[string]string{bundle.BundleLabel: ""}, docker: true})
	_, err := Discover(context.Background(), src, []RootSpec{{Ref: ref("src.io/two", b), Kind: RootBundle}}, DiscoverOptions{})
	if !errors.Is(err, ErrBundleLayers) {
		t.Fatalf("err = %v, want ErrBundleLayers", err)
	}
	if !strings.Contains(err.Error(), ref("src.io/two", b)) || !strings.Contains(err.Error(), "2 layers") {
		t.Errorf("error %q should name the bundle and the count", err)
	}
}

func TestDiscoverMissingImage(t *testing.T) {
	w := newWorld(t)
	missing := "src.io/gone@sha256:" + strings.Repeat("ab", 32)
	b := pushBundle(t, w.src.store("src.io/broken"), "broken", []string{ref("src.io/app1", w.a), missing})
	_, err := Discover(context.Background(), w.src, []RootSpec{{Ref: ref("src.io/broken", b), Kind: RootBundle}}, DiscoverOptions{})
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("err = %v, want ErrImageNotFound", err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q should name %s", err, missing)
	}
}

func TestDiscoverBadImagesLock(t *testing.T) {
	src := newTestSource()
	st := src.store("src.io/bad")
	layer := tarGz(t, map[string]string{"readme": "no lock here"})
	b := pushImage(t, st, imageSpec{layers: [][]byte{layer}, labels: map[string]string{bundle.BundleLabel: "true"}, docker: true})
	_, err := Discover(context.Background(), src, []RootSpec{{Ref: ref("src.io/bad", b)}}, DiscoverOptions{})
	if !errors.Is(err, bundle.ErrNoImagesLock) {
		t.Fatalf("err = %v, want bundle.ErrNoImagesLock", err)
	}
}

func TestDiscoverNonDistributable(t *testing.T) {
	src := newTestSource()
	st := src.store("src.io/win")
	foreign := pushBlob(t, st, mediaTypeDockerForeignLayer, []byte("windows base layer"))
	foreign.URLs = []string{"https://example.com/base"}
	ndOCI := pushBlob(t, st, ocispec.MediaTypeImageLayerNonDistributableGzip, []byte("oci nondist")) //nolint:staticcheck
	win := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("app")}, foreign: []ocispec.Descriptor{foreign}})
	win2 := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("app2")}, foreign: []ocispec.Descriptor{foreign, ndOCI}})
	linux := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("linux")}})
	idx := pushIndex(t, st, []ocispec.Descriptor{linux, win, win2})

	g, err := Discover(context.Background(), src, []RootSpec{{Ref: ref("src.io/win", idx)}, {Ref: ref("src.io/win", linux)}}, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0)
	for _, l := range g.Roots[0].NonDistributable {
		got = append(got, l.Digest.String())
	}
	if want := []string{foreign.Digest.String(), ndOCI.Digest.String()}; !slices.Equal(got, want) {
		t.Errorf("index non-distributable = %v, want %v", got, want)
	}
	if len(g.Roots[1].NonDistributable) != 0 {
		t.Errorf("linux image has none, got %v", g.Roots[1].NonDistributable)
	}
}

func TestDiscoverSignatures(t *testing.T) {
	w := newWorld(t)
	app1 := w.src.store("src.io/app1")
	sig := pushImage(t, app1, imageSpec{layers: [][]byte{[]byte("signature of A")}, tags: []string{digestTag(w.a.Digest, ".sig")}})
	att := pushImage(t, app1, imageSpec{layers: [][]byte{[]byte("attestation of A")}, tags: []string{digestTag(w.a.Digest, ".att")}})

	for _, on := range []bool{false, true} {
		g, err := Discover(context.Background(), w.src, []RootSpec{{Ref: "src.io/bundle:v1"}}, DiscoverOptions{CosignSignatures: on})
		if err != nil {
			t.Fatal(err)
		}
		a := g.Roots[0].Images[0]
		if !on {
			if len(a.Signatures) != 0 || len(g.Nodes) != 5 {
				t.Errorf("signatures looked up although off: %v", digests(a.Signatures))
			}
			continue
		}
		if got, want := digests(a.Signatures), []string{sig.Digest.String(), att.Digest.String()}; !slices.Equal(got, want) {
			t.Fatalf("signatures = %v, want %v", got, want)
		}
		s := a.Signatures[0]
		if !s.Signature || s.Repo != "src.io/app1" || !slices.Equal(s.Tags, []string{digestTag(w.a.Digest, ".sig")}) {
			t.Errorf("signature node = %+v", s)
		}
		if len(g.Nodes) != 7 {
			t.Errorf("nodes = %d, want 7", len(g.Nodes))
		}
	}
}

func TestDiscoverConcurrencyBound(t *testing.T) {
	src := newTestSource()
	var refs []string
	for i := range 30 {
		repo := fmt.Sprintf("src.io/img%d", i)
		d := pushImage(t, src.store(repo), imageSpec{layers: [][]byte{[]byte(repo)}})
		refs = append(refs, ref(repo, d))
	}
	b := pushBundle(t, src.store("src.io/many"), "many", refs)
	gate := &gatedSource{testSource: src}
	g, err := Discover(context.Background(), gate, []RootSpec{{Ref: ref("src.io/many", b)}}, DiscoverOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Roots[0].Images) != 30 {
		t.Fatalf("images = %d", len(g.Roots[0].Images))
	}
	// Manifest reads run at metadataFanout times the concurrency.
	if gate.max > 3*metadataFanout {
		t.Errorf("max concurrent requests = %d, want <= %d", gate.max, 3*metadataFanout)
	}
	if gate.max <= 3 {
		t.Errorf("max concurrent requests = %d, discovery does not use the fan-out", gate.max)
	}
}

// gatedSource measures how many reads run at once (each takes a little time).
type gatedSource struct {
	*testSource
	mu       sync.Mutex
	cur, max int
}

func (g *gatedSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := g.testSource.Repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	return &gatedTarget{ReadOnlyTarget: t, g: g}, nil
}

type gatedTarget struct {
	oras.ReadOnlyTarget
	g *gatedSource
}

func (t *gatedTarget) enter() func() {
	t.g.mu.Lock()
	t.g.cur++
	t.g.max = max(t.g.max, t.g.cur)
	t.g.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	return func() { t.g.mu.Lock(); t.g.cur--; t.g.mu.Unlock() }
}

func (t *gatedTarget) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	defer t.enter()()
	return t.ReadOnlyTarget.Resolve(ctx, reference)
}

func (t *gatedTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	defer t.enter()()
	return t.ReadOnlyTarget.Fetch(ctx, desc)
}

// verifiesAll is a source that says it verifies whatever it serves.
type verifiesAll struct{}

func (verifiesAll) Verifies(ocispec.Descriptor, io.Reader) bool { return true }

// TestReadVerified checks the reading of manifests and configs: bytes
// other than the descriptor's are refused when the source does not verify
// them itself, and a source that does is trusted (not hashed a second time).
func TestReadVerified(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"config":{}}`)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, body)
	flipped := bytes.Clone(body)
	flipped[5] ^= 0x01
	cases := []struct {
		name    string
		src     any
		serve   []byte
		desc    ocispec.Descriptor
		want    []byte
		wantErr error
	}{
		{"sound", nil, body, desc, body, nil},
		{"wrong bytes", nil, flipped, desc, nil, ErrDigestMismatch},
		{"too long", nil, append(bytes.Clone(body), ' '), desc, nil, content.ErrTrailingData},
		{"too short", nil, body[:len(body)-1], desc, nil, io.ErrUnexpectedEOF},
		{"verifying source, sound", verifiesAll{}, body, desc, body, nil},
		{"verifying source trusted", verifiesAll{}, flipped, desc, flipped, nil},
		{"verifying source, too long", verifiesAll{}, append(bytes.Clone(body), ' '), desc, nil, content.ErrTrailingData},
		{"verifying source, too short", verifiesAll{}, body[:len(body)-1], desc, nil, io.ErrUnexpectedEOF},
		{"empty", nil, nil, content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, nil), []byte{}, nil},
		{"over the limit", nil, body, ocispec.Descriptor{Digest: desc.Digest, Size: maxMetadataBytes + 1}, nil, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readVerified(tc.src, tc.desc, io.NopCloser(bytes.NewReader(tc.serve)))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("readVerified: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("read %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDiscoverKeepsManifests checks that Discover keeps the verified bytes
// of every manifest and index it read, nodes and index children, for the
// copy, and that it stops keeping once the budget is spent.
func TestDiscoverKeepsManifests(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	repos := map[digest.Digest]string{w.a.Digest: "src.io/app1", w.b.Digest: "src.io/app2", w.m.Digest: "src.io/multi",
		w.m1.Digest: "src.io/multi", w.m2.Digest: "src.io/multi", w.i.Digest: "src.io/inner", w.o.Digest: "src.io/bundle"}
	for _, m := range []ocispec.Descriptor{w.a, w.b, w.m, w.m1, w.m2, w.i, w.o} {
		want, err := content.FetchAll(ctx, w.src.store(repos[m.Digest]), m)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.manifests[m.Digest]; !bytes.Equal(got, want) {
			t.Errorf("kept %q for %s, want %q", got, m.Digest, want)
		}
	}
	if len(g.manifests) != 7 {
		t.Errorf("kept %d manifests, want 7 (no configs or layers)", len(g.manifests))
	}

	d := &discoverer{}
	big := make([]byte, maxKeptManifestBodies-10)
	d.keep("sha256:big", big)
	d.keep("sha256:over", make([]byte, 11))
	d.keep("sha256:fits", make([]byte, 10))
	d.keep("sha256:big", []byte("again"))
	if _, ok := d.bodies["sha256:over"]; ok {
		t.Error("kept a body over the budget")
	}
	if _, ok := d.bodies["sha256:fits"]; !ok || len(d.bodies["sha256:big"]) != len(big) || d.kept != maxKeptManifestBodies {
		t.Errorf("kept %d bytes in %d bodies, want the budget, %d, in 2", d.kept, len(d.bodies), maxKeptManifestBodies)
	}
}
