package relocate_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestCopyConsolidatesRepositories copies a bundle whose images sit in three
// repositories of the source registry and one of another registry: all land
// in the single destination repository, and a pull from there rewrites
// images.yml to it.
func TestCopyConsolidatesRepositories(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	other := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})

	b := src.Builder(21)
	type image struct {
		reg  *harness.Registry
		repo string
		d    digest.Digest
	}
	images := []image{
		{reg: src, repo: "team-a/frontend"},
		{reg: src, repo: "team-b/db"},
		{reg: src, repo: "team-c/nested/path/cache"},
		{reg: other, repo: "vendor/tool"},
	}
	var refs []string
	for i := range images {
		img := &images[i]
		if img.reg == other {
			img.d = other.Builder(22).Index(ctx, t, other.Ref(img.repo), harness.IndexSpec{Docker: true}).Digest
		} else {
			img.d = b.Image(ctx, t, src.Ref(img.repo), harness.ImageSpec{Layers: []int{1000 + 100*i, 600}}).Digest
		}
		refs = append(refs, harness.DigestRef(img.reg.Ref(img.repo), img.d))
	}
	bundle := b.Bundle(ctx, t, src.Ref("bundles/app"), harness.BundleSpec{Images: refs, Tag: "2.0.1"})

	dstRef := dst.Ref("consolidated/app")
	res := harness.RunOK(t, nil, "copy", "-b", src.Ref("bundles/app")+":2.0.1", "--to-repo", dstRef)
	wantLine(t, res, "copy | imported 5 images")

	dstRepo := harness.AnonymousRepository(t, dstRef)
	wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("bundles/app")), dstRepo, bundle.Digest, false)
	want := map[string]digest.Digest{
		"2.0.1":                                  bundle.Digest,
		harness.ImgpkgTag(bundle.Digest):         bundle.Digest,
		harness.ImageLocationsTag(bundle.Digest): "",
	}
	locs := map[string]bool{}
	for i, img := range images {
		wantAllAt(ctx, t, harness.AnonymousRepository(t, img.reg.Ref(img.repo)), dstRepo, img.d, false)
		want[harness.ImgpkgTag(img.d)] = img.d
		locs[refs[i]] = false
	}
	wantTags(ctx, t, dstRepo, want)
	wantLocations(t, readImageLocations(ctx, t, dstRepo, bundle.Digest), locs)

	// Nothing went anywhere else on the destination registry.
	for _, repo := range []string{"team-a/frontend", "team-b/db", "team-c/nested/path/cache", "vendor/tool", "bundles/app"} {
		if exists(ctx, t, harness.AnonymousRepository(t, dst.Ref(repo)), graphOf(ctx, t, dstRepo, bundle.Digest)[0]) {
			t.Errorf("the bundle also landed in %s", dst.Ref(repo))
		}
	}

	dir := filepath.Join(t.TempDir(), "out")
	res = harness.RunOK(t, nil, "pull", "-b", dstRef+":2.0.1", "-o", dir)
	wantLine(t, res, "The bundle repo ("+dstRef+") is hosting every image specified in the bundle's Images Lock file (.imgpkg/images.yml)")
	lock := decodeYAML[imagesLock](t, "images.yml", harness.ReadFile(t, filepath.Join(dir, ".imgpkg", "images.yml")), "ImagesLock")
	var wantLock []imageEntry
	for i, img := range images {
		wantLock = append(wantLock, imageEntry{Image: harness.DigestRef(dstRef, img.d), Annotations: map[string]string{harness.KbldIDAnnotation: fmt.Sprintf("fixture/image-%d", i)}})
	}
	wantImagesLock(t, "pulled images.yml", lock, wantLock)
}

