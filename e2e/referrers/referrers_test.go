package referrers_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// fixture is, in one registry:
//
//	src/app     image app; sbom (artifactType typeSBOM, subject app); sig
//	            (no artifactType, config typeSignature, subject sbom)
//	src/multi   index multi of amd64 and arm64; armNote (typeSBOM, subject
//	            the arm64 child)
//	src/bundle  bundle listing app and multi, tag v1
type fixture struct {
	reg                            registryUnderTest
	app, sbom, sig                 ocispec.Descriptor
	multi, arm, armNote, bundleImg ocispec.Descriptor
}

func newFixture(ctx context.Context, t *testing.T, reg registryUnderTest, seed uint64) *fixture {
	t.Helper()
	b := builder(seed)
	f := &fixture{reg: reg}
	f.app = b.Image(ctx, t, reg.Ref("src/app"), harness.ImageSpec{})
	f.sbom = pushArtifact(ctx, t, reg.Ref("src/app"), typeSBOM, f.app, "sbom of app")
	f.sig = pushArtifact(ctx, t, reg.Ref("src/app"), "", f.sbom, "signature of the sbom")
	f.multi = b.Index(ctx, t, reg.Ref("src/multi"), harness.IndexSpec{})
	_, raw := b.FetchManifest(ctx, t, reg.Ref("src/multi"), f.multi.Digest.String())
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	f.arm = idx.Manifests[1]
	f.armNote = pushArtifact(ctx, t, reg.Ref("src/multi"), typeSBOM, f.arm, "sbom of the arm64 image")
	f.bundleImg = b.Bundle(ctx, t, reg.Ref("src/bundle"), harness.BundleSpec{
		Images: []string{harness.DigestRef(reg.Ref("src/app"), f.app.Digest), harness.DigestRef(reg.Ref("src/multi"), f.multi.Digest)},
		Tag:    "v1",
	})
	return f
}

// wantImageReferrers checks that dstRef holds the app's referrers and lists
// them as referrers of their subjects.
func (f *fixture) wantImageReferrers(ctx context.Context, t *testing.T, dstRef string) {
	t.Helper()
	dst := harness.AnonymousRepository(t, dstRef)
	for _, d := range []ocispec.Descriptor{f.app, f.sbom, f.sig} {
		if !exists(ctx, t, dst, d) {
			t.Errorf("%s missing at %s", d.Digest, dstRef)
		}
	}
	wantDigests(t, "referrers of app at the destination", referrers(ctx, t, dst, f.app), f.sbom.Digest)
	wantDigests(t, "referrers of the sbom at the destination", referrers(ctx, t, dst, f.sbom), f.sig.Digest)
}

// TestReferrersAPI copies from a registry with the referrers API: the
// referrers land at the destination, which lists them through its API.
// Referrers get no sha256-<hex>.imgpkg tag. A destination that confirms
// the subject (OCI-Subject) gets no sha256-<hex> tag index either;
// go-containerregistry's, which does not, gets one too (oras-go's rule).
func TestReferrersAPI(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src, dst, compliant := startGGCR(t, false), startGGCR(t, false), startGGCR(t, true)
	f := newFixture(ctx, t, src, 101)

	for _, tc := range []struct {
		name     string
		dst      *ggcrRegistry
		wantTags []string
	}{
		{"image into a registry that confirms subjects", compliant, []string{digestTag(f.app.Digest, ".imgpkg")}},
		{"image into go-containerregistry", dst, []string{digestTag(f.app.Digest, ""), digestTag(f.app.Digest, ".imgpkg"), digestTag(f.sbom.Digest, "")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dstRef := tc.dst.Ref("copy/app")
			res := harness.RunOK(t, nil, "copy", "-i", harness.DigestRef(src.Ref("src/app"), f.app.Digest), "--to-repo", dstRef)
			f.wantImageReferrers(ctx, t, dstRef)
			api := referrersByAPI(ctx, t, dstRef, f.app.Digest)
			if len(api) != 1 || api[0].Digest != f.sbom.Digest || api[0].MediaType != ocispec.MediaTypeImageManifest ||
				api[0].Annotations["org.example.note"] != "sbom of app" {
				t.Errorf("referrers API at the destination lists %+v, want the sbom", api)
			}
			if api := referrersByAPI(ctx, t, dstRef, f.sbom.Digest); len(api) != 1 || api[0].Digest != f.sig.Digest {
				t.Errorf("referrers API at the destination lists %+v for the sbom, want its signature", api)
			}
			want := slices.Sorted(slices.Values(tc.wantTags))
			if got := harness.Tags(ctx, t, harness.AnonymousRepository(t, dstRef)); !slices.Equal(got, want) {
				t.Errorf("tags at the destination:\n got %q\nwant %q", got, want)
			}
			if !strings.Contains(res.Stderr, "will export "+harness.DigestRef(src.Ref("src/app"), f.sbom.Digest)) {
				t.Errorf("the sbom is not named in the output:\n%s", res.Stderr)
			}
		})
	}

	t.Run("bundle", func(t *testing.T) {
		dstRef := compliant.Ref("copy/bundle")
		harness.RunOK(t, nil, "copy", "-b", src.Ref("src/bundle")+":v1", "--to-repo", dstRef)
		f.wantImageReferrers(ctx, t, dstRef)
		dstRepo := harness.AnonymousRepository(t, dstRef)
		if !exists(ctx, t, dstRepo, f.armNote) {
			t.Errorf("referrer of an index child missing")
		}
		wantDigests(t, "referrers of the arm64 child", referrers(ctx, t, dstRepo, f.arm), f.armNote.Digest)
		got := harness.Tags(ctx, t, dstRepo)
		want := []string{
			"v1",
			digestTag(f.app.Digest, ".imgpkg"),
			digestTag(f.bundleImg.Digest, ".image-locations.imgpkg"),
			digestTag(f.bundleImg.Digest, ".imgpkg"),
			digestTag(f.multi.Digest, ".imgpkg"),
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("tags at the destination:\n got %q\nwant %q", got, want)
		}
	})
}

