package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in   string
		want ocispec.Platform
		bad  bool
	}{
		{in: "linux/amd64", want: ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm64/v8", want: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{in: " Linux/ARM/v7 ", want: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "windows/amd64", want: ocispec.Platform{OS: "windows", Architecture: "amd64"}},
		{in: "linux", bad: true},
		{in: "", bad: true},
		{in: "linux/", bad: true},
		{in: "/amd64", bad: true},
		{in: "linux/amd64/", bad: true},
		{in: "linux/arm/v7/x", bad: true},
		{in: "linux/amd 64", bad: true},
		{in: "linux,amd64", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePlatform(tt.in)
			if tt.bad {
				if !errors.Is(err, ErrInvalidPlatform) {
					t.Fatalf("ParsePlatform(%q) = %v, %v; want ErrInvalidPlatform", tt.in, got, err)
				}
				if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Errorf("error %q does not name %q", err, tt.in)
				}
				return
			}
			if err != nil || got.OS != tt.want.OS || got.Architecture != tt.want.Architecture || got.Variant != tt.want.Variant {
				t.Fatalf("ParsePlatform(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := FormatPlatform(got); s != strings.ToLower(strings.TrimSpace(tt.in)) {
				t.Errorf("FormatPlatform = %q, want %q", s, tt.in)
			}
		})
	}
}

func TestPlatformMatches(t *testing.T) {
	p := func(s string) ocispec.Platform {
		parts := strings.Split(s, "/")
		out := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			out.Variant = parts[2]
		}
		return out
	}
	tests := []struct {
		want, child string
		match       bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"linux/amd64", "linux/x86_64", true},
		{"linux/amd64", "linux/amd64/v3", true}, // no variant asked: any
		{"linux/amd64/v3", "linux/amd64", false},
		{"linux/amd64/v1", "linux/amd64", true},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64", "linux/aarch64", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm64/v8", "linux/arm64/v9", false},
		{"linux/arm/v7", "linux/arm", true},
		{"linux/arm/v7", "linux/armhf", true},
		{"linux/arm/v7", "linux/arm/v6", false},
		{"linux/arm", "linux/arm/v6", true},
		{"linux/arm/v6", "linux/armel", true},
		{"darwin/arm64", "macos/arm64", true},
		{"linux/386", "linux/i386", true},
	}
	for _, tt := range tests {
		if got := platformMatches([]ocispec.Platform{p(tt.want)}, p(tt.child)); got != tt.match {
			t.Errorf("filter %s, child %s: match %v, want %v", tt.want, tt.child, got, tt.match)
		}
	}
	if !platformMatches([]ocispec.Platform{p("linux/s390x"), p("linux/arm64")}, p("linux/arm64/v8")) {
		t.Error("the second of two platforms does not match")
	}
}

// platformWorld is a source "src.io" with, in src.io/multi, the index idx
// (tag v1) of:
//
//	amd    linux/amd64      layers "shared base", "amd64 only"
//	arm    linux/arm64/v8   layers "shared base", "arm64 only"
//	armv7  linux/arm/v7     layer "arm v7 only"
//	bare   no platform      layer "no platform"
//	attAmd unknown/unknown  attestation of amd
//	attArm unknown/unknown  attestation of arm
//
// with referrers: an SBOM of amd, an SBOM of arm and a note on idx itself.
type platformWorld struct {
	src                                   *referrerSource
	store                                 *regStore
	idx                                   ocispec.Descriptor
	amd, arm, armv7, bare, attAmd, attArm ocispec.Descriptor
	sbomAmd, sbomArm, idxNote             ocispec.Descriptor
}

func withPlatform(d ocispec.Descriptor, p string) ocispec.Descriptor {
	pl, err := ParsePlatform(p)
	if err != nil {
		panic(err)
	}
	d.Platform = &pl
	return d
}

func attestation(d ocispec.Descriptor, of ocispec.Descriptor) ocispec.Descriptor {
	d.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	d.Annotations = map[string]string{annotationDockerReferenceType: dockerAttestationManifest, annotationDockerReferenceDigest: of.Digest.String()}
	return d
}

