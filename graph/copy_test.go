package graph

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	r := &router{repos: newRepoCache(src), owners: map[digest.Digest][]string{}, large: newOrderedGate(2)}
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

// TestSuccessorsFromKeptBytes checks that the successors the copy reads
// from the manifests Discover kept are those oras-go's content.Successors
// reads from the same bytes, for every manifest and index media type
// (subjects included, where oras-go reads them).
func TestSuccessorsFromKeptBytes(t *testing.T) {
	ctx := context.Background()
	d := func(mt, s string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(s), Size: int64(len(s))}
	}
	subject := d(ocispec.MediaTypeImageManifest, "subject")
	cfg, l1, l2 := d(ocispec.MediaTypeImageConfig, "cfg"), d(ocispec.MediaTypeImageLayerGzip, "l1"), d(ocispec.MediaTypeImageLayer, "l2")
	l1.Annotations = map[string]string{"a": "b"}
	l2.URLs = []string{"https://example.com/l2"}
	child := d(ocispec.MediaTypeImageManifest, "child")
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	manifest := func(mt string, subj *ocispec.Descriptor, layers ...ocispec.Descriptor) any {
		m := ocispec.Manifest{MediaType: mt, Config: cfg, Layers: layers, Subject: subj}
		m.SchemaVersion = 2
		return m
	}
	index := func(mt string, subj *ocispec.Descriptor, children ...ocispec.Descriptor) any {
		i := ocispec.Index{MediaType: mt, Manifests: children, Subject: subj}
		i.SchemaVersion = 2
		return i
	}
	cases := []struct {
		name string
		mt   string
		v    any
		want int // successors expected
	}{
		{"OCI manifest", ocispec.MediaTypeImageManifest, manifest(ocispec.MediaTypeImageManifest, nil, l1, l2), 3},
		{"OCI manifest with subject", ocispec.MediaTypeImageManifest, manifest(ocispec.MediaTypeImageManifest, &subject, l1), 3},
		{"OCI manifest without layers", ocispec.MediaTypeImageManifest, manifest(ocispec.MediaTypeImageManifest, nil), 1},
		{"Docker manifest (a subject is not read)", mediaTypeDockerManifest, manifest(mediaTypeDockerManifest, &subject, l1, l2), 3},
		{"OCI index", ocispec.MediaTypeImageIndex, index(ocispec.MediaTypeImageIndex, nil, child, subject), 2},
		{"OCI index with subject", ocispec.MediaTypeImageIndex, index(ocispec.MediaTypeImageIndex, &subject, child), 2},
		{"empty OCI index", ocispec.MediaTypeImageIndex, index(ocispec.MediaTypeImageIndex, nil), 0},
		{"Docker list (a subject is not read)", mediaTypeDockerManifestList, index(mediaTypeDockerManifestList, &subject, child), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newCountingTarget()
			desc := pushManifest(t, st, tc.mt, tc.v)
			body, err := content.FetchAll(ctx, st, desc)
			if err != nil {
				t.Fatal(err)
			}
			want, err := content.Successors(ctx, st, desc)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != tc.want {
				t.Fatalf("content.Successors gave %d successors, the test expects %d", len(want), tc.want)
			}
			g := &Graph{manifests: map[digest.Digest][]byte{desc.Digest: body}}
			c := newCopier(newTestSource(), g, newCountingTarget(), CopyOptions{})
			// An empty fetcher: the kept bytes must be enough.
			got, err := c.successors(ctx, newCountingTarget(), desc)
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(want)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("successors =\n%s\nwant (content.Successors)\n%s", gotJSON, wantJSON)
			}
		})
	}
}

