package plan_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestDryRunThenCopy plans a copy into a repository that already holds one
// of the images, checks that the plan wrote nothing anywhere, then copies
// for real with the same store: the source serves exactly the bytes the
// plan said to fetch, the JSON result agrees with the plan, and a second
// plan finds everything at the destination.
func TestDryRunThenCopy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t, 200_000)
	dstRepoRef := w.dstProxy.Ref("apps/bundle")
	dstRepo := harness.AnonymousRepository(t, w.dst.Ref("apps/bundle"))

	// worker is at the destination already (copied with another store).
	harness.RunOK(t, nil, "copy", "-i", w.refs[1], "--to-repo", dstRepoRef)
	tagsBefore := harness.Tags(ctx, t, dstRepo)

	env := []string{"FERRY_STORE=" + t.TempDir()}
	copyArgs := []string{"copy", "-b", w.bundleRef(), "--to-repo", dstRepoRef}

	w.srcProxy.Reset()
	w.dstProxy.Reset()
	res := harness.RunOK(t, env, append(copyArgs, "--dry-run", "--json")...)
	plan := decode[planDoc](t, res.Stdout)

	t.Run("the dry run writes nothing", func(t *testing.T) {
		noWrites(t, "destination", w.dstProxy.Stats())
		noWrites(t, "source", w.srcProxy.Stats())
		if got := harness.Tags(ctx, t, dstRepo); !slices.Equal(got, tagsBefore) {
			t.Errorf("destination tags changed: %v, were %v", got, tagsBefore)
		}
		// No layer of app was downloaded (discovery reads configs and the
		// bundle layer only).
		served := w.srcProxy.Stats().BlobBytesServedByDigest
		for _, l := range layersOf(ctx, t, w.builder, w.src.Ref("team/app"), w.app.Digest) {
			if served[l.Digest] != 0 {
				t.Errorf("dry run downloaded %d bytes of layer %s", served[l.Digest], l.Digest)
			}
		}
		if !strings.Contains(res.Stderr, "copy | dry run: nothing was copied") || strings.Contains(res.Stderr, "importing") {
			t.Errorf("stderr:\n%s", res.Stderr)
		}
	})

	t.Run("the plan", func(t *testing.T) {
		tot := plan.Total
		if !plan.DryRun || len(plan.Images) != 5 || tot.Fetch+tot.Store+tot.Destination != tot.Bytes {
			t.Fatalf("plan = %+v", plan)
		}
		var sum planBytes
		for _, img := range plan.Images {
			sum.Blobs += img.Bytes.Blobs
			sum.Bytes += img.Bytes.Bytes
			sum.Fetch += img.Bytes.Fetch
			sum.Store += img.Bytes.Store
			sum.Destination += img.Bytes.Destination
			sum.LeftOut += img.Bytes.LeftOut
			if img.Destination != harness.DigestRef(dstRepoRef, digest.Digest(img.Digest)) {
				t.Errorf("%s: destination %q", img.Ref, img.Destination)
			}
		}
		if sum != tot {
			t.Errorf("images add up to %+v, total is %+v", sum, tot)
		}
		byDigest := map[string]int{}
		for i, img := range plan.Images {
			byDigest[img.Digest] = i
		}
		worker := plan.Images[byDigest[w.worker.Digest.String()]]
		if !worker.AtDestination || worker.Bytes.Destination != worker.Bytes.Bytes || worker.Bytes.Fetch != 0 {
			t.Errorf("worker = %+v, want all at the destination", worker)
		}
		app := plan.Images[byDigest[w.app.Digest.String()]]
		if app.AtDestination || app.Bytes.Fetch < 300_000 {
			t.Errorf("app = %+v, want its layers to fetch", app)
		}
		if len(plan.LeftOut) != 1 || plan.LeftOut[0].Reason != "non-distributable" || plan.LeftOut[0].Image != w.refs[3] || tot.LeftOut != plan.LeftOut[0].Size {
			t.Errorf("left out = %+v (total %d), want win's foreign layer", plan.LeftOut, tot.LeftOut)
		}
		if plan.Destination != (destinationDoc{Type: "repository", Repository: dstRepoRef}) {
			t.Errorf("destination = %+v", plan.Destination)
		}
		if plan.DiscoveryFetched == 0 {
			t.Error("discoveryFetched = 0, but discovery read the bundle through an empty store")
		}
	})

	t.Run("the text plan says the same", func(t *testing.T) {
		text := harness.RunOK(t, env, append(copyArgs, "--dry-run")...)
		want := fmt.Sprintf("would copy 5 images (%s) to %s: fetch %s from the source, %s from the store, %s already there",
			harness.HumanBytes(plan.Total.Bytes), dstRepoRef, harness.HumanBytes(plan.Total.Fetch),
			harness.HumanBytes(plan.Total.Store), harness.HumanBytes(plan.Total.Destination))
		if !strings.Contains(text.Stdout, want) || !strings.Contains(text.Stdout, "TOTAL (5 images)") {
			t.Errorf("text plan lacks %q:\n%s", want, text.Stdout)
		}
		if !strings.Contains(text.Stdout, "left out: 1 non-distributable layer, "+harness.HumanBytes(plan.Total.LeftOut)) {
			t.Errorf("text plan does not list the layer left out:\n%s", text.Stdout)
		}
	})

	// The real copy, through the same store.
	w.srcProxy.Reset()
	w.dstProxy.Reset()
	lockPath := filepath.Join(t.TempDir(), "lock.yml")
	res = harness.RunOK(t, env, append(copyArgs, "--json", "--lock-output", lockPath)...)
	result := decode[resultDoc](t, res.Stdout)

	t.Run("the copy fetches what the plan said", func(t *testing.T) {
		if got := w.srcProxy.Stats().BlobBytesServed; got != plan.Total.Fetch {
			t.Errorf("the source served %d blob bytes, the plan said %d to fetch", got, plan.Total.Fetch)
		}
		want := movedBytes{
			Blobs:     plan.Total.Blobs,
			Bytes:     plan.Total.Bytes,
			Moved:     plan.Total.Fetch + plan.Total.Store,
			Skipped:   plan.Total.Destination,
			Fetched:   plan.Total.Fetch,
			FromStore: plan.Total.Store,
			LeftOut:   plan.Total.LeftOut,
		}
		if result.Total != want {
			t.Errorf("result total = %+v, want %+v (from the plan)", result.Total, want)
		}
		for i, img := range result.Images {
			p := plan.Images[i].Bytes
			if img.Digest != plan.Images[i].Digest || img.Bytes.Moved != p.Fetch+p.Store || img.Bytes.Skipped != p.Destination {
				t.Errorf("image %s: result %+v, plan %+v", img.Ref, img.Bytes, p)
			}
		}
	})

	t.Run("the JSON result", func(t *testing.T) {
		if result.DryRun || len(result.Roots) != 1 {
			t.Fatalf("result = %+v", result)
		}
		r := result.Roots[0]
		wantRoot := rootDoc{
			Ref: w.bundleRef(), Digest: w.bundle.Digest.String(), Kind: "bundle", MediaType: w.bundle.MediaType,
			Size: w.bundle.Size, Destination: harness.DigestRef(dstRepoRef, w.bundle.Digest), Tags: []string{"v1"},
		}
		if fmt.Sprint(r) != fmt.Sprint(wantRoot) {
			t.Errorf("root = %+v, want %+v", r, wantRoot)
		}
		if result.Destination != (destinationDoc{Type: "repository", Repository: dstRepoRef, LockOutput: lockPath}) {
			t.Errorf("destination = %+v", result.Destination)
		}
		kinds := map[string]string{}
		for _, img := range result.Images {
			kinds[img.Digest] = img.Kind
			if img.Source == "" || img.Destination != harness.DigestRef(dstRepoRef, digest.Digest(img.Digest)) {
				t.Errorf("%s: source %q destination %q", img.Ref, img.Source, img.Destination)
			}
		}
		want := map[string]string{
			w.bundle.Digest.String(): "bundle", w.app.Digest.String(): "image", w.worker.Digest.String(): "image",
			w.multi.Digest.String(): "index", w.win.Digest.String(): "image",
		}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Errorf("kinds = %v, want %v", kinds, want)
		}
		if _, err := os.Stat(lockPath); err != nil {
			t.Errorf("lock output: %v", err)
		}
	})

	t.Run("plain lines without a terminal", func(t *testing.T) {
		for _, line := range []string{"copy | exporting 5 images...", "copy | importing 5 images...", "copy | imported 5 images", "Succeeded"} {
			if !slices.Contains(strings.Split(res.Stderr, "\n"), line) {
				t.Errorf("stderr lacks %q:\n%s", line, res.Stderr)
			}
		}
		if strings.Contains(res.Stderr, "\x1b") {
			t.Errorf("escape sequences on stderr without a terminal:\n%q", res.Stderr)
		}
	})

	t.Run("a second plan finds everything there", func(t *testing.T) {
		w.dstProxy.Reset()
		again := harness.RunOK(t, env, append(copyArgs, "--dry-run")...)
		noWrites(t, "destination", w.dstProxy.Stats())
		want := fmt.Sprintf("would copy 5 images (%s) to %s: fetch 0 B from the source, 0 B from the store, %s already there",
			harness.HumanBytes(plan.Total.Bytes), dstRepoRef, harness.HumanBytes(plan.Total.Bytes))
		if !strings.Contains(again.Stdout, want) {
			t.Errorf("second dry run lacks %q:\n%s", want, again.Stdout)
		}
		// Only the five manifests were asked about (nothing below them).
		if heads := w.dstProxy.Stats().Count("HEAD", ""); heads != 5 {
			t.Errorf("%d HEAD requests at the destination, want 5 (one per image)", heads)
		}
	})
}

