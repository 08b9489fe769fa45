// Package badinput_test is the registry-served part of the bad-input corpus
// (issue 6, item 3): bundles with zero or two layers, manifests whose layer
// sizes lie, a manifest over the size limit, an index whose child is gone, a
// deep chain of nested bundles, a manifest that changes between requests,
// and a store or output directory on a full filesystem. Each runs the real
// ferry binary and checks: exit 1, a "ferry: Error:" line naming the
// reference or digest at fault, no panic, nothing tagged at the
// destination, no tarball left, and a store that still verifies.
package badinput_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const mib = 1 << 20

// world is a source registry behind a proxy (fixtures are referenced
// through the proxy so a test can rewrite what is served), a destination
// registry, and the test's store and output directory.
type world struct {
	src, dst *harness.Registry
	proxy    *harness.Proxy
	store    string
	out      string // the directory --to-tar writes into
}

func newWorld(t *testing.T) *world {
	t.Helper()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	work := t.TempDir()
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return &world{src: src, dst: dst, proxy: harness.StartProxy(t, src.Host), store: filepath.Join(work, "store"), out: out}
}

func (w *world) env() []string { return []string{"FERRY_STORE=" + w.store} }

func (w *world) ferry(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return harness.Run(t, w.env(), args...)
}

// push stores raw under its digest in repo on the source registry (a
// manifest when mediaType is a manifest type, a blob otherwise) and tags it
// when tag is set.
func (w *world) push(ctx context.Context, t *testing.T, repo, mediaType string, raw []byte, tag string) ocispec.Descriptor {
	t.Helper()
	r := w.src.Repository(t, repo)
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := r.Push(ctx, desc, bytes.NewReader(raw)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		t.Fatalf("push %s to %s: %v", desc.Digest, repo, err)
	}
	if tag != "" {
		if err := r.Tag(ctx, desc, tag); err != nil {
			t.Fatalf("tag %s:%s: %v", repo, tag, err)
		}
	}
	return desc
}

func (w *world) pushJSON(ctx context.Context, t *testing.T, repo, mediaType string, v any, tag string) (ocispec.Descriptor, []byte) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return w.push(ctx, t, repo, mediaType, raw, tag), raw
}

// bundleConfig pushes an image config labelled as an imgpkg bundle.
func (w *world) bundleConfig(ctx context.Context, t *testing.T, repo string, diffIDs []digest.Digest) ocispec.Descriptor {
	t.Helper()
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	d, _ := w.pushJSON(ctx, t, repo, ocispec.MediaTypeImageConfig, ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Labels: map[string]string{harness.BundleLabel: "true"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}, "")
	return d
}

// imageConfig pushes a plain image config.
func (w *world) imageConfig(ctx context.Context, t *testing.T, repo string, diffIDs []digest.Digest) ocispec.Descriptor {
	t.Helper()
	d, _ := w.pushJSON(ctx, t, repo, ocispec.MediaTypeImageConfig, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}, "")
	return d
}

// layer pushes a gzip tar of files and returns its descriptor and diff ID.
func (w *world) layer(ctx context.Context, t *testing.T, repo string, files map[string][]byte) (ocispec.Descriptor, digest.Digest) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return w.push(ctx, t, repo, ocispec.MediaTypeImageLayerGzip, gz.Bytes(), ""), digest.FromBytes(tb.Bytes())
}

func manifestOf(config ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Manifest {
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	return ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    layers,
	}
}

func imagesYML(t *testing.T, images ...string) map[string][]byte {
	return map[string][]byte{".imgpkg/images.yml": harness.ImagesLockYAML(t, images, nil)}
}

// expectFailure checks a failed run: exit 1, a "ferry: Error:" line that
// names one of names, and no panic or goroutine dump.
func expectFailure(t *testing.T, res harness.Result, names ...string) {
	t.Helper()
	if res.ExitCode != 1 {
		t.Errorf("exit %d, want 1", res.ExitCode)
	}
	if strings.Contains(res.Stderr, "panic:") || strings.Contains(res.Stderr, "goroutine ") {
		t.Errorf("stderr has a panic or goroutine dump:\n%s", res.Stderr)
	}
	var line string
	for l := range strings.Lines(res.Stderr) {
		if strings.HasPrefix(l, "ferry: Error:") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Errorf("no \"ferry: Error:\" line in stderr:\n%s", res.Stderr)
		return
	}
	t.Logf("ERROR TEXT: %s", line)
	for _, n := range names {
		if strings.Contains(line, n) {
			return
		}
	}
	t.Errorf("error line names none of %q:\n%s", names, line)
}

// checkNothingTagged checks that repo on the destination has no tags.
func (w *world) checkNothingTagged(ctx context.Context, t *testing.T, repo string) {
	t.Helper()
	r := w.dst.Repository(t, repo)
	var tags []string
	err := r.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil })
	if err != nil && !errors.Is(err, errdef.ErrNotFound) && !strings.Contains(err.Error(), "name unknown") {
		t.Errorf("tags of destination %s: %v", repo, err)
	}
	if len(tags) > 0 {
		t.Errorf("destination %s has tags %v after a failed copy", repo, tags)
	}
}

// checkOutEmpty checks that the output directory holds nothing: no
// tarball and no temporary file.
func checkOutEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in the output directory after a failed copy", e.Name())
	}
}

// verifyStore runs `ferry store verify` on the test's store.
func (w *world) verifyStore(t *testing.T) {
	t.Helper()
	res := w.ferry(t, "store", "verify")
	if res.ExitCode != 0 {
		t.Errorf("ferry store verify: %s", res)
	}
}

// failBoth copies src (with flag -b or -i) to a repository and to a tarball,
// expecting both to fail naming one of names, and checks the aftermath.
func (w *world) failBoth(ctx context.Context, t *testing.T, flag, src string, names ...string) {
	t.Helper()
	start := time.Now()
	res := w.ferry(t, "copy", flag, src, "--to-repo", w.dst.Ref("out/x"))
	expectFailure(t, res, names...)
	w.checkNothingTagged(ctx, t, "out/x")
	res = w.ferry(t, "copy", flag, src, "--to-tar", filepath.Join(w.out, "x.tar"))
	expectFailure(t, res, names...)
	checkOutEmpty(t, w.out)
	w.verifyStore(t)
	t.Logf("both copies failed in %s", time.Since(start).Round(time.Millisecond))
}

// manifestGet matches GET (and HEAD) requests of repo's manifest ref.
func manifestReq(r *http.Request, repo, ref string) bool {
	return harness.ClassOf(r) == harness.ClassManifest && r.URL.Path == "/v2/"+repo+"/manifests/"+ref
}

// serveManifest returns a fault that answers with raw as a manifest of
// mediaType, claiming digest d.
func serveManifest(raw []byte, mediaType string, d digest.Digest) harness.Fault {
	return harness.Fault{
		Kind:   harness.FaultStatus,
		Status: http.StatusOK,
		Header: http.Header{
			"Content-Type":          {mediaType},
			"Docker-Content-Digest": {d.String()},
			"Content-Length":        {strconv.Itoa(len(raw))},
		},
		Body: raw,
	}
}