// pushIndexWith stores an index with annotations.
func pushIndexWith(t *testing.T, st *regStore, children []ocispec.Descriptor, ann map[string]string, tags ...string) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: children, Annotations: ann}
	idx.SchemaVersion = 2
	return pushManifest(t, st, ocispec.MediaTypeImageIndex, idx, tags...)
}

func newPlatformWorld(t *testing.T) *platformWorld {
	t.Helper()
	src := newTestSource()
	w := &platformWorld{src: newReferrerSource(src), store: src.store("src.io/multi")}
	st := w.store
	w.amd = withPlatform(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("shared base"), []byte("amd64 only")}}), "linux/amd64")
	w.arm = withPlatform(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("shared base"), []byte("arm64 only")}}), "linux/arm64/v8")
	w.armv7 = withPlatform(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("arm v7 only")}}), "linux/arm/v7")
	w.bare = pushImage(t, st, imageSpec{layers: [][]byte{[]byte("no platform")}})
	w.attAmd = attestation(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("attestation of amd64")}}), w.amd)
	w.attArm = attestation(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("attestation of arm64")}}), w.arm)
	w.idx = pushIndexWith(t, st, []ocispec.Descriptor{w.amd, w.arm, w.armv7, w.bare, w.attAmd, w.attArm},
		map[string]string{"org.opencontainers.image.title": "multi"}, "v1")
	w.sbomAmd = pushArtifact(t, st, atSBOM, w.amd, "sbom of amd64")
	w.sbomArm = pushArtifact(t, st, atSBOM, w.arm, "sbom of arm64")
	w.idxNote = pushArtifact(t, st, atSBOM, w.idx, "note on the index")
	return w
}

func (w *platformWorld) discover(t *testing.T, opts DiscoverOptions, specs ...RootSpec) *Graph {
	t.Helper()
	if len(specs) == 0 {
		specs = []RootSpec{{Ref: "src.io/multi:v1", Kind: RootImage}}
	}
	opts.Referrers = true
	g, err := Discover(context.Background(), w.src, specs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func platforms(t *testing.T, ss ...string) []ocispec.Platform {
	t.Helper()
	var out []ocispec.Platform
	for _, s := range ss {
		p, err := ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func leftOutDigests(n *Node) []digest.Digest {
	var out []digest.Digest
	for _, c := range n.LeftOut {
		out = append(out, c.Desc.Digest)
	}
	slices.Sort(out)
	return out
}

func sortedDigests(ds ...ocispec.Descriptor) []digest.Digest {
	var out []digest.Digest
	for _, d := range ds {
		out = append(out, d.Digest)
	}
	slices.Sort(out)
	return out
}

func TestDiscoverPlatformFilter(t *testing.T) {
	w := newPlatformWorld(t)
	tests := []struct {
		name      string
		platforms []string
		leftOut   []ocispec.Descriptor
		referrers []ocispec.Descriptor
	}{
		{"none", nil, nil, []ocispec.Descriptor{w.sbomAmd, w.sbomArm, w.idxNote}},
		{"amd64", []string{"linux/amd64"}, []ocispec.Descriptor{w.arm, w.armv7, w.attArm}, []ocispec.Descriptor{w.sbomAmd, w.idxNote}},
		{"arm64 without variant", []string{"linux/arm64"}, []ocispec.Descriptor{w.amd, w.armv7, w.attAmd}, []ocispec.Descriptor{w.sbomArm, w.idxNote}},
		{"arm v7", []string{"linux/arm/v7"}, []ocispec.Descriptor{w.amd, w.arm, w.attAmd, w.attArm}, []ocispec.Descriptor{w.idxNote}},
		{"two", []string{"linux/arm64/v8", "linux/amd64"}, []ocispec.Descriptor{w.armv7}, []ocispec.Descriptor{w.sbomAmd, w.sbomArm, w.idxNote}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := w.discover(t, DiscoverOptions{Platforms: platforms(t, tt.platforms...)})
			n := g.Roots[0]
			if n.Desc.Digest != w.idx.Digest || n.Rewrite != nil {
				t.Fatalf("root %s (rewrite %v), want %s unchanged", n.Desc.Digest, n.Rewrite, w.idx.Digest)
			}
			if got, want := leftOutDigests(n), sortedDigests(tt.leftOut...); !slices.Equal(got, want) {
				t.Errorf("left out %v, want %v", got, want)
			}
			for _, c := range n.LeftOut {
				if c.Parent != w.idx.Digest {
					t.Errorf("left-out %s: parent %s, want the index", c.Desc.Digest, c.Parent)
				}
				if _, att := isAttestation(c.Desc); att != c.Attestation {
					t.Errorf("left-out %s: Attestation %v", c.Desc.Digest, c.Attestation)
				}
			}
			var refs []ocispec.Descriptor
			for _, r := range n.Referrers {
				refs = append(refs, r.Desc)
			}
			if got, want := sortedDigests(refs...), sortedDigests(tt.referrers...); !slices.Equal(got, want) {
				t.Errorf("referrers %v, want %v", got, want)
			}
		})
	}
}

func TestDiscoverPlatformNoMatch(t *testing.T) {
	w := newPlatformWorld(t)
	_, err := Discover(context.Background(), w.src, []RootSpec{{Ref: "src.io/multi:v1", Kind: RootImage}},
		DiscoverOptions{Platforms: platforms(t, "linux/s390x", "windows/amd64")})
	if !errors.Is(err, ErrNoPlatformMatch) {
		t.Fatalf("err = %v, want ErrNoPlatformMatch", err)
	}
	for _, want := range []string{"src.io/multi:v1", w.idx.Digest.String(), "linux/s390x, windows/amd64", "it has linux/amd64, linux/arm64/v8, linux/arm/v7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestDiscoverPlatformIndexWithoutPlatforms(t *testing.T) {
	// An index none of whose children says its platform is kept whole.
	src := newTestSource()
	st := src.store("src.io/plain")
	a := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("a")}})
	b := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("b")}})
	idx := pushIndex(t, st, []ocispec.Descriptor{a, b}, "v1")
	g, err := Discover(context.Background(), src, []RootSpec{{Ref: "src.io/plain:v1"}}, DiscoverOptions{Platforms: platforms(t, "linux/s390x")})
	if err != nil {
		t.Fatal(err)
	}
	if n := g.Roots[0]; n.Desc.Digest != idx.Digest || len(n.LeftOut) != 0 {
		t.Errorf("root %s leaves out %d children, want %s whole", n.Desc.Digest, len(n.LeftOut), idx.Digest)
	}
}

