package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

const (
	atSBOM = "application/vnd.example.sbom"
	atSig  = "application/vnd.example.signature"
)

// referrerSource is a testSource whose repositories implement
// registry.ReferrerLister over the memory store's predecessors, as a
// registry with the referrers API does. listErr, when set for a repository,
// is returned by its Referrers instead.
type referrerSource struct {
	*testSource
	mu      sync.Mutex
	listErr map[string]error
	listed  map[digest.Digest]int // Referrers calls per subject
}

func newReferrerSource(src *testSource) *referrerSource {
	return &referrerSource{testSource: src, listErr: map[string]error{}, listed: map[digest.Digest]int{}}
}

func (s *referrerSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := s.testSource.Repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	st, ok := t.(*regStore)
	if !ok {
		return t, nil
	}
	return &listingRepo{regStore: st, src: s, repo: repo}, nil
}

type listingRepo struct {
	*regStore
	src  *referrerSource
	repo string
}

func (l *listingRepo) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func([]ocispec.Descriptor) error) error {
	l.src.mu.Lock()
	l.src.listed[desc.Digest]++
	err := l.src.listErr[l.repo]
	l.src.mu.Unlock()
	if err != nil {
		return err
	}
	refs, err := registry.Referrers(ctx, l.regStore.Store, desc, artifactType)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return nil
	}
	return fn(refs)
}

func (s *referrerSource) listedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.listed {
		n += c
	}
	return n
}

// pushArtifact stores an artifact manifest (empty config, one layer) with
// subject in st. An empty artifactType leaves the field out and gives the
// config the media type cfgType instead.
func pushArtifact(t *testing.T, st oras.Target, artifactType string, subject ocispec.Descriptor, note string) ocispec.Descriptor {
	t.Helper()
	cfg := pushBlob(t, st, ocispec.MediaTypeEmptyJSON, []byte("{}"))
	if artifactType == "" {
		cfg = pushBlob(t, st, atSig+".config", []byte(`{"note":"`+note+`"}`))
	}
	s := plain(subject)
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{pushBlob(t, st, "application/octet-stream", []byte(note))},
		Subject:      &s,
		Annotations:  map[string]string{"note": note},
	}
	m.SchemaVersion = 2
	return pushManifest(t, st, ocispec.MediaTypeImageManifest, m)
}

// referrerWorld is newWorld plus referrers:
//
//	src.io/app1   sbom of A (atSBOM), sig of the sbom (no artifactType,
//	              config atSig.config), an artifact-manifest referrer of A
//	              (left out)
//	src.io/multi  note on the child m2 of M (atSBOM), index referrer of M
type referrerWorld struct {
	*world
	rsrc                         *referrerSource
	sbom, sig, m2Note, mIdx, art ocispec.Descriptor
}

func newReferrerWorld(t *testing.T) *referrerWorld {
	t.Helper()
	w := &referrerWorld{world: newWorld(t)}
	app1 := w.src.store("src.io/app1")
	w.sbom = pushArtifact(t, app1, atSBOM, w.a, "sbom of A")
	w.sig = pushArtifact(t, app1, "", w.sbom, "signature of the sbom")
	// A withdrawn OCI artifact manifest: listed, but not copied.
	s := plain(w.a)
	art := map[string]any{"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "artifactType": "x/y", "subject": s}
	w.art = pushManifest(t, app1, "application/vnd.oci.artifact.manifest.v1+json", art)
	multi := w.src.store("src.io/multi")
	w.m2Note = pushArtifact(t, multi, atSBOM, w.m2, "sbom of the arm64 image")
	sm := plain(w.m)
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, ArtifactType: atSBOM, Manifests: []ocispec.Descriptor{w.m2Note}, Subject: &sm}
	idx.SchemaVersion = 2
	w.mIdx = pushManifest(t, multi, ocispec.MediaTypeImageIndex, idx)
	w.rsrc = newReferrerSource(w.src)
	return w
}

func nodeByDigest(g *Graph, d digest.Digest) *Node {
	for _, n := range g.Nodes {
		if n.Desc.Digest == d {
			return n
		}
	}
	return nil
}

