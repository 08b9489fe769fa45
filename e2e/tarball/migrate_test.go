package tarball_test

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// The digests imgpkg 0.43 gave the content of ocilayout/testdata's tarballs
// (see its README): importing them must give exactly these.
const (
	imgpkgBundle = digest.Digest("sha256:bb8cf61bef5cad5d14e525aff1d5cc3e59ff3d63521a64da2bc112713c5c2551")
	imgpkgApp    = digest.Digest("sha256:5c4c4659c64057896a055214cc339a1ef20e43348e9db962ec6e3f6fe237977e")
	imgpkgMulti  = digest.Digest("sha256:2bcb5d869ef1ff0b5fc6c840b105a5560cb086c6474ec55da3f80f211dd24395")
	imgpkgOrigin = "127.0.0.1:5001/tiny/"
)

// imgpkgTestdata returns the path of a tarball written by imgpkg, from the
// checkout (so a clean clone has it).
func imgpkgTestdata(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(harness.SourceRoot(t), "ocilayout", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("imgpkg test tarball: %v", err)
	}
	return p
}

// TestMigrateImgpkgBundleTar imports imgpkg's bundle tarball: the same
// digests as imgpkg's, tag v1 re-applied, every image tagged, the
// ImageLocations image pushed, a BundleLock written, and a pull from the
// destination rewrites images.yml to it. No registry but the destination
// exists.
func TestMigrateImgpkgBundleTar(t *testing.T) {
	ctx := t.Context()
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	work := t.TempDir()
	dstRef := dst.Ref("migrated/bundle")
	lockPath := filepath.Join(work, "lock.yml")

	res := harness.RunOK(t, nil, "copy", "--tar", imgpkgTestdata(t, "imgpkg-bundle.tar"), "--to-repo", dstRef, "--lock-output", lockPath)
	if !strings.Contains(res.Stderr, "copy | imported 3 images") || !strings.Contains(res.Stderr, "Succeeded") {
		t.Errorf("stderr:\n%s", res.Stderr)
	}
	repo := dst.Repository(t, "migrated/bundle")
	wantTag(ctx, t, repo, "v1", imgpkgBundle)
	for _, d := range []digest.Digest{imgpkgBundle, imgpkgApp, imgpkgMulti} {
		wantTag(ctx, t, repo, harness.ImgpkgTag(d), d)
	}
	want := []string{"v1", harness.ImgpkgTag(imgpkgBundle), harness.ImgpkgTag(imgpkgApp), harness.ImgpkgTag(imgpkgMulti), harness.ImageLocationsTag(imgpkgBundle)}
	slices.Sort(want)
	if got := harness.Tags(ctx, t, repo); !slices.Equal(got, want) {
		t.Errorf("tags %q, want %q", got, want)
	}

	// The index and both its children, with every config and layer.
	multi := graphAt(ctx, t, repo, imgpkgMulti)
	var children int
	for _, d := range multi {
		if d.MediaType == harness.MediaTypeDockerManifest || d.MediaType == ocispec.MediaTypeImageManifest {
			children++
		}
	}
	if children != 2 {
		t.Errorf("the index %s has %d child manifests at the destination, want 2 (amd64, arm64): %v", imgpkgMulti, children, multi)
	}
	graphAt(ctx, t, repo, imgpkgApp)
	graphAt(ctx, t, repo, imgpkgBundle)

	// ImageLocations: the images as the bundle's images.yml lists them.
	locDesc, err := repo.Resolve(ctx, harness.ImageLocationsTag(imgpkgBundle))
	if err != nil {
		t.Fatalf("ImageLocations image: %v", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(harness.FetchAll(ctx, t, repo, locDesc), &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("ImageLocations manifest: %v %+v", err, m)
	}
	locs := string(harness.LayerFiles(t, harness.FetchAll(ctx, t, repo, m.Layers[0]))["image-locations.yml"])
	for _, ref := range []string{imgpkgOrigin + "app@" + imgpkgApp.String(), imgpkgOrigin + "multi@" + imgpkgMulti.String()} {
		if !strings.Contains(locs, ref) {
			t.Errorf("image-locations.yml does not list %s:\n%s", ref, locs)
		}
	}

	lock, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lock), "kind: BundleLock") || !strings.Contains(string(lock), dstRef+"@"+imgpkgBundle.String()) || !strings.Contains(string(lock), "tag: v1") {
		t.Errorf("lock output:\n%s", lock)
	}

	out := filepath.Join(work, "pulled")
	res = harness.RunOK(t, nil, "pull", "-b", dstRef+":v1", "-o", out)
	if !strings.Contains(res.Stderr, "The bundle repo ("+dstRef+") is hosting every image") {
		t.Errorf("pull stderr:\n%s", res.Stderr)
	}
	yml, err := os.ReadFile(filepath.Join(out, ".imgpkg", "images.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{imgpkgApp, imgpkgMulti} {
		if !strings.Contains(string(yml), dstRef+"@"+d.String()) {
			t.Errorf("images.yml does not point %s at the destination:\n%s", d, yml)
		}
	}
	if strings.Contains(string(yml), imgpkgOrigin) {
		t.Errorf("images.yml still names the original registry:\n%s", yml)
	}
}

// TestMigrateImgpkgImageTar imports imgpkg's image tarball (written by
// imgpkg copy -i REF:v1): the same digest, tag v1, an ImagesLock.
func TestMigrateImgpkgImageTar(t *testing.T) {
	ctx := t.Context()
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	dstRef := dst.Ref("migrated/app")
	lockPath := filepath.Join(t.TempDir(), "lock.yml")
	harness.RunOK(t, nil, "copy", "--tar", imgpkgTestdata(t, "imgpkg-image.tar"), "--to-repo", dstRef, "--lock-output", lockPath)
	repo := dst.Repository(t, "migrated/app")
	wantTag(ctx, t, repo, "v1", imgpkgApp)
	if got, want := harness.Tags(ctx, t, repo), []string{harness.ImgpkgTag(imgpkgApp), "v1"}; !slices.Equal(got, want) {
		t.Errorf("tags %q, want %q", got, want)
	}
	graphAt(ctx, t, repo, imgpkgApp)
	lock, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lock), "kind: ImagesLock") || !strings.Contains(string(lock), dstRef+"@"+imgpkgApp.String()) {
		t.Errorf("lock output:\n%s", lock)
	}
}