// TestDryRunToTar plans a tarball, then writes it with the same store: the
// source serves exactly what the plan said to fetch and no tar exists
// before the real copy.
func TestDryRunToTar(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 50_000)
	env := []string{"FERRY_STORE=" + t.TempDir()}
	out := filepath.Join(t.TempDir(), "bundle.tar")
	args := []string{"copy", "-b", w.bundleRef(), "--to-tar", out}

	res := harness.RunOK(t, env, append(args, "--dry-run", "--json")...)
	plan := decode[planDoc](t, res.Stdout)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the dry run wrote %s (%v)", out, err)
	}
	if plan.Destination != (destinationDoc{Type: "tar", Path: out}) || plan.Total.Destination != 0 || plan.Total.Fetch+plan.Total.Store != plan.Total.Bytes {
		t.Errorf("plan = %+v", plan)
	}

	w.srcProxy.Reset()
	res = harness.RunOK(t, env, append(args, "--json")...)
	result := decode[resultDoc](t, res.Stdout)
	if got := w.srcProxy.Stats().BlobBytesServed; got != plan.Total.Fetch {
		t.Errorf("the source served %d blob bytes, the plan said %d", got, plan.Total.Fetch)
	}
	f, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if result.Destination.Type != "tar" || result.Destination.SHA256 != digest.FromBytes(f).Encoded() {
		t.Errorf("destination = %+v, want the tar's sha256 %s", result.Destination, digest.FromBytes(f).Encoded())
	}
	if result.Total.Moved != plan.Total.Bytes || result.Total.Fetched != plan.Total.Fetch || result.Total.FromStore != plan.Total.Store {
		t.Errorf("result total = %+v, plan total = %+v", result.Total, plan.Total)
	}
}

