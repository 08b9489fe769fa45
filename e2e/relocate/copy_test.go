package relocate_test

import (
	"bytes"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestCopyBundleThenPull is the seed's Option 1 and Step 3: a bundle with an
// image of several layers on a shared base, a Docker image on the same base,
// an OCI index and a Docker manifest list is copied into one repository of
// another registry, pulled from there (images.yml rewritten) and from the
// source (left alone); a second copy sends nothing, and copying the relocated
// bundle on within the destination registry mounts instead of uploading and
// never contacts the source.
func TestCopyBundleThenPull(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	srcProxy := harness.StartProxy(t, src.Host)
	dstProxy := harness.StartProxy(t, dst.Host)

	// Fixtures are pushed straight to the source; images.yml names them
	// through the source proxy so that every request ferry makes is counted.
	b := src.Builder(11)
	base := bytes.Repeat([]byte("shared base layer of the e2e images\n"), 300)
	app := b.Image(ctx, t, src.Ref("team/app"), harness.ImageSpec{Layers: []int{3000, 7000, 1200}, SharedBase: base})
	worker := b.Image(ctx, t, src.Ref("team/worker"), harness.ImageSpec{Layers: []int{2500}, SharedBase: base, Docker: true})
	multi := b.Index(ctx, t, src.Ref("team/multi"), harness.IndexSpec{Layers: []int{900, 1100}})
	legacy := b.ManifestList(ctx, t, src.Ref("team/legacy"), harness.IndexSpec{})

	refs := []string{
		harness.DigestRef(srcProxy.Ref("team/app"), app.Digest),
		harness.DigestRef(srcProxy.Ref("team/worker"), worker.Digest),
		harness.DigestRef(srcProxy.Ref("team/multi"), multi.Digest),
		harness.DigestRef(srcProxy.Ref("team/legacy"), legacy.Digest),
	}
	digests := []digest.Digest{app.Digest, worker.Digest, multi.Digest, legacy.Digest}
	srcRepos := []string{"team/app", "team/worker", "team/multi", "team/legacy"}
	annotations := map[string]map[string]string{
		refs[0]: {harness.KbldIDAnnotation: "docker.io/example/app", "kbld.carvel.dev/origins": "- resolved: {tag: v1}"},
		refs[1]: {harness.KbldIDAnnotation: "docker.io/example/worker"},
		refs[2]: {harness.KbldIDAnnotation: "docker.io/example/multi"},
		refs[3]: {harness.KbldIDAnnotation: "docker.io/example/legacy", "zz.example.com/last": "kept"},
	}
	bundle := b.Bundle(ctx, t, src.Ref("team/bundle"), harness.BundleSpec{Images: refs, Annotations: annotations, Tag: "v1"})
	originalImagesYML := harness.ImagesLockYAML(t, refs, annotations)

	dstRepoRef := dstProxy.Ref("apps/bundle")
	dstRepo := harness.AnonymousRepository(t, dst.Ref("apps/bundle"))
	work := t.TempDir()
	lockPath := filepath.Join(work, "lock.yml")
	copyArgs := []string{"copy", "-b", srcProxy.Ref("team/bundle") + ":v1", "--to-repo", dstRepoRef, "--lock-output", lockPath}

	res := harness.RunOK(t, nil, copyArgs...)

	t.Run("every digest at the destination", func(t *testing.T) {
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("team/bundle")), dstRepo, bundle.Digest, false)
		for i, d := range digests {
			all := wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref(srcRepos[i])), dstRepo, d, false)
			if i >= 2 && len(all) < 5 { // index, 2 children, their configs and layers
				t.Errorf("%s: only %d descriptors reachable; the index fixture changed?", refs[i], len(all))
			}
		}
	})

	t.Run("tags", func(t *testing.T) {
		locations := resolve(ctx, t, dstRepo, harness.ImageLocationsTag(bundle.Digest))
		want := map[string]digest.Digest{
			"v1":                                     bundle.Digest,
			harness.ImgpkgTag(bundle.Digest):         bundle.Digest,
			harness.ImageLocationsTag(bundle.Digest): locations,
		}
		for _, d := range digests {
			want[harness.ImgpkgTag(d)] = d
		}
		wantTags(ctx, t, dstRepo, want)
	})

	t.Run("image locations", func(t *testing.T) {
		want := map[string]bool{}
		for _, r := range refs {
			want[r] = false
		}
		wantLocations(t, readImageLocations(ctx, t, dstRepo, bundle.Digest), want)
	})

	t.Run("lock output", func(t *testing.T) {
		lock := decodeYAML[bundleLock](t, lockPath, harness.ReadFile(t, lockPath), "BundleLock")
		if lock.Bundle.Image != harness.DigestRef(dstRepoRef, bundle.Digest) || lock.Bundle.Tag != "v1" {
			t.Errorf("lock output bundle %+v, want image %s tag v1", lock.Bundle, harness.DigestRef(dstRepoRef, bundle.Digest))
		}
	})

	t.Run("output", func(t *testing.T) {
		wantLine(t, res, "copy | exporting 5 images...")
		wantLine(t, res, "copy | will export "+harness.DigestRef(srcProxy.Ref("team/bundle"), bundle.Digest))
		for _, r := range refs {
			wantLine(t, res, "copy | will export "+r)
		}
		wantLine(t, res, "copy | exported 5 images")
		wantLine(t, res, "copy | importing 5 images...")
		wantLine(t, res, "copy | imported 5 images")
		imports := 0
		for _, line := range stderrLines(res) {
			if strings.HasPrefix(line, "copy | importing ") && strings.Contains(line, " -> "+dstRepoRef+"@sha256:") {
				imports++
			}
		}
		if imports != 5 {
			t.Errorf("%d 'copy | importing SRC -> DST@DIGEST' lines, want 5:\n%s", imports, res.Stderr)
		}
		wantSucceeded(t, res)
	})

	t.Run("pull from the destination", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bundle")
		res := harness.RunOK(t, nil, "pull", "-b", dstRepoRef+":v1", "-o", dir)
		wantLine(t, res, "The bundle repo ("+dstRepoRef+") is hosting every image specified in the bundle's Images Lock file (.imgpkg/images.yml)")
		wantSucceeded(t, res)
		lock := decodeYAML[imagesLock](t, "images.yml", harness.ReadFile(t, filepath.Join(dir, ".imgpkg", "images.yml")), "ImagesLock")
		var want []imageEntry
		for i, r := range refs {
			want = append(want, imageEntry{Image: harness.DigestRef(dstRepoRef, digests[i]), Annotations: annotations[r]})
		}
		wantImagesLock(t, "pulled images.yml", lock, want)
		if _, err := os.Stat(filepath.Join(dir, "config", "config.yml")); err != nil {
			t.Errorf("bundle file: %v", err)
		}
	})

	t.Run("pull from the source", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bundle")
		res := harness.RunOK(t, nil, "pull", "-b", srcProxy.Ref("team/bundle")+":v1", "-o", dir)
		wantLine(t, res, "One or more images not found in bundle repo; skipping lock file update")
		if got := harness.ReadFile(t, filepath.Join(dir, ".imgpkg", "images.yml")); !bytes.Equal(got, originalImagesYML) {
			t.Errorf("images.yml changed:\n%s\nwant:\n%s", got, originalImagesYML)
		}
	})

	t.Run("second copy sends nothing", func(t *testing.T) {
		srcProxy.Reset()
		dstProxy.Reset()
		lock2 := filepath.Join(t.TempDir(), "lock.yml")
		res := harness.RunOK(t, nil, append(copyArgs[:len(copyArgs)-1:len(copyArgs)-1], lock2)...)
		s := dstProxy.Stats()
		t.Logf("destination: %s", requestSummary(s))
		t.Logf("source: %s", requestSummary(srcProxy.Stats()))
		if s.BlobBytesUploaded != 0 {
			t.Errorf("uploaded %d blob bytes, want 0", s.BlobBytesUploaded)
		}
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch} {
			if n := s.Count(method, harness.ClassUpload); n != 0 {
				t.Errorf("%d %s upload requests, want 0", n, method)
			}
		}
		if n := s.Count(http.MethodPut, harness.ClassManifest); n != 0 {
			t.Errorf("%d manifest PUTs (manifests or tags sent again), want 0", n)
		}
		if n := s.Count(http.MethodDelete, ""); n != 0 {
			t.Errorf("%d DELETEs", n)
		}
		// Only the bundle layer (for images.yml) and configs (for the
		// bundle label) may come from the source: never an image layer.
		layers := map[digest.Digest]bool{}
		for i, d := range digests {
			for _, desc := range graphOf(ctx, t, harness.AnonymousRepository(t, src.Ref(srcRepos[i])), d) {
				if strings.Contains(desc.MediaType, "layer") || strings.Contains(desc.MediaType, "rootfs") {
					layers[desc.Digest] = true
				}
			}
		}
		for d, n := range srcProxy.Stats().BlobBytesServedByDigest {
			if layers[d] {
				t.Errorf("image layer %s fetched from the source again (%d bytes)", d, n)
			}
		}
		if !bytes.Equal(harness.ReadFile(t, lock2), harness.ReadFile(t, lockPath)) {
			t.Errorf("second lock output differs:\n%s\nfirst:\n%s", harness.ReadFile(t, lock2), harness.ReadFile(t, lockPath))
		}
		wantSucceeded(t, res)
	})

	t.Run("relocated bundle copied on within the destination registry", func(t *testing.T) {
		srcProxy.Reset()
		dstProxy.Reset()
		res := harness.RunOK(t, nil, "copy", "-b", dstRepoRef+":v1", "--to-repo", dstProxy.Ref("mirror/bundle"))
		if n := srcProxy.Stats().Count("", ""); n != 0 {
			t.Errorf("the original registry got %d requests, want 0 (images must be found in the bundle repository first)", n)
		}
		wantLine(t, res, "copy | will export "+harness.DigestRef(dstRepoRef, digests[0]))
		mirror := harness.AnonymousRepository(t, dst.Ref("mirror/bundle"))
		var blobs []digest.Digest
		for _, d := range append([]digest.Digest{bundle.Digest}, digests...) {
			for _, desc := range wantAllAt(ctx, t, dstRepo, mirror, d, false) {
				if !isManifest(desc) {
					blobs = append(blobs, desc.Digest)
				}
			}
		}
		u := uploadsOf(t, dstProxy.Stats())
		for _, d := range blobs {
			if !u.mounted[d] {
				t.Errorf("blob %s was not mounted (mount tried: %v)", d, u.mountTried[d])
			}
			if n := u.putBytes[d]; n != 0 {
				t.Errorf("blob %s: %d bytes uploaded, want a mount", d, n)
			}
		}
		if u.patchBytes != 0 {
			t.Errorf("%d bytes sent by PATCH", u.patchBytes)
		}
		// The new repository gets the same ImageLocations (original refs).
		want := map[string]bool{}
		for _, r := range refs {
			want[r] = false
		}
		wantLocations(t, readImageLocations(ctx, t, mirror, bundle.Digest), want)
		if got := resolve(ctx, t, mirror, "v1"); got != bundle.Digest {
			t.Errorf("mirror v1 -> %s, want %s", got, bundle.Digest)
		}
		t.Logf("mounted %d blobs; uploads: %d PUTs, %v", len(u.mounted), u.puts, slices.Collect(maps.Values(u.putBytes)))
	})
}