// TestDockerSaveTarRefused checks that a docker save tarball is refused by
// name, before anything is pushed.
func TestDockerSaveTarRefused(t *testing.T) {
	ctx := t.Context()
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	config := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`
	cfgName := digest.FromString(config).Encoded() + ".json"
	path := filepath.Join(t.TempDir(), "docker-save.tar")
	writeTar(t, path, []tarFile{
		{hdr: tar.Header{Name: cfgName, Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte(config)},
		{hdr: tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Mode: 0o644},
			body: []byte(`[{"Config":"` + cfgName + `","RepoTags":["example/app:v1"],"Layers":[]}]`)},
		{hdr: tar.Header{Name: "repositories", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte(`{"example/app":{"v1":"x"}}`)},
	})
	res := harness.Run(t, nil, "copy", "--tar", path, "--to-repo", dst.Ref("docker/save"))
	line := harness.ErrorLine(t, res)
	if !strings.Contains(line, path) || !strings.Contains(line, "docker save") {
		t.Errorf("error line %q does not name the file and docker save", line)
	}
	if tags := harness.Tags(ctx, t, dst.Repository(t, "docker/save")); tags != nil {
		t.Errorf("tags %q pushed from a refused tarball", tags)
	}
	line = harness.ErrorLine(t, harness.Run(t, nil, "tar", "verify", path))
	if !strings.Contains(line, "docker save") {
		t.Errorf("tar verify: error line %q does not say docker save", line)
	}
}