// TestCopySourcesAndTags covers the other sources and tag rules: -i with its
// tag, --lock with an ImagesLock (lock output an ImagesLock of destination
// references, annotations and order kept), --lock with a BundleLock (its tag
// re-applied, original registry not contacted), and --repo-based-tags.
func TestCopySourcesAndTags(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	srcProxy := harness.StartProxy(t, src.Host)
	dst := harness.StartRegistry(t, harness.RegistryOptions{})

	b := src.Builder(31)
	app := b.Image(ctx, t, src.Ref("tiny/app"), harness.ImageSpec{Layers: []int{1500}, Tag: "v2"})
	db := b.Index(ctx, t, src.Ref("tiny/db"), harness.IndexSpec{})
	refs := []string{harness.DigestRef(srcProxy.Ref("tiny/app"), app.Digest), harness.DigestRef(srcProxy.Ref("tiny/db"), db.Digest)}
	bundle := b.Bundle(ctx, t, src.Ref("tiny/bundle"), harness.BundleSpec{Images: refs, Tag: "v3"})

	t.Run("repo-based tags", func(t *testing.T) {
		dstRef := dst.Ref("rbt/bundle")
		harness.RunOK(t, nil, "copy", "-b", srcProxy.Ref("tiny/bundle")+":v3", "--to-repo", dstRef, "--repo-based-tags")
		wantTags(ctx, t, harness.AnonymousRepository(t, dstRef), map[string]digest.Digest{
			"v3": bundle.Digest,
			"tiny-bundle-sha256-" + bundle.Digest.Encoded() + ".imgpkg": bundle.Digest,
			"tiny-app-sha256-" + app.Digest.Encoded() + ".imgpkg":       app.Digest,
			"tiny-db-sha256-" + db.Digest.Encoded() + ".imgpkg":         db.Digest,
			harness.ImageLocationsTag(bundle.Digest):                    "",
		})
	})

	t.Run("image with its tag", func(t *testing.T) {
		dstRef := dst.Ref("single/app")
		lockPath := filepath.Join(t.TempDir(), "out.yml")
		res := harness.RunOK(t, nil, "copy", "-i", srcProxy.Ref("tiny/app")+":v2", "--to-repo", dstRef, "--lock-output", lockPath)
		wantLine(t, res, "copy | exporting 1 images...")
		wantSucceeded(t, res)
		dstRepo := harness.AnonymousRepository(t, dstRef)
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("tiny/app")), dstRepo, app.Digest, false)
		wantTags(ctx, t, dstRepo, map[string]digest.Digest{"v2": app.Digest, harness.ImgpkgTag(app.Digest): app.Digest})
		lock := decodeYAML[imagesLock](t, lockPath, harness.ReadFile(t, lockPath), "ImagesLock")
		wantImagesLock(t, lockPath, lock, []imageEntry{{Image: harness.DigestRef(dstRef, app.Digest)}})
	})

	t.Run("images lock", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "images.yml"), filepath.Join(dir, "relocated.yml")
		// db before app: the order of the file is kept, not sorted.
		ann := map[string]map[string]string{
			refs[1]: {harness.KbldIDAnnotation: "docker.io/example/db", "a.example.com/first": "1"},
			refs[0]: {},
		}
		writeFile(t, in, harness.ImagesLockYAML(t, []string{refs[1], refs[0]}, ann))
		dstRef := dst.Ref("locked/images")
		harness.RunOK(t, nil, "copy", "--lock", in, "--to-repo", dstRef, "--lock-output", out)
		dstRepo := harness.AnonymousRepository(t, dstRef)
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("tiny/db")), dstRepo, db.Digest, false)
		wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("tiny/app")), dstRepo, app.Digest, false)
		wantTags(ctx, t, dstRepo, map[string]digest.Digest{harness.ImgpkgTag(app.Digest): app.Digest, harness.ImgpkgTag(db.Digest): db.Digest})
		lock := decodeYAML[imagesLock](t, out, harness.ReadFile(t, out), "ImagesLock")
		wantImagesLock(t, out, lock, []imageEntry{
			{Image: harness.DigestRef(dstRef, db.Digest), Annotations: ann[refs[1]]},
			{Image: harness.DigestRef(dstRef, app.Digest)},
		})
	})

	t.Run("bundle lock", func(t *testing.T) {
		dir := t.TempDir()
		first := filepath.Join(dir, "first.yml")
		harness.RunOK(t, nil, "copy", "-b", srcProxy.Ref("tiny/bundle")+":v3", "--to-repo", dst.Ref("first/bundle"), "--lock-output", first)

		// Hand-written BundleLock with another tag: the tag is applied.
		handLock := filepath.Join(dir, "hand.yml")
		writeFile(t, handLock, fmt.Appendf(nil, "---\napiVersion: %s\nkind: BundleLock\nbundle:\n  image: %s\n  tag: stable\n",
			apiVersion, harness.DigestRef(dst.Ref("first/bundle"), bundle.Digest)))

		for _, tc := range []struct {
			name, lock, repo, tag string
		}{
			{"from lock output", first, "second/bundle", "v3"},
			{"hand written", handLock, "third/bundle", "stable"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srcProxy.Reset()
				out := filepath.Join(t.TempDir(), "out.yml")
				dstRef := dst.Ref(tc.repo)
				harness.RunOK(t, nil, "copy", "--lock", tc.lock, "--to-repo", dstRef, "--lock-output", out)
				if n := srcProxy.Stats().Count("", ""); n != 0 {
					t.Errorf("the original registry got %d requests; the relocated bundle's repository has every image", n)
				}
				dstRepo := harness.AnonymousRepository(t, dstRef)
				wantAllAt(ctx, t, harness.AnonymousRepository(t, src.Ref("tiny/bundle")), dstRepo, bundle.Digest, false)
				wantTags(ctx, t, dstRepo, map[string]digest.Digest{
					tc.tag:                                   bundle.Digest,
					harness.ImgpkgTag(bundle.Digest):         bundle.Digest,
					harness.ImgpkgTag(app.Digest):            app.Digest,
					harness.ImgpkgTag(db.Digest):             db.Digest,
					harness.ImageLocationsTag(bundle.Digest): "",
				})
				lock := decodeYAML[bundleLock](t, out, harness.ReadFile(t, out), "BundleLock")
				if lock.Bundle.Image != harness.DigestRef(dstRef, bundle.Digest) || lock.Bundle.Tag != tc.tag {
					t.Errorf("lock output %+v, want %s tag %s", lock.Bundle, harness.DigestRef(dstRef, bundle.Digest), tc.tag)
				}
			})
		}
	})
}
