package tarball_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestOCILayoutDirRoundTrip carries a bundle through an OCI image-layout
// directory: --to-oci-layout, tar verify and tar inspect on the directory,
// the source stopped, --oci-layout --to-repo, then a pull from the
// destination.
func TestOCILayoutDirRoundTrip(t *testing.T) {
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(121)
	base := bytes.Repeat([]byte("layout dir base\n"), 100)
	app := b.Image(ctx, t, src.Ref("dir/app"), harness.ImageSpec{Layers: []int{3000}, SharedBase: base, Docker: true})
	multi := b.Index(ctx, t, src.Ref("dir/multi"), harness.IndexSpec{Layers: []int{500}})
	refs := []string{harness.DigestRef(src.Ref("dir/app"), app.Digest), harness.DigestRef(src.Ref("dir/multi"), multi.Digest)}
	bundle := b.Bundle(ctx, t, src.Ref("dir/bundle"), harness.BundleSpec{Images: refs, Tag: "v2"})

	work := t.TempDir()
	dir := filepath.Join(work, "layout")
	harness.RunOK(t, nil, "copy", "-b", src.Ref("dir/bundle")+":v2", "--to-oci-layout", dir)
	for _, name := range []string{"oci-layout", "index.json", filepath.Join("blobs", "sha256", bundle.Digest.Encoded())} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("layout directory: %v", err)
		}
	}
	res := harness.RunOK(t, nil, "tar", "verify", dir)
	if !strings.HasPrefix(res.Stdout, dir+": OK: ") || !strings.Contains(res.Stdout, "every reference of 3 roots present") {
		t.Errorf("tar verify stdout %q", res.Stdout)
	}
	res = harness.RunOK(t, nil, "tar", "inspect", dir)
	for _, want := range []struct {
		refName, kind string
		d             digest.Digest
	}{{"v2", "bundle", bundle.Digest}, {harness.ImgpkgTag(app.Digest), "image", app.Digest}, {harness.ImgpkgTag(multi.Digest), "index", multi.Digest}} {
		var ok bool
		for l := range strings.SplitSeq(res.Stdout, "\n") {
			f := strings.Fields(l)
			ok = ok || (len(f) > 2 && f[0] == want.refName && f[1] == want.kind && f[2] == want.d.String())
		}
		if !ok {
			t.Errorf("tar inspect has no line %s %s %s:\n%s", want.refName, want.kind, want.d, res.Stdout)
		}
	}

	src.Stop()
	dstRef := dst.Ref("dir/bundle")
	res = harness.RunOK(t, nil, "copy", "--oci-layout", dir, "--to-repo", dstRef)
	if !strings.Contains(res.Stderr, "copy | imported 3 images") {
		t.Errorf("stderr:\n%s", res.Stderr)
	}
	repo := dst.Repository(t, "dir/bundle")
	wantTag(ctx, t, repo, "v2", bundle.Digest)
	for _, d := range []digest.Digest{bundle.Digest, app.Digest, multi.Digest} {
		wantTag(ctx, t, repo, harness.ImgpkgTag(d), d)
		graphAt(ctx, t, repo, d)
	}
	if _, err := repo.Resolve(ctx, harness.ImageLocationsTag(bundle.Digest)); err != nil {
		t.Errorf("ImageLocations image: %v", err)
	}

	out := filepath.Join(work, "pulled")
	res = harness.RunOK(t, nil, "pull", "-b", dstRef+":v2", "-o", out)
	yml, err := os.ReadFile(filepath.Join(out, ".imgpkg", "images.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{app.Digest, multi.Digest} {
		if !strings.Contains(string(yml), harness.DigestRef(dstRef, d)) {
			t.Errorf("images.yml does not point %s at the destination:\n%s", d, yml)
		}
	}
}
