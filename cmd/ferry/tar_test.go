package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/ocilayout"
)

const (
	mtDockerConfig  = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer   = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtDockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// layoutFixture is a small graph written with ocilayout's writers: a root
// bundle, an OCI image, an index of two images, an image whose
// non-distributable layer is left out, and a cosign signature of the image.
type layoutFixture struct {
	data    map[digest.Digest][]byte
	blobs   []ocispec.Descriptor // what the layout holds
	roots   []ocilayout.Root
	bundle  ocispec.Descriptor
	app     ocispec.Descriptor
	appLay  ocispec.Descriptor
	multi   ocispec.Descriptor
	win     ocispec.Descriptor
	sig     ocispec.Descriptor
	foreign ocispec.Descriptor // left out
	// graph is the expected number of blobs and bytes below each root.
	graph map[digest.Digest][2]int64
}

func (fx *layoutFixture) add(mt string, b []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if _, ok := fx.data[d.Digest]; !ok {
		fx.data[d.Digest] = b
		fx.blobs = append(fx.blobs, d)
	}
	return d
}

func (fx *layoutFixture) manifest(t *testing.T, mt string, config ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt, Config: config, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	return fx.add(mt, b)
}

func pseudoRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newLayoutFixture(t *testing.T) *layoutFixture {
	t.Helper()
	fx := &layoutFixture{data: map[digest.Digest][]byte{}}
	sizes := func(ds ...ocispec.Descriptor) [2]int64 {
		var n int64
		for _, d := range ds {
			n += d.Size
		}
		return [2]int64{int64(len(ds)), n}
	}
	fx.graph = map[digest.Digest][2]int64{}

	bcfg := fx.add(mtDockerConfig, []byte(`{"config":{"Labels":{"dev.carvel.imgpkg.bundle":"true"}}}`))
	blay := fx.add(mtDockerLayer, pseudoRandom(1, 600))
	fx.bundle = fx.manifest(t, mediaTypeDockerManifest, bcfg, blay)
	fx.graph[fx.bundle.Digest] = sizes(fx.bundle, bcfg, blay)

	acfg := fx.add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	fx.appLay = fx.add(ocispec.MediaTypeImageLayerGzip, pseudoRandom(2, 3000))
	fx.app = fx.manifest(t, ocispec.MediaTypeImageManifest, acfg, fx.appLay)
	fx.graph[fx.app.Digest] = sizes(fx.app, acfg, fx.appLay)

	amdCfg := fx.add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{}}`))
	armCfg := fx.add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"arm64","os":"linux","rootfs":{}}`))
	amdLay := fx.add(ocispec.MediaTypeImageLayerGzip, pseudoRandom(3, 700))
	armLay := fx.add(ocispec.MediaTypeImageLayerGzip, pseudoRandom(4, 513))
	amd := fx.manifest(t, ocispec.MediaTypeImageManifest, amdCfg, amdLay)
	arm := fx.manifest(t, ocispec.MediaTypeImageManifest, armCfg, armLay)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, arm}}
	ib, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	fx.multi = fx.add(ocispec.MediaTypeImageIndex, ib)
	fx.graph[fx.multi.Digest] = sizes(fx.multi, amd, arm, amdCfg, armCfg, amdLay, armLay)

	body := pseudoRandom(5, 100)
	fx.foreign = ocispec.Descriptor{MediaType: mtDockerForeign, Digest: digest.FromBytes(body), Size: 100, URLs: []string{"https://example.invalid/layer"}}
	wcfg := fx.add(mtDockerConfig, []byte(`{"os":"windows"}`))
	wlay := fx.add(mtDockerLayer, pseudoRandom(6, 50))
	fx.win = fx.manifest(t, mediaTypeDockerManifest, wcfg, fx.foreign, wlay)
	fx.graph[fx.win.Digest] = sizes(fx.win, wcfg, wlay)

	scfg := fx.add(ocispec.MediaTypeImageConfig, []byte(`{"rootfs":{"type":"layers"}}`))
	slay := fx.add(mediaTypeCosignSimpleSigning, []byte(`{"critical":{"image":{"docker-manifest-digest":"`+fx.app.Digest.String()+`"}}}`))
	fx.sig = fx.manifest(t, ocispec.MediaTypeImageManifest, scfg, slay)
	fx.graph[fx.sig.Digest] = sizes(fx.sig, scfg, slay)

	sigTag := "sha256-" + fx.app.Digest.Encoded() + ".sig"
	fx.roots = []ocilayout.Root{
		{Desc: fx.bundle, Tag: "v1", OriginalRef: "reg.example/team/bundle:v1", Bundle: true, RootBundle: true,
			Requests: []ocilayout.Request{{Position: 0, Ref: "reg.example/team/bundle:v1"}}},
		{Desc: fx.app, OriginalRef: "reg.example/team/app@" + fx.app.Digest.String()},
		{Desc: fx.multi, OriginalRef: "reg.example/team/multi@" + fx.multi.Digest.String()},
		{Desc: fx.win, OriginalRef: "reg.example/team/win@" + fx.win.Digest.String(), SkippedLayers: []ocispec.Descriptor{fx.foreign}},
		{Desc: fx.sig, Tag: sigTag, OriginalRef: "reg.example/team/app:" + sigTag},
	}
	return fx
}

