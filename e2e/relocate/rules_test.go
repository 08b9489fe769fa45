package relocate_test

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestCopyToAuthRegistry copies into a registry that requires basic auth:
// with Docker config credentials it works; without them, or with a wrong
// password, ferry exits 1 with an error naming the host and no user tag is
// applied.
func TestCopyToAuthRegistry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const user, password = "ferry", "s3cret-pa55"
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: map[string]string{user: password}})

	b := src.Builder(51)
	img := b.Image(ctx, t, src.Ref("open/app"), harness.ImageSpec{Layers: []int{1200}})
	bundle := b.Bundle(ctx, t, src.Ref("open/bundle"), harness.BundleSpec{Images: []string{harness.DigestRef(src.Ref("open/app"), img.Digest)}, Tag: "v1"})

	good := harness.WriteDockerConfig(t, map[string]harness.Login{dst.Host: {Username: user, Password: password}})
	wrong := harness.WriteDockerConfig(t, map[string]harness.Login{dst.Host: {Username: user, Password: "nope"}})

	for _, tc := range []struct {
		name string
		env  []string
		ok   bool
	}{
		{name: "docker config", env: []string{"DOCKER_CONFIG=" + good}, ok: true},
		{name: "no credentials"},
		{name: "wrong password", env: []string{"DOCKER_CONFIG=" + wrong}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "private/" + strings.ReplaceAll(tc.name, " ", "-")
			res := harness.Run(t, tc.env, "copy", "-b", src.Ref("open/bundle")+":v1", "--to-repo", dst.Ref(repo))
			dstRepo := dst.Repository(t, repo) // authenticated, for the checks
			if tc.ok {
				if res.ExitCode != 0 {
					t.Fatalf("copy: %s", res)
				}
				wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("open/bundle")), dstRepo, bundle.Digest, false)
				wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("open/app")), dstRepo, img.Digest, false)
				if got := resolve(ctx, t, dstRepo, "v1"); got != bundle.Digest {
					t.Errorf("v1 -> %s, want %s", got, bundle.Digest)
				}
				return
			}
			if res.ExitCode != 1 {
				t.Fatalf("copy without valid credentials: %s; want exit 1", res)
			}
			line := harness.ErrorLine(t, res)
			if !strings.Contains(line, dst.Host) {
				t.Errorf("error does not name the destination %s: %s", dst.Host, line)
			}
			if !regexp.MustCompile(`(?i)401|unauthori[sz]ed|credential|authentication`).MatchString(line) {
				t.Errorf("error does not say it is about credentials: %s", line)
			}
			if strings.Contains(res.Stderr, "Succeeded") {
				t.Errorf("stderr says Succeeded after a failure")
			}
			if _, err := dstRepo.Resolve(ctx, "v1"); err == nil {
				t.Errorf("tag v1 applied although the copy failed")
			}
		})
	}
}