// TestCopyFailureThenRerun makes the destination refuse one image manifest
// (pushed by digest or, with its imgpkg tag, by that tag): the copy fails
// with exit 1 and applies no user tag and no tag of the bundle (only after
// every upload succeeded); the only tags left are imgpkg tags of other
// images, each complete at the destination; run again, it completes
// without sending again any blob the first run had uploaded.
func TestCopyFailureThenRerun(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	dstProxy := harness.StartProxy(t, dst.Host)
	b := src.Builder(15)
	base := bytes.Repeat([]byte("base\n"), 1000)
	var refs []string
	var digests []digest.Digest
	for i := range 4 {
		repo := "fail/app" + string(rune('a'+i))
		d := b.Image(ctx, t, src.Ref(repo), harness.ImageSpec{Layers: []int{2000 + 500*i, 1000}, SharedBase: base}).Digest
		refs = append(refs, harness.DigestRef(src.Ref(repo), d))
		digests = append(digests, d)
	}
	bundle := b.Bundle(ctx, t, src.Ref("fail/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})

	refused := []string{"/v2/apps/fail/manifests/" + digests[2].String(), "/v2/apps/fail/manifests/" + harness.ImgpkgTag(digests[2])}
	dstProxy.SetFault(func(r *http.Request) harness.Fault {
		if r.Method == http.MethodPut && slices.Contains(refused, r.URL.Path) {
			return harness.RespondStatus(http.StatusInternalServerError, nil)
		}
		return harness.Fault{}
	})
	args := []string{"copy", "-b", src.Ref("fail/bundle") + ":v1", "--to-repo", dstProxy.Ref("apps/fail"), "--registry-retry-count", "0"}
	res := harness.Run(t, nil, args...)
	if res.ExitCode != 1 {
		t.Fatalf("copy with a refused manifest: %s; want exit 1", res)
	}
	if line := harness.ErrorLine(t, res); !strings.Contains(line, digests[2].String()) && !strings.Contains(line, "500") {
		t.Errorf("error names neither the refused manifest nor the status: %s", line)
	}
	if strings.Contains(res.Stderr, "Succeeded") {
		t.Errorf("Succeeded printed after a failure")
	}
	dstRepo := harness.AnonymousRepository(t, dst.Ref("apps/fail"))
	for _, tag := range harness.Tags(ctx, t, dstRepo) {
		i := slices.IndexFunc(digests, func(d digest.Digest) bool { return harness.ImgpkgTag(d) == tag })
		if i < 0 || i == 2 {
			t.Errorf("tag %s after a failed copy; want only imgpkg tags of the images that were pushed", tag)
			continue
		}
		if got := resolve(ctx, t, dstRepo, tag); got != digests[i] {
			t.Errorf("%s -> %s, want %s", tag, got, digests[i])
		}
		wantAllAt(ctx, t, harness.AnonymousRepository(t, strings.Split(refs[i], "@")[0]), dstRepo, digests[i], false)
	}
	firstUploads := map[digest.Digest]bool{}
	for _, rec := range dstProxy.Stats().Log {
		if rec.Method == http.MethodPut && rec.Class == harness.ClassUpload && rec.Status == http.StatusCreated {
			firstUploads[digest.Digest(queryValue(t, rec.Query, "digest"))] = true
		}
	}
	if len(firstUploads) == 0 {
		t.Fatalf("the first run uploaded nothing; the fault came too early to test a rerun")
	}

	dstProxy.SetFault(nil)
	dstProxy.Reset()
	res = harness.RunOK(t, nil, args...)
	wantSucceeded(t, res)
	for _, rec := range dstProxy.Stats().Log {
		if rec.Method == http.MethodPut && rec.Class == harness.ClassUpload {
			if d := digest.Digest(queryValue(t, rec.Query, "digest")); firstUploads[d] {
				t.Errorf("blob %s uploaded again by the rerun", d)
			}
		}
	}
	want := map[string]digest.Digest{"v1": bundle.Digest, harness.ImgpkgTag(bundle.Digest): bundle.Digest, harness.ImageLocationsTag(bundle.Digest): ""}
	for i, d := range digests {
		want[harness.ImgpkgTag(d)] = d
		wantAllAt(ctx, t, harness.AnonymousRepository(t, strings.Split(refs[i], "@")[0]), dstRepo, d, false)
	}
	wantTags(ctx, t, dstRepo, want)
}

// TestPullRewriteRule checks both ways pull decides that the bundle
// repository hosts every image: the ImageLocations cache image, or, without
// it, every image answering at <bundle repo>@<digest>; one image missing
// leaves images.yml as it was.
func TestPullRewriteRule(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(16)
	one := b.Image(ctx, t, src.Ref("rule/one"), harness.ImageSpec{})
	two := b.Index(ctx, t, src.Ref("rule/two"), harness.IndexSpec{})
	refs := []string{harness.DigestRef(src.Ref("rule/one"), one.Digest), harness.DigestRef(src.Ref("rule/two"), two.Digest)}
	bundle := b.Bundle(ctx, t, src.Ref("rule/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	original := harness.ImagesLockYAML(t, refs, nil)

	dstRef := dst.Ref("rule/relocated")
	harness.RunOK(t, nil, "copy", "-b", src.Ref("rule/bundle")+":v1", "--to-repo", dstRef)
	dstRepo := dst.Repository(t, "rule/relocated")
	hosted := "The bundle repo (" + dstRef + ") is hosting every image specified in the bundle's Images Lock file (.imgpkg/images.yml)"
	notHosted := "One or more images not found in bundle repo; skipping lock file update"
	relocated := []imageEntry{
		{Image: harness.DigestRef(dstRef, one.Digest), Annotations: map[string]string{harness.KbldIDAnnotation: fixtureID(0)}},
		{Image: harness.DigestRef(dstRef, two.Digest), Annotations: map[string]string{harness.KbldIDAnnotation: fixtureID(1)}},
	}
	pull := func(t *testing.T) (harness.Result, []byte) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "b")
		res := harness.RunOK(t, nil, "pull", "-b", dstRef+":v1", "-o", dir)
		return res, harness.ReadFile(t, filepath.Join(dir, ".imgpkg", "images.yml"))
	}
	deleteManifest := func(t *testing.T, reference string) {
		t.Helper()
		desc, err := dstRepo.Resolve(ctx, reference)
		if err != nil {
			t.Fatal(err)
		}
		if err := dstRepo.Delete(ctx, desc); err != nil {
			t.Fatalf("delete %s: %v", reference, err)
		}
	}

	t.Run("without the ImageLocations image", func(t *testing.T) {
		deleteManifest(t, harness.ImageLocationsTag(bundle.Digest))
		res, got := pull(t)
		wantLine(t, res, hosted)
		wantImagesLock(t, "images.yml", decodeYAML[imagesLock](t, "images.yml", got, "ImagesLock"), relocated)
	})

	t.Run("one image missing", func(t *testing.T) {
		deleteManifest(t, two.Digest.String())
		res, got := pull(t)
		wantLine(t, res, notHosted)
		if !bytes.Equal(got, original) {
			t.Errorf("images.yml changed:\n%s\nwant:\n%s", got, original)
		}
	})
}

func queryValue(t *testing.T, rawQuery, key string) string {
	t.Helper()
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatalf("query %q: %v", rawQuery, err)
	}
	return q.Get(key)
}