// TestReferrersFallbackTagSchema copies between two distribution registries
// (no referrers API): ferry finds the referrers through the source's
// sha256-<hex> tag index, and oras-go keeps the destination's index.
func TestReferrersFallbackTagSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	f := newFixture(ctx, t, src, 102)

	dstRef := dst.Ref("copy/bundle")
	harness.RunOK(t, nil, "copy", "-b", src.Ref("src/bundle")+":v1", "--to-repo", dstRef)
	f.wantImageReferrers(ctx, t, dstRef)
	dstRepo := harness.AnonymousRepository(t, dstRef)
	wantDigests(t, "referrers of the arm64 child", referrers(ctx, t, dstRepo, f.arm), f.armNote.Digest)

	// The fallback indexes themselves, read by tag.
	for _, tc := range []struct {
		subject, referrer ocispec.Descriptor
		artifactType      string
	}{
		{f.app, f.sbom, typeSBOM},
		{f.sbom, f.sig, typeSignature},
		{f.arm, f.armNote, typeSBOM},
	} {
		tag := digestTag(tc.subject.Digest, "")
		_, raw := builder(0).FetchManifest(ctx, t, dstRef, tag)
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatal(err)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != tc.referrer.Digest || idx.Manifests[0].ArtifactType != tc.artifactType {
			t.Errorf("%s:%s lists %+v, want %s of type %s", dstRef, tag, idx.Manifests, tc.referrer.Digest, tc.artifactType)
		}
	}
	want := []string{
		"v1",
		digestTag(f.app.Digest, ""),
		digestTag(f.app.Digest, ".imgpkg"),
		digestTag(f.arm.Digest, ""),
		digestTag(f.bundleImg.Digest, ".image-locations.imgpkg"),
		digestTag(f.bundleImg.Digest, ".imgpkg"),
		digestTag(f.multi.Digest, ".imgpkg"),
		digestTag(f.sbom.Digest, ""),
	}
	slices.Sort(want)
	if got := harness.Tags(ctx, t, dstRepo); !slices.Equal(got, want) {
		t.Errorf("tags at the destination:\n got %q\nwant %q", got, want)
	}

	t.Run("copied again", func(t *testing.T) {
		// Everything is there: nothing is pushed, the indexes stay.
		harness.RunOK(t, nil, "copy", "-b", src.Ref("src/bundle")+":v1", "--to-repo", dstRef)
		f.wantImageReferrers(ctx, t, dstRef)
		if got := harness.Tags(ctx, t, dstRepo); !slices.Equal(got, want) {
			t.Errorf("tags after a second copy:\n got %q\nwant %q", got, want)
		}
	})
}

// TestReferrersOff: --referrers=false copies the images and no referrer.
func TestReferrersOff(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src, dst := startGGCR(t, false), startGGCR(t, true)
	f := newFixture(ctx, t, src, 103)
	dstRef := dst.Ref("copy/bundle")
	harness.RunOK(t, nil, "copy", "-b", src.Ref("src/bundle")+":v1", "--to-repo", dstRef, "--referrers=false")
	dstRepo := harness.AnonymousRepository(t, dstRef)
	for _, d := range []ocispec.Descriptor{f.bundleImg, f.app, f.multi} {
		if !exists(ctx, t, dstRepo, d) {
			t.Errorf("%s missing", d.Digest)
		}
	}
	for _, d := range []ocispec.Descriptor{f.sbom, f.sig, f.armNote} {
		if exists(ctx, t, dstRepo, d) {
			t.Errorf("referrer %s copied with --referrers=false", d.Digest)
		}
	}
	if got := referrersByAPI(ctx, t, dstRef, f.app.Digest); len(got) != 0 {
		t.Errorf("destination lists referrers of app: %v", got)
	}
}