// TestCopyNonDistributable checks foreign layers: skipped with a warning
// naming image and layer by default (even when the source lacks the blob),
// copied with --include-non-distributable-layers.
func TestCopyNonDistributable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})

	b := src.Builder(61)
	windows := b.Image(ctx, t, src.Ref("nd/windows"), harness.ImageSpec{NonDistributable: true, Docker: true, Layers: []int{900}})
	ociND := b.Image(ctx, t, src.Ref("nd/oci"), harness.ImageSpec{NonDistributable: true, Layers: []int{500}})
	missing := b.Image(ctx, t, src.Ref("nd/missing"), harness.ImageSpec{NonDistributable: true, ForeignBlobMissing: true, Docker: true})
	plain := b.Image(ctx, t, src.Ref("nd/plain"), harness.ImageSpec{})
	foreignOf := func(repo string, d digest.Digest) ocispec.Descriptor {
		m := manifestOf(ctx, t, harness.AnonymousRepository(t, src.Ref(repo)), d)
		if !isNonDistributable(m.Layers[0]) || len(m.Layers[0].URLs) == 0 {
			t.Fatalf("fixture %s: first layer %+v is not non-distributable", repo, m.Layers[0])
		}
		return m.Layers[0]
	}
	ndRefs := map[string]ocispec.Descriptor{
		harness.DigestRef(src.Ref("nd/windows"), windows.Digest): foreignOf("nd/windows", windows.Digest),
		harness.DigestRef(src.Ref("nd/oci"), ociND.Digest):       foreignOf("nd/oci", ociND.Digest),
	}
	refs := []string{harness.DigestRef(src.Ref("nd/windows"), windows.Digest), harness.DigestRef(src.Ref("nd/oci"), ociND.Digest), harness.DigestRef(src.Ref("nd/plain"), plain.Digest)}
	b.Bundle(ctx, t, src.Ref("nd/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	missingRef := harness.DigestRef(src.Ref("nd/missing"), missing.Digest)
	b.Bundle(ctx, t, src.Ref("nd/bundle-missing"), harness.BundleSpec{Images: []string{missingRef}, Tag: "v1"})

	t.Run("skipped by default", func(t *testing.T) {
		dstRef := dst.Ref("nd/default")
		res := harness.RunOK(t, nil, "copy", "-b", src.Ref("nd/bundle")+":v1", "--to-repo", dstRef)
		dstRepo := harness.AnonymousRepository(t, dstRef)
		for ref, layer := range ndRefs {
			_, d, _ := strings.Cut(ref, "@")
			if !warned(res, ref, layer.Digest) {
				t.Errorf("no warning line naming %s and its layer %s:\n%s", ref, layer.Digest, res.Stderr)
			}
			wantAllAt(ctx, t, harness.AnonymousRepository(t, strings.Split(ref, "@")[0]), dstRepo, digest.Digest(d), true)
			if exists(ctx, t, dstRepo, layer) {
				t.Errorf("non-distributable layer %s of %s was copied", layer.Digest, ref)
			}
		}
		if warned(res, refs[2], "") {
			t.Errorf("a warning names the plain image %s:\n%s", refs[2], res.Stderr)
		}
		wantSucceeded(t, res)
	})

	t.Run("blob absent from the source", func(t *testing.T) {
		dstRef := dst.Ref("nd/missing")
		res := harness.RunOK(t, nil, "copy", "-b", src.Ref("nd/bundle-missing")+":v1", "--to-repo", dstRef)
		layer := foreignOf("nd/missing", missing.Digest)
		if !warned(res, missingRef, layer.Digest) {
			t.Errorf("no warning naming %s and %s:\n%s", missingRef, layer.Digest, res.Stderr)
		}
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("nd/missing")), harness.AnonymousRepository(t, dstRef), missing.Digest, true)
	})

	t.Run("included with the flag", func(t *testing.T) {
		dstRef := dst.Ref("nd/included")
		res := harness.RunOK(t, nil, "copy", "-b", src.Ref("nd/bundle")+":v1", "--to-repo", dstRef, "--include-non-distributable-layers")
		dstRepo := harness.AnonymousRepository(t, dstRef)
		for ref, layer := range ndRefs {
			_, d, _ := strings.Cut(ref, "@")
			wantAllAt(ctx, t, harness.AnonymousRepository(t, strings.Split(ref, "@")[0]), dstRepo, digest.Digest(d), false)
			if !exists(ctx, t, dstRepo, layer) {
				t.Errorf("non-distributable layer %s of %s missing with --include-non-distributable-layers", layer.Digest, ref)
			}
			if warned(res, ref, layer.Digest) {
				t.Errorf("warning about skipping %s although it was included:\n%s", layer.Digest, res.Stderr)
			}
		}
	})
}

// warned reports whether a stderr line mentioning "non-distributable" names
// ref and layer (any layer if empty).
func warned(res harness.Result, ref string, layer digest.Digest) bool {
	for _, line := range stderrLines(res) {
		if strings.Contains(strings.ToLower(line), "non-distributable") && strings.Contains(line, ref) &&
			(layer == "" || strings.Contains(line, layer.String())) && !strings.HasPrefix(line, "copy | will export") {
			return true
		}
	}
	return false
}

