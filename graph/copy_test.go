package graph

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/lockfile"
)

func TestRepoBasedTag(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	d := digest.Digest("sha256:" + hex)
	tests := []struct {
		ref  string
		want string
	}{
		{"index.docker.io/library/nginx@sha256:" + hex, "library-nginx-sha256-" + hex + ".imgpkg"},
		{"127.0.0.1:5001/tiny/app@sha256:" + hex, "tiny-app-sha256-" + hex + ".imgpkg"},
		{"localhost/app:v1", "app-sha256-" + hex + ".imgpkg"},
		{"nginx@sha256:" + hex, "library-nginx-sha256-" + hex + ".imgpkg"},
		{"user/app@sha256:" + hex, "user-app-sha256-" + hex + ".imgpkg"},
		{"reg.io/__weird/x", "__weird-x-sha256-" + hex + ".imgpkg"},
		{"reg.io/-.-/x", "x-sha256-" + hex + ".imgpkg"},
		// the last 49 characters are kept: "aaaa-" + 48 b's keeps "-" + 48 b's, cleaned to 48 b's
		{"reg.io/aaaa/" + strings.Repeat("b", 48), strings.Repeat("b", 48) + "-sha256-" + hex + ".imgpkg"},
		{"reg.io/aaaa/" + strings.Repeat("b", 50), strings.Repeat("b", 49) + "-sha256-" + hex + ".imgpkg"},
		// nothing left of the name: the leading "-" is dropped
		{"reg.io/-@sha256:" + hex, "sha256-" + hex + ".imgpkg"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got := RepoBasedTag(tt.ref, d)
			if got != tt.want {
				t.Errorf("RepoBasedTag(%q) = %q, want %q", tt.ref, got, tt.want)
			}
			if len(got) > 128 {
				t.Errorf("tag is %d characters long", len(got))
			}
		})
	}
}

func TestImgpkgTags(t *testing.T) {
	d := digest.Digest("sha256:" + strings.Repeat("0f", 32))
	if got, want := ImgpkgTag(d), "sha256-"+strings.Repeat("0f", 32)+".imgpkg"; got != want {
		t.Errorf("ImgpkgTag = %s, want %s", got, want)
	}
	if got, want := ImageLocationsTag(d), "sha256-"+strings.Repeat("0f", 32)+".image-locations.imgpkg"; got != want {
		t.Errorf("ImageLocationsTag = %s, want %s", got, want)
	}
}