func (fx *layoutFixture) OpenBlob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := fx.data[d.Digest]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (fx *layoutFixture) index(t *testing.T) ocispec.Index {
	t.Helper()
	idx, err := ocilayout.NewIndex(fx.roots)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// writeTar writes the fixture as a layout tar holding blobs (all when nil).
func (fx *layoutFixture) writeTar(t *testing.T, index ocispec.Index, blobs []ocispec.Descriptor) string {
	t.Helper()
	if blobs == nil {
		blobs = fx.blobs
	}
	p := filepath.Join(t.TempDir(), "layout.tar")
	if _, err := ocilayout.WriteTar(context.Background(), p, blobs, index, fx, ocilayout.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (fx *layoutFixture) writeDir(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layout")
	if err := ocilayout.WriteDir(context.Background(), p, fx.blobs, fx.index(t), fx, ocilayout.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (fx *layoutFixture) totalBytes() int64 {
	var n int64
	for _, b := range fx.blobs {
		n += b.Size
	}
	return n
}

// without returns the fixture's blobs minus d.
func (fx *layoutFixture) without(d digest.Digest) []ocispec.Descriptor {
	return slices.DeleteFunc(slices.Clone(fx.blobs), func(b ocispec.Descriptor) bool { return b.Digest == d })
}

// lineWith returns the first line of s holding every one of parts.
func lineWith(s string, parts ...string) (string, bool) {
	for line := range strings.SplitSeq(s, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return line, true
		}
	}
	return "", false
}

func TestTarInspectTable(t *testing.T) {
	fx := newLayoutFixture(t)
	tarPath := fx.writeTar(t, fx.index(t), nil)
	dirPath := fx.writeDir(t)
	for _, c := range []struct {
		name, path, format string
	}{
		{"tar", tarPath, "OCI image layout tar"},
		{"directory", dirPath, "OCI image layout directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, "tar", "inspect", c.path)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.HasPrefix(out, c.path+": "+c.format+"\n") {
				t.Errorf("first line of %q, want the path and %q", out, c.format)
			}
			sigTag := "sha256-" + fx.app.Digest.Encoded() + ".sig"
			for _, want := range []struct {
				refName, kind string
				d             ocispec.Descriptor
				orig          string
			}{
				{"v1", "bundle", fx.bundle, "reg.example/team/bundle:v1 (root bundle)"},
				{ocilayout.DigestTag(fx.app.Digest), "image", fx.app, "reg.example/team/app@" + fx.app.Digest.String()},
				{ocilayout.DigestTag(fx.multi.Digest), "index", fx.multi, "reg.example/team/multi@"},
				{ocilayout.DigestTag(fx.win.Digest), "image", fx.win, "reg.example/team/win@"},
				{sigTag, "signature", fx.sig, "reg.example/team/app:" + sigTag},
			} {
				line, ok := lineWith(out, want.d.Digest.String())
				if !ok {
					t.Errorf("no line names %s:\n%s", want.d.Digest, out)
					continue
				}
				f := strings.Fields(line)
				size := humanBytes(fx.graph[want.d.Digest][1])
				if f[0] != want.refName || f[1] != want.kind || !strings.Contains(line, "  "+size+"  ") || !strings.Contains(line, want.orig) {
					t.Errorf("line %q, want ref name %s, kind %s, size %s, original %s", line, want.refName, want.kind, size, want.orig)
				}
			}
			total := fmt.Sprintf("Total: 5 roots, %d blobs, %s (%d bytes)", len(fx.blobs), humanBytes(fx.totalBytes()), fx.totalBytes())
			if _, ok := lineWith(out, total); !ok {
				t.Errorf("no line %q:\n%s", total, out)
			}
			if _, ok := lineWith(out, fx.foreign.Digest.String(), mtDockerForeign, "reg.example/team/win@"+fx.win.Digest.String()); !ok {
				t.Errorf("the skipped layer %s of the win image is not listed:\n%s", fx.foreign.Digest, out)
			}
		})
	}
}

func TestTarInspectJSON(t *testing.T) {
	fx := newLayoutFixture(t)
	path := fx.writeTar(t, fx.index(t), nil)
	code, out, errOut := run(t, "tar", "inspect", "--json", path)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var rep struct {
		Path   string `json:"path"`
		Format string `json:"format"`
		Roots  []struct {
			RefName     string        `json:"refName"`
			Tag         string        `json:"tag"`
			Kind        string        `json:"kind"`
			Digest      digest.Digest `json:"digest"`
			MediaType   string        `json:"mediaType"`
			OriginalRef string        `json:"originalRef"`
			RootBundle  bool          `json:"rootBundle"`
			GraphBlobs  int64         `json:"graphBlobs"`
			GraphBytes  int64         `json:"graphBytes"`
			Error       string        `json:"error"`
		} `json:"roots"`
		Blobs         int   `json:"blobs"`
		Bytes         int64 `json:"bytes"`
		SkippedLayers []struct {
			Digest    digest.Digest `json:"digest"`
			MediaType string        `json:"mediaType"`
			Size      int64         `json:"size"`
			URLs      []string      `json:"urls"`
			Roots     []string      `json:"roots"`
		} `json:"skippedLayers"`
		LeftOutChildren []json.RawMessage `json:"leftOutChildren"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, out)
	}
	if rep.Path != path || rep.Format != "oci-layout-tar" || rep.Blobs != len(fx.blobs) || rep.Bytes != fx.totalBytes() {
		t.Errorf("report header: path %q format %q blobs %d bytes %d; want %q oci-layout-tar %d %d",
			rep.Path, rep.Format, rep.Blobs, rep.Bytes, path, len(fx.blobs), fx.totalBytes())
	}
	wantKinds := []string{"bundle", "image", "index", "image", "signature"}
	if len(rep.Roots) != len(fx.roots) {
		t.Fatalf("%d roots, want %d", len(rep.Roots), len(fx.roots))
	}
	for i, r := range rep.Roots {
		want := fx.roots[i]
		g := fx.graph[want.Desc.Digest]
		if r.Digest != want.Desc.Digest || r.MediaType != want.Desc.MediaType || r.Kind != wantKinds[i] ||
			r.OriginalRef != want.OriginalRef || r.Tag != want.Tag || r.RefName != want.RefName() ||
			r.RootBundle != want.RootBundle || r.GraphBlobs != g[0] || r.GraphBytes != g[1] || r.Error != "" {
			t.Errorf("roots[%d] = %+v, want %s kind %s graph %v", i, r, want.Desc.Digest, wantKinds[i], g)
		}
	}
	if len(rep.SkippedLayers) != 1 {
		t.Fatalf("skipped layers %+v, want the win image's foreign layer", rep.SkippedLayers)
	}
	sl := rep.SkippedLayers[0]
	if sl.Digest != fx.foreign.Digest || sl.MediaType != mtDockerForeign || sl.Size != 100 ||
		!slices.Equal(sl.URLs, fx.foreign.URLs) || !slices.Equal(sl.Roots, []string{fx.roots[3].OriginalRef}) {
		t.Errorf("skipped layer %+v, want %s of %s", sl, fx.foreign.Digest, fx.roots[3].OriginalRef)
	}
	if rep.LeftOutChildren == nil || len(rep.LeftOutChildren) != 0 {
		t.Errorf("left-out children %s, want []", rep.LeftOutChildren)
	}
}

// TestTarInspectOtherTools reads a layout without ferry's annotations, as
// other tools write them: the bundle is recognised by its config label and
// the kinds by the manifests.
func TestTarInspectOtherTools(t *testing.T) {
	fx := newLayoutFixture(t)
	plain := func(d ocispec.Descriptor, name string) ocispec.Descriptor {
		d.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		return d
	}
	multi := fx.multi
	multi.MediaType = "" // some tools leave it out; the manifest tells
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{
		plain(fx.bundle, "bundle:v1"), plain(fx.app, "app"), plain(multi, "multi"),
	}}
	path := fx.writeTar(t, index, nil)
	code, out, errOut := run(t, "tar", "inspect", path)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range [][]string{
		{"bundle:v1", "bundle", fx.bundle.Digest.String()},
		{"app", "image", fx.app.Digest.String()},
		{"multi", "index", fx.multi.Digest.String()},
	} {
		line, ok := lineWith(out, want[2])
		if f := strings.Fields(line); !ok || f[0] != want[0] || f[1] != want[1] {
			t.Errorf("line %q, want ref name %s and kind %s", line, want[0], want[1])
		}
	}
	if !strings.Contains(out, "Non-distributable layers left out: none") {
		t.Errorf("output does not say no layer was left out:\n%s", out)
	}
}

// TestTarInspectImgpkg reads the tarballs imgpkg 0.43 wrote (testdata of
// the ocilayout package).
func TestTarInspectImgpkg(t *testing.T) {
	const (
		bundle = "sha256:bb8cf61bef5cad5d14e525aff1d5cc3e59ff3d63521a64da2bc112713c5c2551"
		app    = "sha256:5c4c4659c64057896a055214cc339a1ef20e43348e9db962ec6e3f6fe237977e"
		multi  = "sha256:2bcb5d869ef1ff0b5fc6c840b105a5560cb086c6474ec55da3f80f211dd24395"
	)
	dir := filepath.Join("..", "..", "ocilayout", "testdata")
	cases := []struct {
		file  string
		roots [][]string // ref name, kind, digest, original
	}{
		{"imgpkg-bundle.tar", [][]string{
			{"v1", "bundle", bundle, "127.0.0.1:5001/tiny/bundle@" + bundle + " (root bundle)"},
			{"sha256-" + strings.TrimPrefix(app, "sha256:") + ".imgpkg", "image", app, "127.0.0.1:5001/tiny/app@" + app},
			{"sha256-" + strings.TrimPrefix(multi, "sha256:") + ".imgpkg", "index", multi, "127.0.0.1:5001/tiny/multi@" + multi},
		}},
		{"imgpkg-image.tar", [][]string{{"v1", "image", app, "127.0.0.1:5001/tiny/app@" + app}}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(dir, c.file)
			code, out, errOut := run(t, "tar", "inspect", path)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.HasPrefix(out, path+": imgpkg tarball\n") {
				t.Errorf("output does not start with the format:\n%s", out)
			}
			for _, want := range c.roots {
				line, ok := lineWith(out, want[2]+"  ")
				f := strings.Fields(line)
				if !ok || f[0] != want[0] || f[1] != want[1] || !strings.HasSuffix(line, want[3]) {
					t.Errorf("line %q, want %v", line, want)
				}
			}
			code, out, errOut = run(t, "tar", "verify", path)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, path+": OK: ") {
				t.Errorf("verify: exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}

func TestTarVerifyOK(t *testing.T) {
	fx := newLayoutFixture(t)
	for _, path := range []string{fx.writeTar(t, fx.index(t), nil), fx.writeDir(t)} {
		code, out, errOut := run(t, "tar", "verify", path)
		want := fmt.Sprintf("%s: OK: %d blobs (%s) re-hashed, every reference of 5 roots present (1 non-distributable layers left out, as recorded)\n",
			path, len(fx.blobs), humanBytes(fx.totalBytes()))
		if code != 0 || out != want || errOut != "" {
			t.Errorf("verify %s: exit %d, stdout %q, stderr %q; want stdout %q", path, code, out, errOut, want)
		}
	}
}

// flipByteIn flips one byte of the first occurrence of blob's bytes in the
// file at path (a blob entry's body), in place.
func flipByteIn(t *testing.T, path string, blob []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, blob)
	if i < 0 {
		t.Fatalf("%s does not hold the blob", path)
	}
	b[i+len(blob)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTarVerifyProblems checks that each fault is reported on stderr with
// the digest and the entry at fault, and that verify exits 1.
func TestTarVerifyProblems(t *testing.T) {
	fx := newLayoutFixture(t)
	appLayEntry := "blobs/sha256/" + fx.appLay.Digest.Encoded()
	cases := []struct {
		name  string
		path  func(t *testing.T) string
		wants [][]string // each a line of stderr holding all its parts
	}{
		{"tar blob with wrong bytes", func(t *testing.T) string {
			p := fx.writeTar(t, fx.index(t), nil)
			flipByteIn(t, p, fx.data[fx.appLay.Digest])
			return p
		}, [][]string{{"tar verify | ", fx.appLay.Digest.String(), appLayEntry, "digest mismatch"}}},
		{"tar missing a layer", func(t *testing.T) string {
			return fx.writeTar(t, fx.index(t), fx.without(fx.appLay.Digest))
		}, [][]string{{"tar verify | ", fx.appLay.Digest.String(), "missing", "referenced by " + fx.app.Digest.String()}}},
		{"tar missing the foreign layer without a record", func(t *testing.T) string {
			roots := slices.Clone(fx.roots)
			roots[3].SkippedLayers = nil
			idx, err := ocilayout.NewIndex(roots)
			if err != nil {
				t.Fatal(err)
			}
			return fx.writeTar(t, idx, nil)
		}, [][]string{{"tar verify | ", fx.foreign.Digest.String(), "non-distributable", "referenced by " + fx.win.Digest.String()}}},
		{"directory blob with wrong bytes", func(t *testing.T) string {
			d := fx.writeDir(t)
			flipByteIn(t, filepath.Join(d, appLayEntry), fx.data[fx.appLay.Digest])
			return d
		}, [][]string{{"tar verify | ", fx.appLay.Digest.String(), appLayEntry, "digest mismatch"}}},
		{"directory missing a layer", func(t *testing.T) string {
			d := fx.writeDir(t)
			if err := os.Remove(filepath.Join(d, appLayEntry)); err != nil {
				t.Fatal(err)
			}
			return d
		}, [][]string{{"tar verify | ", fx.appLay.Digest.String(), "missing"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path(t)
			code, out, errOut := run(t, "tar", "verify", path)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			for _, want := range c.wants {
				if _, ok := lineWith(errOut, want...); !ok {
					t.Errorf("no stderr line holding %q:\n%s", want, errOut)
				}
			}
			if _, ok := lineWith(errOut, "ferry: Error: ", path, "verification failed, 1 problem(s)", c.wants[0][1]); !ok {
				t.Errorf("no ferry: Error: line naming %s and the digest:\n%s", path, errOut)
			}
		})
	}
}

// badTar builds tar bytes from (name, body) pairs by hand.
func badTar(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e[0], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e[1]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestTarBadFiles checks that files that cannot be read as a layout fail
// both commands with one error naming the file and what is wrong.
func TestTarBadFiles(t *testing.T) {
	fx := newLayoutFixture(t)
	good, err := os.ReadFile(fx.writeTar(t, fx.index(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good)
	zw.Close()
	layoutJSON := `{"imageLayoutVersion":"1.0.0"}`
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"not a tar", []byte("hello, this is not a tar at all\n"), "not a tar"},
		{"gzip-compressed", gz.Bytes(), "gzip-compressed"},
		{"truncated inside a blob", good[:len(good)/2], "truncated"},
		{"no index.json", badTar(t, [2]string{"oci-layout", layoutJSON}), "no index.json"},
		{"malformed index.json", badTar(t, [2]string{"oci-layout", layoutJSON}, [2]string{"index.json", "{not json"}), "malformed index.json"},
		{"escaping name", badTar(t, [2]string{"oci-layout", layoutJSON}, [2]string{"../x", "x"}), `"../x"`},
		{"duplicate entry", badTar(t, [2]string{"oci-layout", layoutJSON}, [2]string{"oci-layout", layoutJSON}), "duplicate"},
		{"docker save", badTar(t, [2]string{"manifest.json", `[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l/layer.tar"]}]`}), "docker save"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.tar")
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"inspect", "verify"} {
				code, out, errOut := run(t, "tar", cmd, path)
				if code != 1 || out != "" {
					t.Errorf("%s: exit %d, stdout %q; want 1 and nothing", cmd, code, out)
				}
				if !strings.HasPrefix(errOut, "ferry: Error: ") || !strings.Contains(errOut, path) || !strings.Contains(errOut, c.want) {
					t.Errorf("%s: stderr %q, want a ferry: Error: line naming %s and %q", cmd, errOut, path, c.want)
				}
			}
		})
	}
}