// TestReferrersThroughTar: --to-tar puts the referrers in the layout (listed
// in index.json with their artifact type), and --tar --to-repo brings them
// along into a registry with the API and into one without.
func TestReferrersThroughTar(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src, apiDst := startGGCR(t, false), startGGCR(t, true)
	tagDst := harness.StartRegistry(t, harness.RegistryOptions{})
	f := newFixture(ctx, t, src, 104)
	tarPath := filepath.Join(t.TempDir(), "bundle.tar")
	harness.RunOK(t, nil, "copy", "-b", src.Ref("src/bundle")+":v1", "--to-tar", tarPath)

	index := readTarIndex(t, tarPath)
	wantType := map[digest.Digest]string{f.sbom.Digest: typeSBOM, f.sig.Digest: typeSignature, f.armNote.Digest: typeSBOM}
	for d, at := range wantType {
		i := slices.IndexFunc(index.Manifests, func(m ocispec.Descriptor) bool { return m.Digest == d })
		if i < 0 {
			t.Errorf("index.json does not list referrer %s", d)
			continue
		}
		if got := index.Manifests[i].ArtifactType; got != at {
			t.Errorf("index.json: referrer %s has artifactType %q, want %q", d, got, at)
		}
	}

	for _, tc := range []struct {
		name string
		reg  registryUnderTest
	}{{"referrers API", apiDst}, {"tag schema", tagDst}} {
		t.Run(tc.name, func(t *testing.T) {
			dstRef := tc.reg.Ref("from/tar")
			harness.RunOK(t, nil, "copy", "--tar", tarPath, "--to-repo", dstRef)
			f.wantImageReferrers(ctx, t, dstRef)
			wantDigests(t, "referrers of the arm64 child", referrers(ctx, t, harness.AnonymousRepository(t, dstRef), f.arm), f.armNote.Digest)
			for _, tag := range harness.Tags(ctx, t, harness.AnonymousRepository(t, dstRef)) {
				for _, d := range []digest.Digest{f.sbom.Digest, f.sig.Digest, f.armNote.Digest} {
					if tag == digestTag(d, ".imgpkg") {
						t.Errorf("referrer tagged %s", tag)
					}
				}
			}
		})
	}

	t.Run("--referrers=false", func(t *testing.T) {
		dstRef := apiDst.Ref("from/tar-without")
		harness.RunOK(t, nil, "copy", "--tar", tarPath, "--to-repo", dstRef, "--referrers=false")
		dstRepo := harness.AnonymousRepository(t, dstRef)
		if !exists(ctx, t, dstRepo, f.app) {
			t.Fatal("app missing")
		}
		for _, d := range []ocispec.Descriptor{f.sbom, f.sig, f.armNote} {
			if exists(ctx, t, dstRepo, d) {
				t.Errorf("referrer %s copied from the tar with --referrers=false", d.Digest)
			}
		}
	})
}

// TestCosignTags: --cosign-signatures copies the .sig, .att and .sbom tags
// of an image, as imgpkg does for .sig.
func TestCosignTags(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(105)
	app := b.Image(ctx, t, src.Ref("signed/app"), harness.ImageSpec{})
	want := map[string]digest.Digest{digestTag(app.Digest, ".imgpkg"): app.Digest}
	for _, suffix := range []string{"sig", "att", "sbom"} {
		d := b.CosignTag(ctx, t, src.Ref("signed/app"), app.Digest, suffix)
		want[digestTag(app.Digest, "."+suffix)] = d.Digest
	}
	dstRef := dst.Ref("signed/app")
	harness.RunOK(t, nil, "copy", "-i", harness.DigestRef(src.Ref("signed/app"), app.Digest), "--to-repo", dstRef, "--cosign-signatures")
	dstRepo := harness.AnonymousRepository(t, dstRef)
	var wantTags []string
	for tag, d := range want {
		wantTags = append(wantTags, tag)
		desc, err := dstRepo.Resolve(ctx, tag)
		if err != nil || desc.Digest != d {
			t.Errorf("%s:%s -> %v (%v), want %s", dstRef, tag, desc.Digest, err, d)
		}
	}
	slices.Sort(wantTags)
	if got := harness.Tags(ctx, t, dstRepo); !slices.Equal(got, wantTags) {
		t.Errorf("tags:\n got %q\nwant %q", got, wantTags)
	}
}

// readTarIndex returns index.json of a layout tar.
func readTarIndex(t *testing.T, path string) ocispec.Index {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	tr := tar.NewReader(file)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no index.json", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		return idx
	}
}