func discover(t *testing.T, src Source, specs ...RootSpec) *Graph {
	t.Helper()
	g, err := Discover(context.Background(), src, specs, DiscoverOptions{CosignSignatures: true})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// blobsOf lists the descriptors of a manifest or index and everything below
// it (distributable content only).
func blobsOf(t *testing.T, st content.Fetcher, desc ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	out := []ocispec.Descriptor{plain(desc)}
	succ, err := content.Successors(context.Background(), st, desc)
	if err != nil {
		t.Fatalf("successors of %s: %v", desc.Digest, err)
	}
	for _, s := range succ {
		if isNonDistributable(s) {
			continue
		}
		out = append(out, blobsOf(t, st, s)...)
	}
	return out
}

func TestCopyToRepo(t *testing.T) {
	w := newWorld(t)
	sig := pushImage(t, w.src.store("src.io/app1"), imageSpec{layers: [][]byte{[]byte("sig")}, tags: []string{digestTag(w.a.Digest, ".sig")}})
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	dst := newCountingTarget()
	var mu sync.Mutex
	copied := map[digest.Digest]bool{}
	res, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{
		DestRepo: "dst.io/apps/copy",
		OnCopy: func(n *Node, skipped bool) {
			mu.Lock()
			defer mu.Unlock()
			if copied[n.Desc.Digest] || skipped {
				t.Errorf("OnCopy(%s, skipped=%v) twice or skipped", n.Ref, skipped)
			}
			copied[n.Desc.Digest] = true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// every digest of every node landed, each pushed once
	for _, n := range g.Nodes {
		srcStore := w.src.store(n.Repo)
		for _, d := range blobsOf(t, srcStore, n.Desc) {
			if ok, _ := dst.Exists(ctx, d); !ok {
				t.Errorf("%s of %s missing at destination", d.Digest, n.Ref)
			}
		}
		if !copied[n.Desc.Digest] {
			t.Errorf("OnCopy not called for %s", n.Ref)
		}
	}
	for d, n := range dst.pushes {
		if n != 1 {
			t.Errorf("%s pushed %d times", d, n)
		}
	}
	if res.BytesPushed == 0 || res.NodesSkipped != 0 {
		t.Errorf("result = %+v", res)
	}
	// imgpkg tags on every node but the signature
	for _, n := range g.Nodes {
		if n.Signature {
			continue
		}
		if got := resolveTag(t, dst, ImgpkgTag(n.Desc.Digest)); got.Digest != n.Desc.Digest {
			t.Errorf("tag of %s points at %s", n.Ref, got.Digest)
		}
	}
	// user tag and signature tag
	if got := resolveTag(t, dst, "v1"); got.Digest != w.o.Digest {
		t.Errorf("v1 = %s, want %s", got.Digest, w.o.Digest)
	}
	if got := resolveTag(t, dst, digestTag(w.a.Digest, ".sig")); got.Digest != sig.Digest {
		t.Errorf(".sig = %s, want %s", got.Digest, sig.Digest)
	}
	if _, err := dst.Resolve(ctx, ImgpkgTag(sig.Digest)); err == nil {
		t.Error("signature should not get an .imgpkg tag")
	}
	// user tags come after all imgpkg tags
	last := dst.tags[len(dst.tags)-2:]
	slices.Sort(last)
	if want := []string{digestTag(w.a.Digest, ".sig"), "v1"}; !slices.Equal(last, want) {
		t.Errorf("last tags = %v, want %v (all tags %v)", last, want, dst.tags)
	}
	// image locations of both bundles
	for _, b := range []struct {
		desc ocispec.Descriptor
		want []lockfile.ImageLocation
	}{
		{w.o, []lockfile.ImageLocation{
			{Image: ref("src.io/app1", w.a)}, {Image: ref("src.io/app2", w.b)},
			{Image: ref("src.io/inner", w.i), IsBundle: true}, {Image: ref("src.io/multi", w.m)},
		}},
		{w.i, []lockfile.ImageLocation{{Image: ref("src.io/app2", w.b)}}},
	} {
		locs := readImageLocations(t, dst, b.desc.Digest)
		slices.SortFunc(b.want, func(x, y lockfile.ImageLocation) int { return strings.Compare(x.Image, y.Image) })
		if !slices.Equal(locs.Images, b.want) {
			t.Errorf("image locations of %s = %+v, want %+v", b.desc.Digest, locs.Images, b.want)
		}
	}
}

// readImageLocations reads the ImageLocations cache image of a bundle.
func readImageLocations(t *testing.T, st oras.ReadOnlyTarget, bundle digest.Digest) *lockfile.ImageLocations {
	t.Helper()
	ctx := context.Background()
	mdesc := resolveTag(t, st, ImageLocationsTag(bundle))
	raw, err := content.FetchAll(ctx, st, mdesc)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Fatalf("image locations manifest = %s", raw)
	}
	cfgRaw, err := content.FetchAll(ctx, st, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		t.Fatal(err)
	}
	layer, err := content.FetchAll(ctx, st, m.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	tarData, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest.FromBytes(tarData) {
		t.Errorf("config diff_ids = %v, want %s", cfg.RootFS.DiffIDs, digest.FromBytes(tarData))
	}
	tr := tar.NewReader(bytes.NewReader(tarData))
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != ImageLocationsFile {
		t.Fatalf("entry %q, want %q", hdr.Name, ImageLocationsFile)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("more than one entry: %v", err)
	}
	locs, err := lockfile.ParseImageLocations(ImageLocationsFile, data)
	if err != nil {
		t.Fatal(err)
	}
	return locs
}

func TestCopyToRepoRepoBasedTags(t *testing.T) {
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1"})
	dst := newCountingTarget()
	if _, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{RepoBasedTags: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{
		"bundle": w.o.Digest, "app1": w.a.Digest, "app2": w.b.Digest, "inner": w.i.Digest, "multi": w.m.Digest,
	}
	for name, d := range want {
		tag := name + "-sha256-" + d.Encoded() + ".imgpkg"
		if got := resolveTag(t, dst, tag); got.Digest != d {
			t.Errorf("%s = %s, want %s", tag, got.Digest, d)
		}
		if _, err := dst.Resolve(context.Background(), ImgpkgTag(d)); err == nil {
			t.Errorf("%s also has the plain .imgpkg tag", name)
		}
	}
}

func TestCopyToRepoUserTagsLast(t *testing.T) {
	w := newWorld(t)
	pushImage(t, w.src.store("src.io/app1"), imageSpec{layers: [][]byte{[]byte("sig")}, tags: []string{digestTag(w.a.Digest, ".sig")}})
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	dst := newCountingTarget()
	dst.failPush = content.NewDescriptorFromBytes("", []byte("layer b1")).Digest
	_, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{DestRepo: "dst.io/copy"})
	if !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the injected push failure", err)
	}
	if len(dst.tags) != 0 {
		t.Errorf("tags applied although a push failed: %v", dst.tags)
	}
	if _, err := dst.Resolve(context.Background(), "v1"); err == nil {
		t.Error("user tag v1 applied although a push failed")
	}
}

func TestCopyToRepoTwiceSendsNothing(t *testing.T) {
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	dst := newCountingTarget()
	if _, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	pushes, tags := dst.totalPushes(), len(dst.tags)
	if pushes == 0 || tags == 0 {
		t.Fatalf("first copy pushed %d and tagged %d", pushes, tags)
	}
	res, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dst.totalPushes() - pushes; got != 0 {
		t.Errorf("second copy pushed %d times", got)
	}
	if got := len(dst.tags) - tags; got != 0 {
		t.Errorf("second copy tagged %d times: %v", got, dst.tags[tags:])
	}
	if res.BytesPushed != 0 || res.NodesSkipped != int64(len(g.Nodes)) {
		t.Errorf("second result = %+v, want nothing pushed and %d nodes skipped", res, len(g.Nodes))
	}
}

func TestCopyToRepoNonDistributable(t *testing.T) {
	src := newTestSource()
	st := src.store("src.io/win")
	foreign := pushBlob(t, st, mediaTypeDockerForeignLayer, []byte("windows base layer"))
	foreign.URLs = []string{"https://example.com/base"}
	win := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("app")}, foreign: []ocispec.Descriptor{foreign}})
	linux := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("linux")}})
	idx := pushIndex(t, st, []ocispec.Descriptor{linux, win})

	for _, include := range []bool{false, true} {
		g := discover(t, src, RootSpec{Ref: ref("src.io/win", idx)})
		dst := newCountingTarget()
		var warnings []string
		_, err := CopyToRepo(context.Background(), src, g, dst, CopyOptions{
			IncludeNonDistributable: include,
			OnWarning:               func(msg string) { warnings = append(warnings, msg) },
		})
		if err != nil {
			t.Fatal(err)
		}
		has, _ := dst.Exists(context.Background(), foreign)
		hasWin, _ := dst.Exists(context.Background(), win)
		if !hasWin {
			t.Error("the windows manifest should be copied")
		}
		if has != include {
			t.Errorf("include=%v: foreign layer at destination = %v", include, has)
		}
		if include {
			if len(warnings) != 0 {
				t.Errorf("warnings with include: %v", warnings)
			}
			continue
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], ref("src.io/win", idx)) || !strings.Contains(warnings[0], foreign.Digest.String()) {
			t.Errorf("warnings = %q, want one naming the image and the layer", warnings)
		}
	}
}