// hasAll reports which of ds st holds.
func holds(t *testing.T, st content.ReadOnlyStorage, ds ...ocispec.Descriptor) []bool {
	t.Helper()
	out := make([]bool, len(ds))
	for i, d := range ds {
		ok, err := st.Exists(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = ok
	}
	return out
}

func TestCopyToRepoSparseIndex(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	g := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64")})
	dst := newCountingTarget()
	res, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"})
	if err != nil {
		t.Fatal(err)
	}
	kept := []ocispec.Descriptor{w.idx, w.amd, w.bare, w.attAmd, w.sbomAmd, w.idxNote}
	for i, ok := range holds(t, dst, kept...) {
		if !ok {
			t.Errorf("destination lacks %s", kept[i].Digest)
		}
	}
	gone := []ocispec.Descriptor{w.arm, w.armv7, w.attArm, w.sbomArm}
	for i, ok := range holds(t, dst, gone...) {
		if ok {
			t.Errorf("destination holds %s, which the filter leaves out", gone[i].Digest)
		}
	}
	// The arm64-only layer is not sent; the shared one is.
	var arm ocispec.Manifest
	raw, _ := content.FetchAll(ctx, w.store, w.arm)
	if err := json.Unmarshal(raw, &arm); err != nil {
		t.Fatal(err)
	}
	if got := holds(t, dst, arm.Layers...); !got[0] || got[1] {
		t.Errorf("shared layer at destination %v, arm64 layer %v; want true, false", got[0], got[1])
	}
	if d := resolveTag(t, dst, "v1"); d.Digest != w.idx.Digest {
		t.Errorf("tag v1 -> %s, want the original index %s", d.Digest, w.idx.Digest)
	}
	lock, err := res.ImagesLock()
	if err != nil {
		t.Fatal(err)
	}
	if got := lock.Images[0]; got.Image != "dst.io/apps@"+w.idx.Digest.String() || len(got.Annotations) != 0 {
		t.Errorf("lock entry %+v, want the original digest and no annotation", got)
	}
}

func TestCopyToRepoNestedIndex(t *testing.T) {
	ctx := context.Background()
	src := newTestSource()
	st := src.store("src.io/nested")
	amd := withPlatform(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("linux amd64")}}), "linux/amd64")
	arm := withPlatform(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("linux arm64")}}), "linux/arm64")
	win := withPlatform(pushImage(t, st, imageSpec{layers: [][]byte{[]byte("windows amd64")}}), "windows/amd64")
	linux := pushIndex(t, st, []ocispec.Descriptor{amd, arm})
	windows := pushIndex(t, st, []ocispec.Descriptor{win})
	outer := pushIndexWith(t, st, []ocispec.Descriptor{linux, windows}, nil, "v1")

	g, err := Discover(ctx, src, []RootSpec{{Ref: "src.io/nested:v1", Kind: RootImage}}, DiscoverOptions{Platforms: platforms(t, "linux/arm64")})
	if err != nil {
		t.Fatal(err)
	}
	n := g.Roots[0]
	if got, want := leftOutDigests(n), sortedDigests(amd, windows); !slices.Equal(got, want) {
		t.Fatalf("left out %v, want amd64 image and windows index %v", got, want)
	}
	for _, c := range n.LeftOut {
		want := linux.Digest
		if c.Desc.Digest == windows.Digest {
			want = outer.Digest
		}
		if c.Parent != want {
			t.Errorf("left-out %s: parent %s, want %s", c.Desc.Digest, c.Parent, want)
		}
	}
	dst := memory.New()
	if _, err := CopyToRepo(ctx, src, g, dst, CopyOptions{DestRepo: "dst.io/x"}); err != nil {
		t.Fatal(err)
	}
	if got := holds(t, dst, outer, linux, arm, windows, win, amd); !slices.Equal(got, []bool{true, true, true, false, false, false}) {
		t.Errorf("destination holds outer, linux, arm64, windows, win image, amd64: %v", got)
	}

	// Rewritten: both levels get a new index.
	g, err = Discover(ctx, src, []RootSpec{{Ref: "src.io/nested:v1", Kind: RootImage}}, DiscoverOptions{Platforms: platforms(t, "linux/arm64"), RewriteIndexes: true})
	if err != nil {
		t.Fatal(err)
	}
	n = g.Roots[0]
	if n.Rewrite == nil || n.Rewrite.Original.Digest != outer.Digest {
		t.Fatalf("rewrite = %+v, want one of %s", n.Rewrite, outer.Digest)
	}
	dst = memory.New()
	if _, err := CopyToRepo(ctx, src, g, dst, CopyOptions{DestRepo: "dst.io/x"}); err != nil {
		t.Fatal(err)
	}
	top := fetchIndex(t, dst, n.Desc)
	if len(top.Manifests) != 1 || top.Manifests[0].Digest == linux.Digest {
		t.Fatalf("new outer index lists %+v, want one rewritten linux index", top.Manifests)
	}
	inner := fetchIndex(t, dst, top.Manifests[0])
	if len(inner.Manifests) != 1 || inner.Manifests[0].Digest != arm.Digest || inner.Annotations[AnnotationOriginalIndexDigest] != linux.Digest.String() {
		t.Errorf("new linux index lists %+v with annotations %v; want arm64 only and the original digest", inner.Manifests, inner.Annotations)
	}
	if got := holds(t, dst, linux, amd, windows); slices.Contains(got, true) {
		t.Errorf("destination holds original linux index, amd64, windows: %v", got)
	}
}

