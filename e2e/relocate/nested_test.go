package relocate_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestCopyNestedBundle copies a bundle that lists another bundle (which
// lists an image also listed by the outer one): both bundles and all images
// land in one repository, each bundle gets its ImageLocations image, and
// pull -r extracts the nested bundle under .imgpkg/bundles/sha256-<hex>/
// with its images.yml rewritten too.
func TestCopyNestedBundle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})

	b := src.Builder(41)
	shared := b.Image(ctx, t, src.Ref("nested/shared"), harness.ImageSpec{Layers: []int{800}})
	innerOnly := b.Image(ctx, t, src.Ref("nested/inner-app"), harness.ImageSpec{Layers: []int{700}, Docker: true})
	outerOnly := b.Image(ctx, t, src.Ref("nested/outer-app"), harness.ImageSpec{Layers: []int{600}})
	innerRefs := []string{harness.DigestRef(src.Ref("nested/inner-app"), innerOnly.Digest), harness.DigestRef(src.Ref("nested/shared"), shared.Digest)}
	inner := b.Bundle(ctx, t, src.Ref("nested/inner"), harness.BundleSpec{
		Images: innerRefs,
		Files:  map[string]string{"config/inner.yml": "inner: true\n"},
	})
	outerRefs := []string{
		harness.DigestRef(src.Ref("nested/inner"), inner.Digest),
		harness.DigestRef(src.Ref("nested/outer-app"), outerOnly.Digest),
		harness.DigestRef(src.Ref("nested/shared"), shared.Digest),
	}
	outer := b.Bundle(ctx, t, src.Ref("nested/outer"), harness.BundleSpec{Images: outerRefs, Tag: "v1", OCI: true})

	dstRef := dst.Ref("nested/all")
	res := harness.RunOK(t, nil, "copy", "-b", src.Ref("nested/outer")+":v1", "--to-repo", dstRef)
	wantLine(t, res, "copy | exporting 5 images...")
	wantLine(t, res, "copy | imported 5 images")

	dstRepo := harness.AnonymousRepository(t, dstRef)
	wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("nested/outer")), dstRepo, outer.Digest, false)
	wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("nested/inner")), dstRepo, inner.Digest, false)
	want := map[string]digest.Digest{"v1": outer.Digest, harness.ImageLocationsTag(outer.Digest): "", harness.ImageLocationsTag(inner.Digest): ""}
	for _, d := range []digest.Digest{outer.Digest, inner.Digest, shared.Digest, innerOnly.Digest, outerOnly.Digest} {
		want[harness.ImgpkgTag(d)] = d
	}
	wantTags(ctx, t, dstRepo, want)
	wantLocations(t, readImageLocations(ctx, t, dstRepo, outer.Digest), map[string]bool{
		outerRefs[0]: true, outerRefs[1]: false, outerRefs[2]: false,
	})
	wantLocations(t, readImageLocations(ctx, t, dstRepo, inner.Digest), map[string]bool{
		innerRefs[0]: false, innerRefs[1]: false,
	})

	dir := filepath.Join(t.TempDir(), "bundle")
	res = harness.RunOK(t, nil, "pull", "-b", dstRef+":v1", "-o", dir, "-r")
	wantSucceeded(t, res)
	outerLock := decodeYAML[imagesLock](t, "images.yml", harness.ReadFile(t, filepath.Join(dir, ".imgpkg", "images.yml")), "ImagesLock")
	var wantOuter []imageEntry
	for i, d := range []digest.Digest{inner.Digest, outerOnly.Digest, shared.Digest} {
		wantOuter = append(wantOuter, imageEntry{Image: harness.DigestRef(dstRef, d), Annotations: map[string]string{harness.KbldIDAnnotation: fixtureID(i)}})
	}
	wantImagesLock(t, "outer images.yml", outerLock, wantOuter)

	nestedDir := filepath.Join(dir, ".imgpkg", "bundles", "sha256-"+inner.Digest.Encoded())
	if got := string(harness.ReadFile(t, filepath.Join(nestedDir, "config", "inner.yml"))); got != "inner: true\n" {
		t.Errorf("nested bundle file: %q", got)
	}
	innerLock := decodeYAML[imagesLock](t, "nested images.yml", harness.ReadFile(t, filepath.Join(nestedDir, ".imgpkg", "images.yml")), "ImagesLock")
	wantImagesLock(t, "nested images.yml", innerLock, []imageEntry{
		{Image: harness.DigestRef(dstRef, innerOnly.Digest), Annotations: map[string]string{harness.KbldIDAnnotation: fixtureID(0)}},
		{Image: harness.DigestRef(dstRef, shared.Digest), Annotations: map[string]string{harness.KbldIDAnnotation: fixtureID(1)}},
	})
	entries, err := os.ReadDir(filepath.Join(dir, ".imgpkg", "bundles"))
	if err != nil || len(entries) != 1 {
		t.Errorf(".imgpkg/bundles holds %v (%v), want only the nested bundle", entries, err)
	}

	// Without -r the nested bundle is not extracted.
	flat := filepath.Join(t.TempDir(), "flat")
	harness.RunOK(t, nil, "pull", "-b", dstRef+":v1", "-o", flat)
	if _, err := os.Stat(filepath.Join(flat, ".imgpkg", "bundles")); !os.IsNotExist(err) {
		t.Errorf("pull without -r: .imgpkg/bundles: %v, want absent", err)
	}
}

// fixtureID is the kbld id harness.ImagesLockYAML gives the i-th image.
func fixtureID(i int) string { return fmt.Sprintf("fixture/image-%d", i) }