func TestCopyToRepoMountsWithinRegistry(t *testing.T) {
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: ref("src.io/app1", w.a)})
	dst := &mountingTarget{countingTarget: newCountingTarget(), src: w.src, host: "src.io"}
	res, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{
		DestRepo:     "src.io/copy",
		SameRegistry: func(repo string) bool { return strings.HasPrefix(repo, "src.io/") },
	})
	if err != nil {
		t.Fatal(err)
	}
	// config + 2 layers mounted, the manifest pushed
	if res.BlobsMounted != 3 || len(dst.mounts) != 3 {
		t.Errorf("mounted %d (%v), want 3", res.BlobsMounted, dst.mounts)
	}
	for _, m := range dst.mounts {
		if m != "app1" {
			t.Errorf("mounted from %q, want the path without host", m)
		}
	}
	if got := dst.totalPushes(); got != 1 {
		t.Errorf("pushes = %d, want 1 (the manifest)", got)
	}
	for _, d := range blobsOf(t, w.src.store("src.io/app1"), w.a) {
		if ok, _ := dst.Exists(context.Background(), d); !ok {
			t.Errorf("%s missing", d.Digest)
		}
	}
}

func TestCopyToRepoVerifiesSource(t *testing.T) {
	src := newTestSource()
	st := src.store("src.io/bad")
	img := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("good")}})
	g := discover(t, src, RootSpec{Ref: ref("src.io/bad", img)})
	corrupt := &corruptSource{testSource: src, layer: content.NewDescriptorFromBytes("", []byte("good")).Digest}
	dst := newCountingTarget()
	_, err := CopyToRepo(context.Background(), corrupt, g, &noVerifyTarget{dst}, CopyOptions{})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
}

// noVerifyTarget accepts whatever it is given without checking it (and
// keeps nothing), as a careless destination: only the reader can object.
type noVerifyTarget struct{ *countingTarget }