func fetchIndex(t *testing.T, st content.Fetcher, d ocispec.Descriptor) ocispec.Index {
	t.Helper()
	raw, err := content.FetchAll(context.Background(), st, d)
	if err != nil {
		t.Fatalf("fetch %s: %v", d.Digest, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// validatingTarget refuses, as distribution does by default, an index
// whose children it does not hold.
type validatingTarget struct {
	*countingTarget
	refused int
}

func (v *validatingTarget) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if !isIndex(desc.MediaType) {
		return v.countingTarget.Push(ctx, desc, r)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return err
	}
	for _, c := range idx.Manifests {
		if ok, _ := v.Exists(ctx, c); !ok {
			v.mu.Lock()
			v.refused++
			v.mu.Unlock()
			return &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusBadRequest,
				Errors: errcode.Errors{{Code: "MANIFEST_BLOB_UNKNOWN", Message: "blob unknown to registry", Detail: c.Digest.String()}}}
		}
	}
	return v.countingTarget.Push(ctx, desc, bytes.NewReader(raw))
}

func TestCopyToRepoSparseIndexRefused(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	g := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64")})
	dst := &validatingTarget{countingTarget: newCountingTarget()}
	_, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"})
	if !errors.Is(err, ErrSparseIndexRefused) {
		t.Fatalf("err = %v, want ErrSparseIndexRefused", err)
	}
	var se *SparseIndexError
	if !errors.As(err, &se) || se.Digest != w.idx.Digest || se.Node != g.Roots[0] {
		t.Fatalf("err = %#v, want a SparseIndexError for %s", err, w.idx.Digest)
	}
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the registry's answer is not kept: %v", err)
	}
	for _, want := range []string{w.idx.Digest.String(), "src.io/multi:v1", "validation.manifests.indexes.platforms: none", "manifest blob unknown"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(dst.tags) != 0 {
		t.Errorf("tags applied after a failed copy: %v", dst.tags)
	}
	// oras-go pushes an index refused for missing content once more, after
	// pushing its (kept) child manifests again; ferry does not retry.
	if dst.refused < 1 || dst.refused > 2 {
		t.Errorf("the refused index was pushed %d times, want once or twice", dst.refused)
	}

	// The same registry takes the rewritten index.
	g = w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64"), RewriteIndexes: true})
	if _, err := CopyToRepo(ctx, w.src, g, &validatingTarget{countingTarget: newCountingTarget()}, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatalf("rewritten index: %v", err)
	}
}

func TestCopyToRepoRewriteIndex(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	sig := pushImage(t, w.store, imageSpec{layers: [][]byte{[]byte("cosign signature of the index")}, tags: []string{digestTag(w.idx.Digest, ".sig")}})
	specs := []RootSpec{{Ref: "src.io/multi:v1", Kind: RootImage}, {Ref: "src.io/multi@" + w.idx.Digest.String(), Annotations: map[string]string{"kbld.carvel.dev/id": "multi"}}}
	g := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/arm64"), RewriteIndexes: true, CosignSignatures: true}, specs...)
	n := g.Roots[0]
	if g.Roots[1] != n {
		t.Fatal("two specs of one index give two nodes")
	}
	if n.Rewrite == nil || n.Rewrite.Original.Digest != w.idx.Digest || n.Desc.Digest == w.idx.Digest {
		t.Fatalf("node %s rewrite %+v; want a new index in place of %s", n.Desc.Digest, n.Rewrite, w.idx.Digest)
	}
	if got, want := sortedDigests(nodeDescs(n.Rewrite.Detached)...), sortedDigests(sig, w.idxNote); !slices.Equal(got, want) {
		t.Errorf("detached %v, want the index's signature and note %v", got, want)
	}
	if nodeByDigest(g, sig.Digest) != nil || nodeByDigest(g, w.idxNote.Digest) != nil {
		t.Error("signature or referrer of the original index still in the graph")
	}
	for i, s := range g.Specs {
		if s.Annotations[AnnotationOriginalIndexDigest] != w.idx.Digest.String() {
			t.Errorf("spec %d annotations %v lack the original digest", i, s.Annotations)
		}
	}
	if specs[1].Annotations[AnnotationOriginalIndexDigest] != "" {
		t.Error("Discover changed the caller's RootSpec annotations")
	}

	dst := newCountingTarget()
	res, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"})
	if err != nil {
		t.Fatal(err)
	}
	idx := fetchIndex(t, dst, n.Desc)
	if got, want := sortedDigests(idx.Manifests...), sortedDigests(w.arm, w.bare, w.attArm); !slices.Equal(got, want) {
		t.Errorf("new index lists %v, want %v", got, want)
	}
	for _, c := range idx.Manifests {
		if c.Digest == w.arm.Digest && (c.Platform == nil || c.Platform.Variant != "v8") {
			t.Errorf("arm64 descriptor changed: %+v", c)
		}
		if c.Digest == w.attArm.Digest && c.Annotations[annotationDockerReferenceDigest] != w.arm.Digest.String() {
			t.Errorf("attestation descriptor changed: %+v", c)
		}
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex || idx.Annotations["org.opencontainers.image.title"] != "multi" ||
		idx.Annotations[AnnotationOriginalIndexDigest] != w.idx.Digest.String() {
		t.Errorf("new index media type %q annotations %v", idx.MediaType, idx.Annotations)
	}
	if d := resolveTag(t, dst, "v1"); d.Digest != n.Desc.Digest {
		t.Errorf("tag v1 -> %s, want the new index %s", d.Digest, n.Desc.Digest)
	}
	resolveTag(t, dst, ImgpkgTag(n.Desc.Digest))
	if got := holds(t, dst, w.idx, w.amd, sig, w.idxNote); slices.Contains(got, true) {
		t.Errorf("destination holds original index, amd64, its signature, its note: %v", got)
	}
	lock, err := res.ImagesLock()
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range lock.Images {
		if img.Image != "dst.io/apps@"+n.Desc.Digest.String() || img.Annotations[AnnotationOriginalIndexDigest] != w.idx.Digest.String() {
			t.Errorf("lock entry %d = %+v", i, img)
		}
	}
	if lock.Images[1].Annotations["kbld.carvel.dev/id"] != "multi" {
		t.Errorf("lock entry lost its annotation: %+v", lock.Images[1])
	}
}

func nodeDescs(nodes []*Node) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, len(nodes))
	for i, n := range nodes {
		out[i] = n.Desc
	}
	return out
}