// TestCopyWrongKind checks the hints: -b on an image says to use -i, -i on a
// bundle says to use -b, for copy and pull, with exit status 1 and nothing
// copied.
func TestCopyWrongKind(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(71)
	img := b.Image(ctx, t, src.Ref("kind/app"), harness.ImageSpec{Tag: "v1"})
	b.Index(ctx, t, src.Ref("kind/multi"), harness.IndexSpec{Tag: "v1"})
	b.Bundle(ctx, t, src.Ref("kind/bundle"), harness.BundleSpec{Images: []string{harness.DigestRef(src.Ref("kind/app"), img.Digest)}, Tag: "v1"})

	for _, tc := range []struct {
		name string
		args []string
		hint string
	}{
		{"copy -b image", []string{"copy", "-b", src.Ref("kind/app") + ":v1", "--to-repo", dst.Ref("kind/x")}, "use -i"},
		{"copy -b index", []string{"copy", "-b", src.Ref("kind/multi") + ":v1", "--to-repo", dst.Ref("kind/x")}, "use -i"},
		{"copy -i bundle", []string{"copy", "-i", src.Ref("kind/bundle") + ":v1", "--to-repo", dst.Ref("kind/x")}, "use -b"},
		{"pull -b image", []string{"pull", "-b", src.Ref("kind/app") + ":v1", "-o", "OUT"}, "use -i"},
		{"pull -i bundle", []string{"pull", "-i", src.Ref("kind/bundle") + ":v1", "-o", "OUT"}, "use -b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "OUT" {
					args[i] = filepath.Join(t.TempDir(), "out")
				}
			}
			res := harness.Run(t, nil, args...)
			if res.ExitCode != 1 {
				t.Fatalf("%s: %s; want exit 1", tc.name, res)
			}
			line := harness.ErrorLine(t, res)
			if !strings.Contains(line, tc.hint) {
				t.Errorf("error has no hint %q: %s", tc.hint, line)
			}
			if !strings.Contains(line, src.Ref("kind/")) {
				t.Errorf("error does not name the reference: %s", line)
			}
		})
	}
	if tags := harness.Tags(ctx, t, harness.AnonymousRepository(t, dst.Ref("kind/x"))); len(tags) != 0 {
		t.Errorf("failed copies left tags at the destination: %q", tags)
	}
}

// TestCopyCosignSignatures copies the sha256-<hex>.sig tags of the bundle
// and an image with --cosign-signatures, and not without it.
func TestCopyCosignSignatures(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(81)
	img := b.Image(ctx, t, src.Ref("signed/app"), harness.ImageSpec{})
	unsigned := b.Image(ctx, t, src.Ref("signed/other"), harness.ImageSpec{})
	imgSig := b.SignatureTag(ctx, t, src.Ref("signed/app"), img.Digest)
	refs := []string{harness.DigestRef(src.Ref("signed/app"), img.Digest), harness.DigestRef(src.Ref("signed/other"), unsigned.Digest)}
	bundle := b.Bundle(ctx, t, src.Ref("signed/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	bundleSig := b.SignatureTag(ctx, t, src.Ref("signed/bundle"), bundle.Digest)

	sigTag := func(d digest.Digest) string { return "sha256-" + d.Encoded() + ".sig" }
	base := map[string]digest.Digest{
		"v1":                                     bundle.Digest,
		harness.ImgpkgTag(bundle.Digest):         bundle.Digest,
		harness.ImgpkgTag(img.Digest):            img.Digest,
		harness.ImgpkgTag(unsigned.Digest):       unsigned.Digest,
		harness.ImageLocationsTag(bundle.Digest): "",
	}

	t.Run("with --cosign-signatures", func(t *testing.T) {
		dstRef := dst.Ref("signed/with")
		harness.RunOK(t, nil, "copy", "-b", src.Ref("signed/bundle")+":v1", "--to-repo", dstRef, "--cosign-signatures")
		dstRepo := harness.AnonymousRepository(t, dstRef)
		want := map[string]digest.Digest{sigTag(img.Digest): imgSig.Digest, sigTag(bundle.Digest): bundleSig.Digest}
		for k, v := range base {
			want[k] = v
		}
		wantTags(ctx, t, dstRepo, want)
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("signed/app")), dstRepo, imgSig.Digest, false)
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("signed/bundle")), dstRepo, bundleSig.Digest, false)
	})

	t.Run("without", func(t *testing.T) {
		dstRef := dst.Ref("signed/without")
		harness.RunOK(t, nil, "copy", "-b", src.Ref("signed/bundle")+":v1", "--to-repo", dstRef)
		dstRepo := harness.AnonymousRepository(t, dstRef)
		wantTags(ctx, t, dstRepo, base)
		if exists(ctx, t, dstRepo, imgSig) {
			t.Errorf("signature %s copied without --cosign-signatures", imgSig.Digest)
		}
	})
}

