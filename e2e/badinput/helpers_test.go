// Package badinput_test is the registry-served part of the bad-input corpus
// (issue 6, item 3), kept as code because it needs a registry: bundles with
// zero or two layers, manifests whose layer sizes lie, a manifest over the
// size limit, an index whose child is gone, an index (or a bundle) that
// points back at itself, a deep chain of nested bundles, a manifest whose
// bytes change between requests for its digest, a tag that answers two
// manifests in turn, and a store or output directory on a full filesystem.
// Each runs the real ferry binary and checks: exit 1, one "ferry: Error:"
// line naming the reference or digest at fault, no panic, nothing tagged at
// the destination, no tarball left, the pulled directory and everything else
// in the work directory untouched, and a store that still verifies. The
// file-based corpus lives in lockfile/testdata/bad, bundle/testdata/bad-layers
// and ocilayout/testdata/broken.
package badinput_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
// registry, and the test's store and output directories, all in one work
// directory so a test can show that a failed run touched nothing there but
// the store.
type world struct {
	src, dst *harness.Registry
	proxy    *harness.Proxy
	work     string // holds store, out and pulled
	store    string
	out      string // the directory --to-tar writes into
	pulled   string // the directory pull -o replaces; holds keep.txt
}

func newWorld(t *testing.T) *world {
	t.Helper()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	work := t.TempDir()
	w := &world{src: src, dst: dst, proxy: harness.StartProxy(t, src.Host), work: work,
		store: filepath.Join(work, "store"), out: filepath.Join(work, "out"), pulled: filepath.Join(work, "pulled")}
	for _, d := range []string{w.out, w.pulled} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(w.pulled, "keep.txt"), []byte("from before the pull\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// snapshot describes every path in the work directory except the store
// (type, mode, size and, for files, a digest of the content), to show that
// a run changed nothing else.
func (w *world) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(w.work, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == w.store {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d", info.Mode(), info.Size())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + digest.FromBytes(b).String()
		}
		rel, _ := filepath.Rel(w.work, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkUnchanged fails the test for every path of the work directory
// (outside the store) that a failed run created, removed or changed.
func (w *world) checkUnchanged(t *testing.T, before map[string]string, what string) {
	t.Helper()
	after := w.snapshot(t)
	var diff []string
	for k, v := range before {
		if after[k] != v {
			diff = append(diff, fmt.Sprintf("%s: %q -> %q", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	slices.Sort(diff)
	for _, d := range diff {
		t.Errorf("%s changed the work directory: %s", what, d)
	}
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

// expectFailure checks a failed run: exit 1, no panic or goroutine dump,
// one "ferry: Error:" line, and that line names one of names.
func expectFailure(t *testing.T, res harness.Result, names ...string) {
	t.Helper()
	line := harness.ErrorLine(t, res)
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
	if tags := harness.Tags(ctx, t, w.dst.Repository(t, repo)); len(tags) > 0 {
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

// failBoth copies src (with flag -b or -i) to a repository and to a
// tarball, expecting both to fail naming one of names, and checks the
// aftermath: nothing tagged, nothing left in the output directory, nothing
// else in the work directory touched, and a store that verifies.
func (w *world) failBoth(ctx context.Context, t *testing.T, flag, src string, names ...string) {
	t.Helper()
	start := time.Now()
	res := w.ferry(t, "copy", flag, src, "--to-repo", w.dst.Ref("out/x"))
	expectFailure(t, res, names...)
	w.checkNothingTagged(ctx, t, "out/x")

	before := w.snapshot(t)
	res = w.ferry(t, "copy", flag, src, "--to-tar", filepath.Join(w.out, "x.tar"))
	expectFailure(t, res, names...)
	checkOutEmpty(t, w.out)
	w.checkUnchanged(t, before, "copy --to-tar")
	w.verifyStore(t)
	t.Logf("both copies failed in %s", time.Since(start).Round(time.Millisecond))
}

// failPull pulls src (with flag -b or -i) into the pulled directory,
// expecting it to fail naming one of names, and checks that the pulled
// directory and everything else in the work directory are as they were and
// the store verifies.
func (w *world) failPull(t *testing.T, flag, src string, names ...string) {
	t.Helper()
	before := w.snapshot(t)
	res := w.ferry(t, "pull", flag, src, "-o", w.pulled)
	expectFailure(t, res, names...)
	w.checkUnchanged(t, before, "pull -o")
	w.verifyStore(t)
}
