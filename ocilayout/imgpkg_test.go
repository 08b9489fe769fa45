package ocilayout

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

// Digests listed in testdata (copied from ../shared/testdata/imgpkg-tar/README.md).
const (
	imgpkgBundle   = "sha256:bb8cf61bef5cad5d14e525aff1d5cc3e59ff3d63521a64da2bc112713c5c2551"
	imgpkgApp      = "sha256:5c4c4659c64057896a055214cc339a1ef20e43348e9db962ec6e3f6fe237977e"
	imgpkgMulti    = "sha256:2bcb5d869ef1ff0b5fc6c840b105a5560cb086c6474ec55da3f80f211dd24395"
	imgpkgMultiAMD = "sha256:56616ee0af75dffb92447b6d7e7b22b043e84fdf84db7bd1af2948be74c9b67e"
	imgpkgMultiARM = "sha256:47d3bb5d0a6381a962efd316e1e91ff1bcc2c610b032dd6b73426d86f62fcd0d"
)

// copyAll copies every root of src into a fresh memory store.
func copyAll(t *testing.T, src oras.ReadOnlyTarget, roots []Root) *memory.Store {
	t.Helper()
	dst := memory.New()
	for _, r := range roots {
		if err := oras.CopyGraph(context.Background(), src, dst, r.Desc, oras.CopyGraphOptions{}); err != nil {
			t.Fatalf("CopyGraph %s: %v", r.Desc.Digest, err)
		}
	}
	return dst
}