// TestDryRunHundredImages plans the copy of a bundle of 100 small images
// sharing one base layer: the base counts once, for the first image, and
// the text table has a row per image. The output goes to the test log.
func TestDryRunHundredImages(t *testing.T) {
	t.Parallel()
	const images = 100
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(100)
	base := bytes.Repeat([]byte("shared base layer of the measured images\n"), 100)
	refs := make([]string, images)
	for i := range images {
		repo := fmt.Sprintf("measure/app-%03d", i)
		refs[i] = harness.DigestRef(src.Ref(repo), b.Image(ctx, t, src.Ref(repo), harness.ImageSpec{Layers: []int{512}, SharedBase: base}).Digest)
	}
	b.Bundle(ctx, t, src.Ref("measure/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	env := []string{"FERRY_STORE=" + t.TempDir()}
	args := []string{"copy", "-b", src.Ref("measure/bundle") + ":v1", "--to-repo", dst.Ref("apps/measure"), "--dry-run"}

	start := time.Now()
	res := harness.RunOK(t, env, args...)
	t.Logf("dry run of %d images in %s:\n%s", images+1, time.Since(start).Round(time.Millisecond), res.Stdout)
	if !strings.Contains(res.Stdout, fmt.Sprintf("TOTAL (%d images)", images+1)) {
		t.Errorf("no total row for %d images", images+1)
	}
	for _, r := range refs {
		repo, _, _ := strings.Cut(r, "@")
		if !strings.Contains(res.Stdout, repo+"@sha256:") {
			t.Errorf("no row for %s", repo)
		}
	}

	plan := decode[planDoc](t, harness.RunOK(t, env, append(args, "--json")...).Stdout)
	// bundle: manifest, config, layer; each image: manifest, config, its
	// layer; the shared base once.
	if want := 3 + images*3 + 1; plan.Total.Blobs != want {
		t.Errorf("%d blobs, want %d", plan.Total.Blobs, want)
	}
	if got := plan.Images[1].Bytes.Blobs; got != 4 {
		t.Errorf("first image has %d blobs, want 4 (with the base)", got)
	}
	for _, img := range plan.Images[2:] {
		if img.Bytes.Blobs != 3 {
			t.Errorf("%s has %d blobs, want 3 (the base counts for the first image)", img.Ref, img.Bytes.Blobs)
		}
	}
	// Everything is to fetch but what discovery already put in the store:
	// manifests, configs and the bundle layer.
	if plan.Total.Destination != 0 || plan.Total.Store == 0 || plan.Total.Fetch+plan.Total.Store != plan.Total.Bytes {
		t.Errorf("total = %+v", plan.Total)
	}
}