func TestDiscoverReferrers(t *testing.T) {
	w := newReferrerWorld(t)
	g, err := Discover(context.Background(), w.rsrc, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	a, m := g.Roots[0].Images[0], g.Roots[0].Images[3]
	if got, want := digests(a.Referrers), []string{w.sbom.Digest.String()}; !slices.Equal(got, want) {
		t.Fatalf("referrers of A = %v, want %v (the artifact manifest left out)", got, want)
	}
	sbom := a.Referrers[0]
	if !sbom.Referrer || sbom.Subject != w.a.Digest || sbom.Repo != "src.io/app1" || sbom.Desc.ArtifactType != atSBOM ||
		sbom.Desc.Annotations["note"] != "sbom of A" || sbom.Ref != ref("src.io/app1", w.sbom) || len(sbom.Tags) != 0 || sbom.Bundle {
		t.Errorf("sbom node = %+v", sbom)
	}
	if got := digests(sbom.Referrers); !slices.Equal(got, []string{w.sig.Digest.String()}) {
		t.Fatalf("referrers of the sbom = %v, want the sig", got)
	}
	if sig := sbom.Referrers[0]; !sig.Referrer || sig.Subject != w.sbom.Digest || sig.Desc.ArtifactType != atSig+".config" {
		t.Errorf("sig node = %+v (artifact type from the config)", sig)
	}
	// The index's referrers and its children's, sorted by digest; the
	// index referrer's own child is not a referrer of anything.
	wantM := []string{w.m2Note.Digest.String(), w.mIdx.Digest.String()}
	slices.Sort(wantM)
	if got := digests(m.Referrers); !slices.Equal(got, wantM) {
		t.Fatalf("referrers of M = %v, want %v", got, wantM)
	}
	if n := nodeByDigest(g, w.mIdx.Digest); n == nil || !n.Index || n.Subject != w.m.Digest || n.Desc.ArtifactType != atSBOM {
		t.Errorf("index referrer = %+v", n)
	}
	if n := nodeByDigest(g, w.m2Note.Digest); n == nil || n.Subject != w.m2.Digest {
		t.Errorf("referrer of the arm64 child = %+v", n)
	}
	// Every node once: 5 + sbom, sig, m2Note, mIdx; referrers right after
	// their subject.
	if len(g.Nodes) != 9 {
		t.Fatalf("nodes = %d (%v), want 9", len(g.Nodes), digests(g.Nodes))
	}
	ai := slices.Index(g.Nodes, a)
	if g.Nodes[ai+1] != sbom || g.Nodes[ai+2] != sbom.Referrers[0] {
		t.Errorf("nodes = %v: want A, its sbom, the sbom's sig in a row", digests(g.Nodes))
	}
	if nodeByDigest(g, w.art.Digest) != nil {
		t.Error("artifact manifest referrer discovered")
	}
	// Each node and each index child listed once: 9 nodes, m1, m2 and the
	// children of mIdx (m2Note, already a node, still its child).
	if got := w.rsrc.listedCount(); got != 12 {
		t.Errorf("Referrers called %d times, want 12: %v", got, w.rsrc.listed)
	}
}

func TestDiscoverReferrersOff(t *testing.T) {
	w := newReferrerWorld(t)
	g, err := Discover(context.Background(), w.rsrc, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 5 || w.rsrc.listedCount() != 0 {
		t.Errorf("nodes = %d, Referrers calls = %d; want 5 and 0", len(g.Nodes), w.rsrc.listedCount())
	}
}

func TestDiscoverReferrersWithoutLister(t *testing.T) {
	w := newReferrerWorld(t)
	// The plain test source's repositories cannot list referrers.
	g, err := Discover(context.Background(), w.src, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 5 {
		t.Errorf("nodes = %d, want 5", len(g.Nodes))
	}
}

func TestDiscoverReferrersListErrors(t *testing.T) {
	boom := &errcode.ErrorResponse{Method: http.MethodGet, StatusCode: http.StatusInternalServerError}
	tests := []struct {
		name    string
		err     error
		wantErr error // nil: A has no referrers and discovery succeeds
	}{
		{"unsupported", fmt.Errorf("no referrers here: %w", errdef.ErrUnsupported), nil},
		{"forbidden", &errcode.ErrorResponse{Method: http.MethodGet, StatusCode: http.StatusForbidden}, nil},
		{"not found", errdef.ErrNotFound, nil},
		{"server error", boom, boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newReferrerWorld(t)
			w.rsrc.listErr["src.io/app1"] = tc.err
			g, err := Discover(context.Background(), w.rsrc, []RootSpec{{Ref: ref("src.io/app1", w.a), Kind: RootImage}}, DiscoverOptions{Referrers: true})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Nodes) != 1 {
				t.Errorf("nodes = %v, want A alone", digests(g.Nodes))
			}
		})
	}
}

// staleLister lists a referrer that is not in the repository, as a fallback
// tag index can after the referrer was deleted.
type staleLister struct {
	*regStore
	ghost ocispec.Descriptor
}

func (s staleLister) Referrers(_ context.Context, _ ocispec.Descriptor, _ string, fn func([]ocispec.Descriptor) error) error {
	return fn([]ocispec.Descriptor{s.ghost})
}

type staleSource struct {
	*testSource
	ghost ocispec.Descriptor
}

func (s staleSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := s.testSource.Repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	return staleLister{regStore: t.(*regStore), ghost: s.ghost}, nil
}

func TestDiscoverReferrersStaleEntrySkipped(t *testing.T) {
	w := newWorld(t)
	ghost := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("deleted"), Size: 7}
	g, err := Discover(context.Background(), staleSource{testSource: w.src, ghost: ghost}, []RootSpec{{Ref: ref("src.io/app1", w.a)}}, DiscoverOptions{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 1 || len(g.Roots[0].Referrers) != 0 {
		t.Errorf("nodes = %v, want A alone", digests(g.Nodes))
	}
}

// heldSource holds Repository calls for one repository until gate is
// closed.
type heldSource struct {
	Source
	repo string
	gate chan struct{}
}

func (s heldSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	if repo == s.repo {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Source.Repository(ctx, repo)
}

// TestDiscoverReferrerAlsoListed: a referrer that is also a root is copied
// as a root (tagged), whichever way discovery meets it first.
func TestDiscoverReferrerAlsoListed(t *testing.T) {
	for _, referrerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("met as referrer first %v", referrerFirst), func(t *testing.T) {
			w := newReferrerWorld(t)
			// src.io/later holds a copy of the sbom; with referrerFirst its
			// root is read only once the sbom was loaded as A's referrer.
			later := w.src.store("src.io/later")
			for _, d := range blobsOf(t, w.src.store("src.io/app1"), w.sbom) {
				rc, err := w.src.store("src.io/app1").Fetch(context.Background(), d)
				if err != nil {
					t.Fatal(err)
				}
				if err := later.Push(context.Background(), d, rc); err != nil {
					t.Fatal(err)
				}
				rc.Close()
			}
			gate := make(chan struct{})
			var src Source = w.rsrc
			if referrerFirst {
				src = heldSource{Source: w.rsrc, repo: "src.io/later", gate: gate}
			}
			var once sync.Once
			g, err := Discover(context.Background(), src, []RootSpec{
				{Ref: ref("src.io/app1", w.a)}, {Ref: ref("src.io/later", w.sbom)},
			}, DiscoverOptions{Referrers: true, OnImage: func(n *Node) {
				if n.Desc.Digest == w.sbom.Digest {
					once.Do(func() { close(gate) })
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			sbom := g.Roots[1]
			if want := "src.io/app1"; referrerFirst && sbom.Repo != want {
				t.Fatalf("sbom read from %s, want %s (met as a referrer first)", sbom.Repo, want)
			}
			if sbom.Referrer || !sbom.Root || len(g.Roots[0].Referrers) != 1 || g.Roots[0].Referrers[0] != sbom {
				t.Fatalf("sbom: referrer=%v root=%v; referrers of A %v", sbom.Referrer, sbom.Root, digests(g.Roots[0].Referrers))
			}
			// Referrers are looked up where a node is read from: the
			// signature is only in src.io/app1.
			if referrerFirst && (len(sbom.Referrers) != 1 || !sbom.Referrers[0].Referrer) {
				t.Errorf("referrers of the sbom = %v, want its signature as a referrer", digests(sbom.Referrers))
			}
		})
	}
}

func TestDiscoverReferrersOfSignatures(t *testing.T) {
	w := newReferrerWorld(t)
	app1 := w.src.store("src.io/app1")
	sig := pushImage(t, app1, imageSpec{layers: [][]byte{[]byte("cosign signature of A")}, tags: []string{digestTag(w.a.Digest, ".sig")}})
	sbomTag := pushImage(t, app1, imageSpec{layers: [][]byte{[]byte("cosign sbom of A")}, tags: []string{digestTag(w.a.Digest, ".sbom")}})
	note := pushArtifact(t, app1, atSBOM, sig, "note on the cosign signature")
	g, err := Discover(context.Background(), w.rsrc, []RootSpec{{Ref: ref("src.io/app1", w.a)}}, DiscoverOptions{Referrers: true, CosignSignatures: true})
	if err != nil {
		t.Fatal(err)
	}
	a := g.Roots[0]
	if got, want := digests(a.Signatures), []string{sig.Digest.String(), sbomTag.Digest.String()}; !slices.Equal(got, want) {
		t.Fatalf("signatures = %v, want %v (.sig and .sbom)", got, want)
	}
	if got := digests(a.Signatures[0].Referrers); !slices.Equal(got, []string{note.Digest.String()}) {
		t.Errorf("referrers of the signature = %v, want the note", got)
	}
	// A, 2 signatures, the note, sbom, sig of the sbom.
	if len(g.Nodes) != 6 {
		t.Errorf("nodes = %v, want 6", digests(g.Nodes))
	}
}

func TestCopyToRepoReferrers(t *testing.T) {
	ctx := context.Background()
	w := newReferrerWorld(t)
	g, err := Discover(ctx, w.rsrc, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	dst := newCountingTarget()
	if _, err := CopyToRepo(ctx, w.rsrc, g, dst, CopyOptions{DestRepo: "dst.io/copy"}); err != nil {
		t.Fatal(err)
	}
	// Every referrer and what it references is at the destination, and
	// the destination lists it as a referrer of its subject.
	for _, tc := range []struct {
		repo             string
		subject, referer ocispec.Descriptor
	}{
		{"src.io/app1", w.a, w.sbom},
		{"src.io/app1", w.sbom, w.sig},
		{"src.io/multi", w.m2, w.m2Note},
		{"src.io/multi", w.m, w.mIdx},
	} {
		for _, d := range blobsOf(t, w.src.store(tc.repo), tc.referer) {
			if ok, err := dst.Exists(ctx, d); err != nil || !ok {
				t.Errorf("%s (of referrer %s) missing at the destination", d.Digest, tc.referer.Digest)
			}
		}
		refs, err := registry.Referrers(ctx, dst.Store, tc.subject, "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(refs, func(d ocispec.Descriptor) bool { return d.Digest == tc.referer.Digest }) {
			t.Errorf("destination referrers of %s = %v, want %s", tc.subject.Digest, refs, tc.referer.Digest)
		}
	}
	// Referrers get no tag; the bundle's images do.
	for _, d := range []ocispec.Descriptor{w.sbom, w.sig, w.m2Note, w.mIdx} {
		if slices.Contains(dst.tags, ImgpkgTag(d.Digest)) {
			t.Errorf("referrer %s tagged", d.Digest)
		}
	}
	for _, d := range []ocispec.Descriptor{w.o, w.a, w.m} {
		if !slices.Contains(dst.tags, ImgpkgTag(d.Digest)) {
			t.Errorf("image %s not tagged", d.Digest)
		}
	}
	if ok, _ := dst.Exists(ctx, w.art); ok {
		t.Error("artifact manifest copied")
	}
	// The ImageLocations of the bundle list the images.yml entries only.
	if got := len(BundleImageLocations(g.Roots[0]).Images); got != 4 {
		t.Errorf("image locations = %d entries, want 4", got)
	}
}

func TestGatherReferrers(t *testing.T) {
	ctx := context.Background()
	w := newReferrerWorld(t)
	g, err := Discover(ctx, w.rsrc, []RootSpec{{Ref: ref("src.io/app1", w.a)}}, DiscoverOptions{Referrers: true})
	if err != nil {
		t.Fatal(err)
	}
	local := memory.New()
	got, err := Gather(ctx, w.rsrc, g, local, GatherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[digest.Digest]bool{}
	for _, d := range slices.Concat(blobsOf(t, w.src.store("src.io/app1"), w.a), blobsOf(t, w.src.store("src.io/app1"), w.sbom), blobsOf(t, w.src.store("src.io/app1"), w.sig)) {
		want[d.Digest] = true
	}
	if len(got.Blobs) != len(want) {
		t.Fatalf("gathered %d blobs, want %d", len(got.Blobs), len(want))
	}
	for _, d := range got.Blobs {
		if !want[d.Digest] {
			t.Errorf("gathered %s, not in the graph", d.Digest)
		}
	}
}