func (n *noVerifyTarget) Push(_ context.Context, _ ocispec.Descriptor, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// corruptSource flips the content of one blob.
type corruptSource struct {
	*testSource
	layer digest.Digest
}

func (c *corruptSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := c.testSource.Repository(ctx, repo)
	return &corruptTarget{ReadOnlyTarget: t, layer: c.layer}, err
}

type corruptTarget struct {
	oras.ReadOnlyTarget
	layer digest.Digest
}

func (c *corruptTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if desc.Digest == c.layer {
		return io.NopCloser(strings.NewReader("evil")), nil
	}
	return c.ReadOnlyTarget.Fetch(ctx, desc)
}

func TestCopyLockOutput(t *testing.T) {
	w := newWorld(t)
	dst := newCountingTarget()
	t.Run("bundle", func(t *testing.T) {
		g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
		res, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{DestRepo: "dst.io/copy"})
		if err != nil {
			t.Fatal(err)
		}
		bl, err := res.BundleLock()
		if err != nil {
			t.Fatal(err)
		}
		if want := (lockfile.BundleRef{Image: ref("dst.io/copy", w.o), Tag: "v1"}); bl.Bundle != want {
			t.Errorf("bundle lock = %+v, want %+v", bl.Bundle, want)
		}
	})
	t.Run("images", func(t *testing.T) {
		ann := map[string]string{"kbld.carvel.dev/id": "app1"}
		g := discover(t, w.src, RootSpec{Ref: ref("src.io/app1", w.a), Annotations: ann}, RootSpec{Ref: "src.io/bundle:v1"})
		res, err := CopyToRepo(context.Background(), w.src, g, dst, CopyOptions{DestRepo: "dst.io/copy"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := res.BundleLock(); !errors.Is(err, ErrNoBundleRoot) {
			t.Errorf("BundleLock err = %v, want ErrNoBundleRoot", err)
		}
		il, err := res.ImagesLock()
		if err != nil {
			t.Fatal(err)
		}
		want := []lockfile.ImageRef{{Image: ref("dst.io/copy", w.a), Annotations: ann}, {Image: ref("dst.io/copy", w.o)}}
		if len(il.Images) != 2 || il.Images[0].Image != want[0].Image || il.Images[1].Image != want[1].Image ||
			il.Images[0].Annotations["kbld.carvel.dev/id"] != "app1" || il.Images[1].Annotations != nil {
			t.Errorf("images lock = %+v, want %+v", il.Images, want)
		}
		if _, err := il.Marshal(); err != nil {
			t.Errorf("lock does not marshal: %v", err)
		}
	})
	t.Run("no dest repo", func(t *testing.T) {
		res := &Result{Graph: &Graph{Roots: []*Node{{}}, Specs: []RootSpec{{Kind: RootBundle}}}}
		if _, err := res.ImagesLock(); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("ImagesLock err = %v", err)
		}
		if _, err := res.BundleLock(); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("BundleLock err = %v", err)
		}
	})
}

func TestRouterLimitsLargeBlobs(t *testing.T) {
	ctx := context.Background()
	src := newTestSource()
	st := src.store("src.io/app")
	small := pushBlob(t, st, ocispec.MediaTypeImageLayer, bytes.Repeat([]byte("s"), 10))
	var large []ocispec.Descriptor
	for i := range 3 {
		large = append(large, pushBlob(t, st, ocispec.MediaTypeImageLayer, bytes.Repeat([]byte{byte('a' + i)}, largeBlobBytes+1)))
	}
	r := &router{repos: newRepoCache(src), owners: map[digest.Digest][]string{}, large: newLimiter(2)}
	for _, d := range append([]ocispec.Descriptor{small}, large...) {
		r.own(d.Digest, "src.io/app")
	}
	open := func(desc ocispec.Descriptor, within time.Duration) (io.ReadCloser, error) {
		ctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		return r.Fetch(ctx, desc)
	}
	rc0, err := open(large[0], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rc1, err := open(large[1], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Both slots are held: a third large blob waits, a small one does not.
	if _, err := open(large[2], 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third large fetch: err = %v, want it to wait (DeadlineExceeded)", err)
	}
	rcSmall, err := open(small, time.Second)
	if err != nil {
		t.Fatalf("small fetch while large slots are held: %v", err)
	}
	rcSmall.Close()
	// Closing twice frees one slot only once.
	rc0.Close()
	rc0.Close()
	rc2, err := open(large[2], time.Second)
	if err != nil {
		t.Fatalf("large fetch after a close: %v", err)
	}
	if _, err := open(large[0], 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch with both slots held again: err = %v, want DeadlineExceeded", err)
	}
	got, err := io.ReadAll(rc2)
	if err != nil || int64(len(got)) != large[2].Size {
		t.Fatalf("read %d bytes, err %v; want %d", len(got), err, large[2].Size)
	}
	rc1.Close()
	rc2.Close()
}