// TestCopySameRegistryMounts copies a bundle between repositories of one
// registry: every blob of the images is mounted (POST ...?mount=), none is
// uploaded; only the new ImageLocations blobs are sent.
func TestCopySameRegistryMounts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	b := reg.Builder(91)
	base := []byte(strings.Repeat("base ", 2000))
	a := b.Image(ctx, t, reg.Ref("src/a"), harness.ImageSpec{Layers: []int{4000, 3000}, SharedBase: base})
	c := b.Image(ctx, t, reg.Ref("src/c"), harness.ImageSpec{Layers: []int{2000}, SharedBase: base, Docker: true})
	idx := b.Index(ctx, t, reg.Ref("src/idx"), harness.IndexSpec{})
	refs := []string{harness.DigestRef(p.Ref("src/a"), a.Digest), harness.DigestRef(p.Ref("src/c"), c.Digest), harness.DigestRef(p.Ref("src/idx"), idx.Digest)}
	bundle := b.Bundle(ctx, t, reg.Ref("src/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})

	p.Reset()
	harness.RunOK(t, nil, "copy", "-b", p.Ref("src/bundle")+":v1", "--to-repo", p.Ref("dst/bundle"))
	s := p.Stats()
	t.Logf("%s", requestSummary(s))
	u := uploadsOf(t, s)

	dstRepo := harness.AnonymousRepository(t, reg.Ref("dst/bundle"))
	sourceBlobs := map[digest.Digest]int64{}
	for i, d := range []digest.Digest{bundle.Digest, a.Digest, c.Digest, idx.Digest} {
		repo := []string{"src/bundle", "src/a", "src/c", "src/idx"}[i]
		for _, desc := range wantAllAt(ctx, t, harness.AnonymousRepository(t, reg.Ref(repo)), dstRepo, d, false) {
			if !isManifest(desc) {
				sourceBlobs[desc.Digest] = desc.Size
			}
		}
	}
	var mountedBytes int64
	for d, size := range sourceBlobs {
		if !u.mounted[d] {
			t.Errorf("blob %s was not mounted (tried: %v)", d, u.mountTried[d])
		}
		if n := u.putBytes[d]; n != 0 {
			t.Errorf("blob %s: %d bytes uploaded", d, n)
		}
		mountedBytes += size
	}
	// What was uploaded is the ImageLocations image's config and layer.
	locations := manifestOf(ctx, t, dstRepo, resolve(ctx, t, dstRepo, harness.ImageLocationsTag(bundle.Digest)))
	allowed := map[digest.Digest]int64{locations.Config.Digest: locations.Config.Size, locations.Layers[0].Digest: locations.Layers[0].Size}
	var uploaded int64
	for d, n := range u.putBytes {
		if n == 0 {
			continue
		}
		if want, ok := allowed[d]; !ok || n != want {
			t.Errorf("uploaded %d bytes for %s; only the ImageLocations blobs may be uploaded (%v)", n, d, allowed)
		}
		uploaded += n
	}
	if s.BlobBytesUploaded != uploaded || u.patchBytes != 0 {
		t.Errorf("BlobBytesUploaded %d, PATCH bytes %d; want %d, all by PUT of the ImageLocations blobs", s.BlobBytesUploaded, u.patchBytes, uploaded)
	}
	if s.BlobBytesServed != 0 {
		// Blobs are mounted, never read through the client; only the bundle
		// layer (images.yml) and configs (bundle label) are read.
		var read int64
		for d, n := range s.BlobBytesServedByDigest {
			if sourceBlobs[d] == 0 {
				t.Errorf("served %d bytes of %s, not a source blob", n, d)
			}
			read += n
		}
		t.Logf("blob bytes read for discovery: %d of %d mounted", read, mountedBytes)
	}
	if n := s.Count(http.MethodPost, harness.ClassUpload); n < len(sourceBlobs) {
		t.Errorf("%d upload POSTs for %d source blobs", n, len(sourceBlobs))
	}
}
