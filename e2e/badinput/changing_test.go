package badinput_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// A tag whose manifest changes between requests: the proxy answers the
// bundle's tag with bundle A (the registry's answer) and bundle B (served by
// the proxy; B is in the registry too, under another tag) in turn, starting
// with either. Whatever ferry asks, a copy to a repository, to a tarball and
// a pull must each deliver one version whole (the bundle it resolved, with
// that bundle's images and none of the other's, and lock output naming
// it), or fail with an error naming the reference; never a mix, and the
// store verifies afterwards.
func TestTagChangesBetweenRequests(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(13)
	img1 := b.Image(ctx, t, w.src.Ref("chg/one"), harness.ImageSpec{})
	img2 := b.Image(ctx, t, w.src.Ref("chg/two"), harness.ImageSpec{Layers: []int{1500}})
	bundleA := b.Bundle(ctx, t, w.src.Ref("chg/bundle"), harness.BundleSpec{Images: []string{harness.DigestRef(w.proxy.Ref("chg/one"), img1.Digest)}, Tag: "v1"})
	bundleB := b.Bundle(ctx, t, w.src.Ref("chg/bundle"), harness.BundleSpec{Images: []string{harness.DigestRef(w.proxy.Ref("chg/two"), img2.Digest)}, Tag: "b"})
	_, rawB := b.FetchManifest(ctx, t, w.src.Ref("chg/bundle"), bundleB.Digest.String())
	// What each version lists, and what it must not bring along.
	images := map[digest.Digest]ocispec.Descriptor{bundleA.Digest: img1, bundleB.Digest: img2}
	other := map[digest.Digest]ocispec.Descriptor{bundleA.Digest: img2, bundleB.Digest: img1}
	name := map[digest.Digest]string{bundleA.Digest: "A (registry)", bundleB.Digest: "B (proxy)"}
	src := w.proxy.Ref("chg/bundle") + ":v1"

	// changing makes the tag answer A and B in turn, first in the given
	// order, and counts the requests for it.
	changing := func(first string) *atomic.Int64 {
		var n atomic.Int64
		fromProxy := harness.ServeManifest(rawB, bundleB.MediaType)
		faults := []harness.Fault{{}, fromProxy}
		if first == "B" {
			faults = []harness.Fault{fromProxy, {}}
		}
		isTag := harness.IsManifestRequest("chg/bundle", "v1")
		hook := harness.FaultCycle(isTag, faults...)
		w.proxy.SetFault(func(r *http.Request) harness.Fault {
			if isTag(r) {
				n.Add(1)
			}
			return hook(r)
		})
		return &n
	}
	t.Cleanup(func() { w.proxy.SetFault(nil) })

	for _, first := range []string{"A", "B"} {
		t.Run(first+" first", func(t *testing.T) {
			t.Run("to-repo", func(t *testing.T) {
				repoName := "chg/to-repo-" + strings.ToLower(first)
				lockPath := filepath.Join(t.TempDir(), "lock.yml")
				n := changing(first)
				res := w.ferry(t, "copy", "-b", src, "--to-repo", w.dst.Ref(repoName), "--lock-output", lockPath)
				t.Logf("RESULT: copy --to-repo, %s first: %d requests for the tag, exit %d", first, n.Load(), res.ExitCode)
				if res.ExitCode != 0 {
					expectFailure(t, res, "chg/bundle")
					w.checkNothingTagged(ctx, t, repoName)
					w.verifyStore(t)
					return
				}
				repo := w.dst.Repository(t, repoName)
				got, err := repo.Resolve(ctx, "v1")
				if err != nil {
					t.Fatalf("destination %s:v1: %v", repoName, err)
				}
				img, ok := images[got.Digest]
				if !ok {
					t.Fatalf("destination v1 is %s, neither A %s nor B %s", got.Digest, bundleA.Digest, bundleB.Digest)
				}
				t.Logf("RESULT: copied bundle %s", name[got.Digest])
				checkGraph(ctx, t, repo, got)
				checkGraph(ctx, t, repo, img)
				if ok, err := repo.Exists(ctx, other[got.Digest]); err != nil || ok {
					t.Errorf("the other version's image %s reached the destination (%v): a mix", other[got.Digest].Digest, err)
				}
				lock, err := os.ReadFile(lockPath)
				if err != nil || !strings.Contains(string(lock), got.Digest.String()) {
					t.Errorf("lock output does not name the copied bundle %s (%v):\n%s", got.Digest, err, lock)
				}
				w.verifyStore(t)
			})

			t.Run("to-tar", func(t *testing.T) {
				tarPath := filepath.Join(w.out, "x.tar")
				before := w.snapshot(t)
				n := changing(first)
				res := w.ferry(t, "copy", "-b", src, "--to-tar", tarPath)
				t.Logf("RESULT: copy --to-tar, %s first: %d requests for the tag, exit %d", first, n.Load(), res.ExitCode)
				if res.ExitCode != 0 {
					expectFailure(t, res, "chg/bundle")
					checkOutEmpty(t, w.out)
					w.checkUnchanged(t, before, "copy --to-tar")
					w.verifyStore(t)
					return
				}
				defer os.Remove(tarPath)
				if res := harness.Run(t, nil, "tar", "verify", tarPath); res.ExitCode != 0 {
					t.Errorf("tar verify: %s", res)
				}
				roots := tarRoots(t, tarPath)
				var got digest.Digest
				for _, d := range []digest.Digest{bundleA.Digest, bundleB.Digest} {
					if slices.Contains(roots, d) {
						if got != "" {
							t.Errorf("the tar holds both versions as roots: a mix")
						}
						got = d
					}
				}
				if got == "" {
					t.Fatalf("the tar's roots %v hold neither A nor B", roots)
				}
				t.Logf("RESULT: wrote bundle %s", name[got])
				if !slices.Contains(roots, images[got].Digest) || slices.Contains(roots, other[got].Digest) {
					t.Errorf("roots %v: want %s's image %s and not %s", roots, name[got], images[got].Digest, other[got].Digest)
				}
				w.verifyStore(t)
			})

			t.Run("pull", func(t *testing.T) {
				before := w.snapshot(t)
				n := changing(first)
				res := w.ferry(t, "pull", "-b", src, "-o", w.pulled)
				t.Logf("RESULT: pull, %s first: %d requests for the tag, exit %d", first, n.Load(), res.ExitCode)
				if res.ExitCode != 0 {
					expectFailure(t, res, "chg/bundle")
					w.checkUnchanged(t, before, "pull -o")
					w.verifyStore(t)
					return
				}
				var got digest.Digest
				for _, d := range []digest.Digest{bundleA.Digest, bundleB.Digest} {
					if strings.Contains(res.Stdout, d.String()) {
						got = d
					}
				}
				if got == "" {
					t.Fatalf("pull printed %q, naming neither A nor B", res.Stdout)
				}
				t.Logf("RESULT: pulled bundle %s", name[got])
				yml, err := os.ReadFile(filepath.Join(w.pulled, ".imgpkg", "images.yml"))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(yml), images[got].Digest.String()) || strings.Contains(string(yml), other[got].Digest.String()) {
					t.Errorf("pulled images.yml does not match bundle %s (a mix?):\n%s", name[got], yml)
				}
				// Put the pulled directory back as the other tests expect it.
				if err := os.RemoveAll(w.pulled); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(w.pulled, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(w.pulled, "keep.txt"), []byte("from before the pull\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				w.verifyStore(t)
			})
		})
	}
}

// An index (or a bundle) that points back at itself: content addressing
// makes a cycle impossible, so the proxy answers the request for one of the
// index's children with the index's own bytes, once posing as the child
// (its media type and digest in the headers: only hashing the bytes tells)
// and once with the index's own headers. ferry must refuse it naming the
// child, quickly, without looping. A pull of the bundle is not asked: it
// reads the bundle's own layer, not its images.
func TestIndexPointsAtItself(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(14)
	// The child carries an annotation that makes it larger than the index,
	// so the index's bytes can be padded to its size.
	child := b.Image(ctx, t, w.src.Ref("loop/idx"), harness.ImageSpec{Annotations: map[string]string{"padding": strings.Repeat("p", 1000)}})
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	sibling := b.Image(ctx, t, w.src.Ref("loop/idx"), harness.ImageSpec{Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	sibling.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	index := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{child, sibling}}
	index.SchemaVersion = 2
	idx, rawIdx := w.pushJSON(ctx, t, "loop/idx", ocispec.MediaTypeImageIndex, index, "v1")
	// Posing as the child, the index's bytes padded with JSON white space to
	// the child's size: only hashing them tells them apart.
	posing := rawIdx
	if n := int(child.Size) - len(rawIdx); n > 0 {
		posing = append(slices.Clone(rawIdx), bytes.Repeat([]byte(" "), n)...)
	}
	t.Logf("index %d bytes, child %d bytes, posing %d bytes", len(rawIdx), child.Size, len(posing))

	// A bundle listing an image whose bytes the proxy replaces by the
	// bundle's own.
	img := b.Image(ctx, t, w.src.Ref("loop/bundle"), harness.ImageSpec{})
	bundle := b.Bundle(ctx, t, w.src.Ref("loop/bundle"), harness.BundleSpec{Images: []string{harness.DigestRef(w.proxy.Ref("loop/bundle"), img.Digest)}, Tag: "v1"})
	_, rawBundle := b.FetchManifest(ctx, t, w.src.Ref("loop/bundle"), bundle.Digest.String())

	for _, tc := range []struct {
		name       string
		flag, repo string
		target     digest.Digest // the reference answered with the parent's bytes
		raw        []byte
		mediaType  string
		pose       string // the media type to claim, with target's digest; "": the true headers
	}{
		{"index child posing as the child", "-i", "loop/idx", child.Digest, posing, idx.MediaType, child.MediaType},
		{"index child with the index's headers", "-i", "loop/idx", child.Digest, rawIdx, idx.MediaType, ""},
		{"bundle image posing as the image", "-b", "loop/bundle", img.Digest, rawBundle, bundle.MediaType, img.MediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := harness.ServeManifest(tc.raw, tc.mediaType)
			if tc.pose != "" {
				f.Header.Set("Content-Type", tc.pose)
				f.Header.Set("Docker-Content-Digest", tc.target.String())
			}
			isTarget := harness.IsManifestRequest(tc.repo, tc.target.String())
			var served atomic.Int64
			w.proxy.SetFault(func(r *http.Request) harness.Fault {
				if isTarget(r) {
					served.Add(1)
					return f
				}
				return harness.Fault{}
			})
			defer w.proxy.SetFault(nil)
			start := time.Now()
			src := w.proxy.Ref(tc.repo) + ":v1"
			w.failBoth(ctx, t, tc.flag, src, tc.target.String())
			if took := time.Since(start); took > time.Minute {
				t.Errorf("took %s: a loop?", took)
			}
			if served.Load() == 0 {
				t.Error("the proxy never served the parent's bytes for the child")
			}
		})
	}
}

// checkGraph checks that repo holds desc and, recursively, everything it
// references, each with the right bytes.
func checkGraph(ctx context.Context, t *testing.T, repo *remote.Repository, desc ocispec.Descriptor) {
	t.Helper()
	harness.FetchAll(ctx, t, repo, desc)
	succ, err := content.Successors(ctx, repo, desc)
	if err != nil {
		t.Fatalf("successors of %s: %v", desc.Digest, err)
	}
	for _, s := range succ {
		checkGraph(ctx, t, repo, s)
	}
}

// tarRoots returns the digests of the roots listed in the index.json of the
// OCI layout tar at path.
func tarRoots(t *testing.T, path string) []digest.Digest {
	t.Helper()
	res := harness.RunOK(t, nil, "tar", "inspect", "--json", path)
	var doc struct {
		Roots []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"roots"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &doc); err != nil {
		t.Fatalf("tar inspect --json: %v\n%s", err, res.Stdout)
	}
	var out []digest.Digest
	for _, r := range doc.Roots {
		out = append(out, r.Digest)
	}
	return out
}