// graphDigests returns every digest reachable from root in s.
func graphDigests(t *testing.T, s content.Fetcher, root ocispec.Descriptor) []digest.Digest {
	t.Helper()
	out := []digest.Digest{root.Digest}
	succ, err := content.Successors(context.Background(), s, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range succ {
		out = append(out, graphDigests(t, s, d)...)
	}
	return out
}

func TestOpenImgpkgTarBundle(t *testing.T) {
	ctx := context.Background()
	it, err := OpenImgpkgTar(ctx, "testdata/imgpkg-bundle.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	roots := it.Roots()
	byDigest := map[string]Root{}
	for _, r := range roots {
		byDigest[r.Desc.Digest.String()] = r
	}
	if len(roots) != 3 {
		t.Fatalf("%d roots, want 3: %+v", len(roots), roots)
	}
	b := byDigest[imgpkgBundle]
	if !b.RootBundle || !b.Bundle || b.Tag != "v1" || b.OriginalRef != "127.0.0.1:5001/tiny/bundle@"+imgpkgBundle || b.Desc.MediaType != mediaTypeDockerManifest {
		t.Errorf("bundle root %+v", b)
	}
	if len(b.Requests) != 1 || b.Requests[0].Ref != b.OriginalRef {
		t.Errorf("bundle requests %+v, want the bundle", b.Requests)
	}
	for _, d := range []string{imgpkgApp, imgpkgMulti} {
		r, ok := byDigest[d]
		if !ok || r.RootBundle || r.Bundle || r.Tag != "" || !strings.HasSuffix(r.OriginalRef, "@"+d) || r.Requests != nil {
			t.Errorf("root %s: %+v", d, r)
		}
	}
	if byDigest[imgpkgMulti].Desc.MediaType != ocispec.MediaTypeImageIndex || byDigest[imgpkgApp].Desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("media types %q %q", byDigest[imgpkgMulti].Desc.MediaType, byDigest[imgpkgApp].Desc.MediaType)
	}

	// Copying reproduces the exact digests (the memory store verifies every
	// blob it is given against its descriptor).
	dst := copyAll(t, it, roots)
	for _, d := range []string{imgpkgBundle, imgpkgApp, imgpkgMulti, imgpkgMultiAMD, imgpkgMultiARM} {
		desc, err := it.Resolve(ctx, d)
		if err != nil {
			t.Fatalf("Resolve %s: %v", d, err)
		}
		if desc.Digest.String() != d {
			t.Errorf("Resolve %s gave %s", d, desc.Digest)
		}
		b, err := content.FetchAll(ctx, dst, desc)
		if err != nil {
			t.Fatalf("copied %s: %v", d, err)
		}
		if got := digest.FromBytes(b).String(); got != d {
			t.Errorf("copied %s hashes to %s", d, got)
		}
	}
	if n := len(graphDigests(t, dst, byDigest[imgpkgMulti].Desc)); n != 7 { // index, 2 manifests, 2 configs, 2 layers
		t.Errorf("multi graph has %d blobs, want 7", n)
	}
	// By name: the tag, and the reference as imgpkg recorded it.
	for _, ref := range []string{"v1", "127.0.0.1:5001/tiny/bundle@" + imgpkgBundle} {
		if d, err := it.Resolve(ctx, ref); err != nil || d.Digest.String() != imgpkgBundle {
			t.Errorf("Resolve(%q) = %s, %v", ref, d.Digest, err)
		}
	}
	problems, err := it.Verify(ctx)
	if err != nil || len(problems) != 0 {
		t.Errorf("Verify = %v, %v", problems, err)
	}
	// Index() is the same roots, written as ferry would.
	idxRoots, err := RootsOf(it.Index())
	if err != nil || len(idxRoots) != 3 {
		t.Fatalf("RootsOf(Index()) = %d roots, %v", len(idxRoots), err)
	}
}

func TestOpenImgpkgTarImage(t *testing.T) {
	ctx := context.Background()
	it, err := OpenImgpkgTar(ctx, "testdata/imgpkg-image.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	roots := it.Roots()
	if len(roots) != 1 {
		t.Fatalf("roots %+v", roots)
	}
	r := roots[0]
	if r.Desc.Digest.String() != imgpkgApp || r.Tag != "v1" || r.RootBundle || r.Bundle ||
		r.OriginalRef != "127.0.0.1:5001/tiny/app@"+imgpkgApp || len(r.Requests) != 1 {
		t.Errorf("root %+v", r)
	}
	dst := copyAll(t, it, roots)
	if d, err := dst.Resolve(ctx, imgpkgApp); err == nil && d.Digest.String() != imgpkgApp {
		t.Errorf("memory store resolves %s", d.Digest)
	}
	if n := len(graphDigests(t, dst, r.Desc)); n != 3 {
		t.Errorf("app graph has %d blobs, want 3", n)
	}
	if n := len(it.Blobs()); n != 3 || it.Blobs()[0].Entry != "manifest.json" || !strings.HasSuffix(it.Blobs()[2].Entry, ".tar.gz") {
		t.Errorf("Blobs() = %+v", it.Blobs())
	}
	if d, err := it.Resolve(ctx, "v1"); err != nil || d.Digest.String() != imgpkgApp {
		t.Errorf("Resolve(v1) = %s, %v", d.Digest, err)
	}
}

// imgpkgManifest returns the testdata bundle tar's manifest.json.
func imgpkgManifest(t *testing.T) []map[string]map[string]any {
	t.Helper()
	ti := openTestTar(t, "testdata/imgpkg-bundle.tar")
	var items []map[string]map[string]any
	if err := json.Unmarshal(ti["manifest.json"], &items); err != nil {
		t.Fatal(err)
	}
	return items
}

// openTestTar returns the bodies of a tar's entries.
func openTestTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, size, err := openTarFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, err := scanTar(context.Background(), f, size)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for name, e := range ti.entries {
		if out[name], err = readEntry(f, e, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestOpenImgpkgTarBroken(t *testing.T) {
	ctx := context.Background()
	layerName := "sha256-770cca82d8221b969cae58aaa84a84947b9b5f08a50af9764065c2a1708dfc8e.tar.gz"
	build := func(mut func(items []map[string]map[string]any) []map[string]map[string]any, withLayers bool) string {
		items := mut(imgpkgManifest(t))
		bodies := openTestTar(t, "testdata/imgpkg-bundle.tar")
		es := []rawEntry{{name: "manifest.json", body: mustJSON(t, items)}}
		if withLayers {
			for name, b := range bodies {
				if strings.HasSuffix(name, ".tar.gz") {
					es = append(es, rawEntry{name: name, body: b})
				}
			}
		}
		return writeRawTar(t, es)
	}
	same := func(items []map[string]map[string]any) []map[string]map[string]any { return items }

	t.Run("embedded manifest altered", func(t *testing.T) {
		p := build(func(items []map[string]map[string]any) []map[string]map[string]any {
			m := items[1]["Image"]["Manifest"].(map[string]any)
			m["Raw"] = strings.Replace(m["Raw"].(string), "233", "234", 1)
			return items
		}, true)
		_, err := OpenImgpkgTar(ctx, p)
		if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), imgpkgApp) {
			t.Errorf("error %v, want ErrDigestMismatch naming %s", err, imgpkgApp)
		}
	})
	t.Run("missing layer", func(t *testing.T) {
		it, err := OpenImgpkgTar(ctx, build(same, false))
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		err = oras.CopyGraph(ctx, it, memory.New(), it.Roots()[1].Desc, oras.CopyGraphOptions{})
		if !errors.Is(err, ErrMissingBlob) || !strings.Contains(err.Error(), "770cca82") {
			t.Errorf("CopyGraph error %v, want ErrMissingBlob naming the layer", err)
		}
	})
	t.Run("layer bytes altered", func(t *testing.T) {
		bodies := openTestTar(t, "testdata/imgpkg-image.tar")
		layer := bytes.Clone(bodies[layerName])
		layer[len(layer)-1] ^= 1
		p := writeRawTar(t, []rawEntry{{name: "manifest.json", body: bodies["manifest.json"]}, {name: layerName, body: layer}})
		it, err := OpenImgpkgTar(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		err = oras.CopyGraph(ctx, it, memory.New(), it.Roots()[0].Desc, oras.CopyGraphOptions{})
		if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), layerName) {
			t.Errorf("CopyGraph error %v, want ErrDigestMismatch naming %s", err, layerName)
		}
		problems, err := it.Verify(ctx)
		if err != nil || len(problems) != 1 || !errors.Is(problems[0].Err, ErrDigestMismatch) {
			t.Errorf("Verify = %v, %v", problems, err)
		}
	})
	t.Run("non-distributable layer left out", func(t *testing.T) {
		p := build(func(items []map[string]map[string]any) []map[string]map[string]any {
			l := items[1]["Image"]["Layers"].([]any)[0].(map[string]any)
			l["MediaType"] = mtDockerForeign
			return items
		}, false)
		it, err := OpenImgpkgTar(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		r := it.Roots()[1]
		if r.Desc.Digest.String() != imgpkgApp || len(r.SkippedLayers) != 1 || !strings.HasSuffix(layerName, r.SkippedLayers[0].Digest.Encoded()+".tar.gz") {
			t.Errorf("root %s skipped layers %+v", r.Desc.Digest, r.SkippedLayers)
		}
	})
	t.Run("both Image and ImageIndex", func(t *testing.T) {
		p := build(func(items []map[string]map[string]any) []map[string]map[string]any {
			items[0]["Image"] = items[1]["Image"]
			return items
		}, true)
		if _, err := OpenImgpkgTar(ctx, p); !errors.Is(err, ErrMalformedManifest) || !strings.Contains(err.Error(), "manifest.json[0]") {
			t.Errorf("error %v, want ErrMalformedManifest naming manifest.json[0]", err)
		}
	})
	cases := []struct {
		name string
		file func() string
		want error
	}{
		{"no manifest.json", func() string { return writeRawTar(t, []rawEntry{{name: "x", body: []byte("x")}}) }, ErrUnknownFormat},
		{"docker save", func() string {
			return writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[{"Config":"c","RepoTags":null,"Layers":[]}]`)}})
		}, ErrDockerSave},
		{"manifest.json not JSON", func() string { return writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[{`)}}) }, ErrUnknownFormat},
		{"manifest.json with wrong types", func() string {
			return writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[{"Image":{"Refs":"x"}}]`)}})
		}, ErrMalformedManifest},
		{"bad layer digest", func() string {
			return writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[{"Image":{"Manifest":{"Digest":"` + digest.FromString("").String() + `","Raw":""},"Config":{"Digest":"` + digest.FromString("").String() + `","Raw":""},"Layers":[{"Digest":"sha256:../../x"}]}}]`)}})
		}, ErrMalformedManifest},
		{"random bytes", func() string { return writeBytes(t, randomBytes(9, 2048)) }, ErrUnknownFormat},
		{"unsafe entry", func() string {
			return writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[]`)}, {name: "../sha256-x.tar.gz", body: []byte("x")}})
		}, ErrUnsafeEntry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			it, err := OpenImgpkgTar(ctx, tc.file())
			if err == nil {
				it.Close()
				t.Fatal("OpenImgpkgTar succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := t.TempDir()
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(randomBytes(1, 10))
	zw.Close()
	cases := []struct {
		name    string
		path    string
		want    Format
		err     error
		mention string
	}{
		{"ferry tar", writeFixtureTar(t, fx), FormatOCILayoutTar, nil, ""},
		{"layout dir", dir, FormatOCILayoutDir, nil, ""},
		{"imgpkg bundle", "testdata/imgpkg-bundle.tar", FormatImgpkgTar, nil, ""},
		{"imgpkg image", "testdata/imgpkg-image.tar", FormatImgpkgTar, nil, ""},
		{"docker save", writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[{"Config":"c.json","RepoTags":["a:b"],"Layers":["x/layer.tar"]}]`)}}), FormatUnknown, ErrDockerSave, "docker save"},
		{"old docker save", writeRawTar(t, []rawEntry{{name: "repositories", body: []byte(`{}`)}}), FormatUnknown, ErrDockerSave, "docker save"},
		{"other manifest.json", writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`{"a":1}`)}}), FormatUnknown, ErrUnknownFormat, "manifest.json"},
		{"plain tar", writeRawTar(t, []rawEntry{{name: "hello.txt", body: []byte("hi")}}), FormatUnknown, ErrUnknownFormat, "oci-layout"},
		{"random bytes", writeBytes(t, randomBytes(3, 5000)), FormatUnknown, ErrUnknownFormat, "not a tar"},
		{"gzip", writeBytes(t, gz.Bytes()), FormatUnknown, ErrUnknownFormat, "gzip"},
		{"empty dir", t.TempDir(), FormatUnknown, ErrUnknownFormat, "oci-layout"},
		{"truncated layout tar", func() string {
			b, _ := os.ReadFile(writeFixtureTar(t, fx))
			return writeBytes(t, b[:len(b)-2000])
		}(), FormatUnknown, ErrTruncated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Detect(ctx, tc.path)
			if got != tc.want {
				t.Errorf("Detect = %v, want %v", got, tc.want)
			}
			if tc.err == nil {
				if err != nil {
					t.Errorf("error %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %v, want %v mentioning %q", err, tc.err, tc.mention)
			}
		})
	}
	if _, err := Detect(ctx, filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
}