func TestDiscoverRewriteRefusesBundles(t *testing.T) {
	w := newWorld(t)
	p := platforms(t, "linux/amd64")
	_, err := Discover(context.Background(), w.src, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{Platforms: p, RewriteIndexes: true})
	if !errors.Is(err, ErrRewriteBundle) || !strings.Contains(err.Error(), "src.io/bundle:v1") {
		t.Fatalf("err = %v, want ErrRewriteBundle naming the bundle", err)
	}
	// A bundle given as a plain image is not followed: nothing pins.
	if _, err := Discover(context.Background(), w.src, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootImage, AllowBundle: true}}, DiscoverOptions{Platforms: p, RewriteIndexes: true}); err != nil {
		t.Errorf("bundle as an image: %v", err)
	}
}

func TestPlanCopyPlatformLeftOut(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	full, err := PlanCopy(ctx, w.src, w.discover(t, DiscoverOptions{}), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rewrite := range []bool{false, true} {
		g := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64"), RewriteIndexes: rewrite})
		plan, err := PlanCopy(ctx, w.src, g, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// What arm64, arm/v7 and the arm64 attestation hold, less what the
		// copy moves anyway (the shared layer, configs).
		moved := map[digest.Digest]bool{}
		for _, pb := range plan.Blobs {
			moved[pb.Desc.Digest] = true
		}
		left := map[digest.Digest]int64{}
		for _, d := range []ocispec.Descriptor{w.arm, w.armv7, w.attArm} {
			for _, b := range blobsOf(t, w.store, d) {
				if !moved[b.Digest] {
					left[b.Digest] = b.Size
				}
			}
		}
		if _, ok := left[sharedLayer(t, w).Digest]; ok {
			t.Fatal("the shared layer is not copied")
		}
		var want int64
		for _, s := range left {
			want += s
		}
		if len(plan.LeftOutChildren) != 3 {
			t.Fatalf("rewrite %v: %d children left out, want 3", rewrite, len(plan.LeftOutChildren))
		}
		var sum int64
		for _, lc := range plan.LeftOutChildren {
			sum += lc.Bytes
			if lc.Node != g.Roots[0] {
				t.Errorf("left-out child %s attributed to %s", lc.Child.Desc.Digest, lc.Node.Ref)
			}
		}
		if sum != want || plan.Total.PlatformLeftOut != want || plan.Nodes[0].Bytes.PlatformLeftOut != want {
			t.Errorf("rewrite %v: saved %d (total %d, node %d), want %d", rewrite, sum, plan.Total.PlatformLeftOut, plan.Nodes[0].Bytes.PlatformLeftOut, want)
		}
		// Without rewriting, the plan loses exactly those blobs and the
		// SBOM of arm64 (not found at all).
		sbomArm := map[digest.Digest]bool{}
		for _, b := range blobsOf(t, w.store, w.sbomArm) {
			sbomArm[b.Digest] = true
		}
		for _, pb := range full.Blobs {
			if d := pb.Desc.Digest; !moved[d] && !rewrite {
				if _, ok := left[d]; !ok && !sbomArm[d] {
					t.Errorf("%s is not planned, though the filter keeps it", d)
				}
			}
		}
		if !rewrite && full.Total.Total-plan.Total.Total < want {
			t.Errorf("the filter shrinks the plan by %d, less than the %d it saves", full.Total.Total-plan.Total.Total, want)
		}
		if rewrite && plan.Total.Local == 0 {
			t.Error("the rewritten index does not count as read from memory")
		}
	}
}

// sharedLayer is the layer amd64 and arm64 share.
func sharedLayer(t *testing.T, w *platformWorld) ocispec.Descriptor {
	t.Helper()
	var m ocispec.Manifest
	raw, err := content.FetchAll(context.Background(), w.store, w.amd)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m.Layers[0]
}

func TestGatherSparseIndexThenAbsent(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	g := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64")})
	local := memory.New()
	got, err := Gather(ctx, w.src, g, local, GatherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left := got.LeftOut[w.idx.Digest]; !slices.Equal(sortedDigests(left...), sortedDigests(w.arm, w.armv7, w.attArm)) {
		t.Errorf("Gathered.LeftOut = %v", left)
	}
	for _, b := range got.Blobs {
		if b.Digest == w.arm.Digest || b.Digest == w.armv7.Digest {
			t.Errorf("gathered %s, which the filter leaves out", b.Digest)
		}
	}

	// A source holding only what was gathered (a layout), told which
	// children it lacks: discovery and the copy work without a filter.
	layout := newTestSource()
	lst := layout.store("src.io/multi")
	for _, b := range got.Blobs {
		rc, err := local.Fetch(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := lst.Push(ctx, b, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if err := lst.Tag(ctx, w.idx, "v1"); err != nil {
		t.Fatal(err)
	}
	spec := RootSpec{Ref: "src.io/multi:v1"}
	if _, err := Discover(ctx, layout, []RootSpec{spec}, DiscoverOptions{}); err == nil {
		t.Fatal("discovery of a sparse layout without Absent succeeded")
	}
	g2, err := Discover(ctx, layout, []RootSpec{spec}, DiscoverOptions{Absent: got.LeftOut[w.idx.Digest]})
	if err != nil {
		t.Fatal(err)
	}
	if n := g2.Roots[0]; n.Desc.Digest != w.idx.Digest || len(n.LeftOut) != 3 || !n.LeftOut[0].Absent {
		t.Fatalf("root %s left out %+v", n.Desc.Digest, n.LeftOut)
	}
	plan, err := PlanCopy(ctx, layout, g2, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Total.PlatformLeftOut != 0 || len(plan.LeftOutChildren) != 3 {
		t.Errorf("plan of a sparse layout: saved %d, %d children", plan.Total.PlatformLeftOut, len(plan.LeftOutChildren))
	}
	dst := memory.New()
	if _, err := CopyToRepo(ctx, layout, g2, dst, CopyOptions{DestRepo: "dst.io/x"}); err != nil {
		t.Fatal(err)
	}
	if got := holds(t, dst, w.idx, w.amd, w.arm); !slices.Equal(got, []bool{true, true, false}) {
		t.Errorf("destination holds index, amd64, arm64: %v", got)
	}
	// Rewriting from the sparse layout gives the same index as from the registry.
	g3, err := Discover(ctx, layout, []RootSpec{spec}, DiscoverOptions{Absent: got.LeftOut[w.idx.Digest], RewriteIndexes: true})
	if err != nil {
		t.Fatal(err)
	}
	g4 := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64"), RewriteIndexes: true})
	if g3.Roots[0].Desc.Digest != g4.Roots[0].Desc.Digest {
		t.Errorf("rewritten from the layout %s, from the registry %s", g3.Roots[0].Desc.Digest, g4.Roots[0].Desc.Digest)
	}
}