func TestTarUsage(t *testing.T) {
	for _, args := range [][]string{{"tar", "inspect"}, {"tar", "verify"}, {"tar", "verify", "a", "b"}} {
		code, out, errOut := run(t, args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, "ferry: Error: ") || !strings.Contains(errOut, "arg") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, sub := range []string{"inspect", "verify"} {
		code, out, _ := run(t, "tar", sub, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "ferry tar "+sub+" /tmp/") {
			t.Errorf("tar %s --help: exit %d, no example:\n%s", sub, code, out)
		}
	}
}

// TestTarInspectDamagedManifest checks that inspect still lists a root whose
// manifest does not match its digest, with an unknown size and a warning
// that sends the user to verify.
func TestTarInspectDamagedManifest(t *testing.T) {
	fx := newLayoutFixture(t)
	path := fx.writeTar(t, fx.index(t), nil)
	flipByteIn(t, path, fx.data[fx.app.Digest])
	code, out, errOut := run(t, "tar", "inspect", path)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if line, ok := lineWith(out, fx.app.Digest.String()+"  ?  "); !ok {
		t.Errorf("the app's line does not show an unknown size:\n%s", out)
	} else if strings.Fields(line)[1] != "image" {
		t.Errorf("the app's line %q lost its kind", line)
	}
	if _, ok := lineWith(errOut, "tar inspect | Warning: ", fx.app.Digest.String(), "digest mismatch", "ferry tar verify"); !ok {
		t.Errorf("stderr %q, want a warning naming %s and ferry tar verify", errOut, fx.app.Digest)
	}
}