// TestCopyToRepoServesManifestsFromMemory checks that CopyToRepo does not
// ask the source again for the manifests and indexes Discover read: they
// are copied from the graph, byte for byte, and WrapReader sees each of
// them once, whole, as the progress display counts them. Without the kept
// bytes (beyond Discover's budget), the copy reads them from the source.
func TestCopyToRepoServesManifestsFromMemory(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	manifests := []ocispec.Descriptor{w.a, w.b, w.m, w.m1, w.m2, w.i, w.o}
	for _, kept := range []bool{true, false} {
		t.Run(fmt.Sprintf("kept=%v", kept), func(t *testing.T) {
			g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
			for _, m := range manifests {
				if _, ok := g.manifests[m.Digest]; !ok {
					t.Fatalf("Discover did not keep %s", m.Digest)
				}
			}
			want := g.manifests
			if !kept {
				g.manifests = nil
			}
			src := &fetchCounter{Source: w.src, fetches: map[digest.Digest]int{}}
			dst := newCountingTarget()
			var mu sync.Mutex
			seen := map[digest.Digest]int64{} // bytes WrapReader delivered
			opened := map[digest.Digest]int{}
			_, err := CopyToRepo(ctx, src, g, dst, CopyOptions{
				DestRepo: "dst.io/apps/copy",
				WrapReader: func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
					mu.Lock()
					opened[desc.Digest]++
					mu.Unlock()
					return &countingReadCloser{ReadCloser: rc, n: func(n int) {
						mu.Lock()
						seen[desc.Digest] += int64(n)
						mu.Unlock()
					}}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range manifests {
				n := src.count(m.Digest)
				if kept && n != 0 {
					t.Errorf("manifest %s fetched %d times from the source, want 0", m.Digest, n)
				}
				if !kept && n == 0 {
					t.Errorf("manifest %s not fetched from the source, though the graph kept no bytes", m.Digest)
				}
				if opened[m.Digest] != 1 || seen[m.Digest] != m.Size {
					t.Errorf("WrapReader opened %s %d times and saw %d bytes, want once and %d", m.Digest, opened[m.Digest], seen[m.Digest], m.Size)
				}
				body, err := content.FetchAll(ctx, dst, m)
				if err != nil {
					t.Errorf("manifest %s not at the destination: %v", m.Digest, err)
				} else if !bytes.Equal(body, want[m.Digest]) {
					t.Errorf("the destination holds other bytes for %s", m.Digest)
				}
			}
			for d, n := range dst.pushes {
				if n != 1 {
					t.Errorf("%s pushed %d times", d, n)
				}
			}
		})
	}
}

// countingReadCloser reports the bytes each Read delivers.
type countingReadCloser struct {
	io.ReadCloser
	n func(int)
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n(n)
	return n, err
}

// flippingSource serves the content of one digest with a byte flipped.
type flippingSource struct {
	Source
	bad digest.Digest
}

func (f flippingSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := f.Source.Repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	return flippingTarget{ReadOnlyTarget: t, bad: f.bad}, nil
}

type flippingTarget struct {
	oras.ReadOnlyTarget
	bad digest.Digest
}

func (f flippingTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.ReadOnlyTarget.Fetch(ctx, desc)
	if err != nil || desc.Digest != f.bad {
		return rc, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	data[len(data)/2] ^= 1
	return io.NopCloser(bytes.NewReader(data)), nil
}

// TestCopyToRepoManifestReadAgainVerified: a manifest whose bytes the
// graph did not keep (beyond Discover's budget) is read from the source
// again, and refused when the source now serves other bytes, with the
// index or the image manifest the changed one is.
func TestCopyToRepoManifestReadAgainVerified(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	for _, bad := range []ocispec.Descriptor{w.a, w.m, w.m1} {
		t.Run(bad.Digest.Encoded()[:12], func(t *testing.T) {
			g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
			g.manifests = nil
			dst := newCountingTarget()
			_, err := CopyToRepo(ctx, flippingSource{Source: w.src, bad: bad.Digest}, g, dst, CopyOptions{DestRepo: "dst.io/apps/copy"})
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("copy: %v, want ErrDigestMismatch", err)
			}
			if ok, _ := dst.Exists(ctx, bad); ok {
				t.Error("the destination holds the changed manifest")
			}
		})
	}
}
