package ocilayout

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
)

// entryOffset returns the offset of the header of the named entry in a tar.
func entryOffset(t *testing.T, b []byte, name string) int64 {
	t.Helper()
	var off int64
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %s not found: %v", name, err)
		}
		if h.Name == name {
			return off
		}
		off += blockSize + (h.Size+blockSize-1)/blockSize*blockSize
	}
}

func TestOpenTarBroken(t *testing.T) {
	fx := newFixture(t)
	good, err := os.ReadFile(writeFixtureTar(t, fx))
	if err != nil {
		t.Fatal(err)
	}
	rootName := blobPath(fx.app.Digest)
	rootOff := entryOffset(t, good, rootName)
	lastOff := int64(len(good)) - 2*blockSize

	replace := func(name string, e rawEntry) func(es []rawEntry) []rawEntry {
		return func(es []rawEntry) []rawEntry {
			for i := range es {
				if es[i].name == name {
					es[i] = e
				}
			}
			return es
		}
	}
	drop := func(name string) func(es []rawEntry) []rawEntry {
		return func(es []rawEntry) []rawEntry {
			return slices.DeleteFunc(es, func(e rawEntry) bool { return e.name == name })
		}
	}
	add := func(e rawEntry) func(es []rawEntry) []rawEntry {
		return func(es []rawEntry) []rawEntry { return append(es, e) }
	}
	indexWith := func(mut func(*ocispec.Index)) []byte {
		idx := fx.index
		idx.Manifests = slices.Clone(idx.Manifests)
		mut(&idx)
		return mustJSON(t, idx)
	}

	cases := []struct {
		name    string
		file    func() string
		want    error
		mention string
	}{
		{"cut inside the first header", func() string { return writeBytes(t, good[:100]) }, ErrTruncated, ""},
		{"cut inside a root's body", func() string { return writeBytes(t, good[:rootOff+blockSize+10]) }, ErrTruncated, rootName},
		{"cut inside a root's header", func() string { return writeBytes(t, good[:rootOff+100]) }, ErrTruncated, ""},
		{"cut before a root", func() string { return writeBytes(t, good[:rootOff]) }, ErrTruncated, ""},
		{"cut before the end marker", func() string { return writeBytes(t, good[:lastOff]) }, ErrTruncated, ""},
		{"cut inside the end marker", func() string { return writeBytes(t, good[:lastOff+100]) }, ErrTruncated, ""},
		{"cut after index.json", func() string { return writeBytes(t, good[:entryOffset(t, good, "blobs/")]) }, ErrTruncated, "index.json"},
		{"empty file", func() string { return writeBytes(t, nil) }, ErrNotLayout, ""},
		{"random bytes", func() string { return writeBytes(t, randomBytes(7, 4096)) }, ErrNotLayout, ""},
		{"corrupt header mid-file", func() string {
			b := slices.Clone(good)
			b[rootOff+148] ^= 0x55 // checksum field
			return writeBytes(t, b)
		}, ErrCorruptTar, ""},
		{"missing root blob", func() string { return writeRawTar(t, drop(rootName)(layoutEntries(t, fx))) }, ErrMissingBlob, fx.app.Digest.String()},
		{"root of the wrong size", func() string {
			return writeRawTar(t, replace(rootName, rawEntry{name: rootName, body: []byte("{}")})(layoutEntries(t, fx)))
		}, ErrSizeMismatch, fx.app.Digest.String()},
		{"duplicate blob", func() string {
			return writeRawTar(t, add(rawEntry{name: "./" + rootName, body: fx.data[fx.app.Digest]})(layoutEntries(t, fx)))
		}, ErrDuplicateEntry, rootName},
		{"duplicate index.json", func() string {
			return writeRawTar(t, add(rawEntry{name: "index.json", body: []byte("{}")})(layoutEntries(t, fx)))
		}, ErrDuplicateEntry, "index.json"},
		{"dot-dot name", func() string {
			return writeRawTar(t, add(rawEntry{name: "blobs/../../etc/passwd", body: []byte("x")})(layoutEntries(t, fx)))
		}, ErrUnsafeEntry, "../../etc/passwd"},
		{"absolute name", func() string {
			return writeRawTar(t, add(rawEntry{name: "/etc/passwd", body: []byte("x")})(layoutEntries(t, fx)))
		}, ErrUnsafeEntry, "/etc/passwd"},
		{"symlink blob", func() string {
			return writeRawTar(t, replace(rootName, rawEntry{name: rootName, typ: tar.TypeSymlink, linkname: "/etc/passwd"})(layoutEntries(t, fx)))
		}, ErrUnsafeEntry, rootName},
		{"hard link", func() string {
			return writeRawTar(t, add(rawEntry{name: "blobs/sha256/x", typ: tar.TypeLink, linkname: "index.json"})(layoutEntries(t, fx)))
		}, ErrUnsafeEntry, "blobs/sha256/x"},
		{"device", func() string {
			return writeRawTar(t, add(rawEntry{name: "dev", typ: tar.TypeChar})(layoutEntries(t, fx)))
		}, ErrUnsafeEntry, "dev"},
		{"fifo", func() string {
			return writeRawTar(t, add(rawEntry{name: "fifo", typ: tar.TypeFifo})(layoutEntries(t, fx)))
		}, ErrUnsafeEntry, "fifo"},
		{"no oci-layout", func() string { return writeRawTar(t, drop("oci-layout")(layoutEntries(t, fx))) }, ErrNotLayout, "oci-layout"},
		{"oci-layout version", func() string {
			return writeRawTar(t, replace("oci-layout", rawEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"9.9"}`)})(layoutEntries(t, fx)))
		}, ErrNotLayout, "9.9"},
		{"oci-layout not JSON", func() string {
			return writeRawTar(t, replace("oci-layout", rawEntry{name: "oci-layout", body: []byte(`nope`)})(layoutEntries(t, fx)))
		}, ErrNotLayout, "oci-layout"},
		{"no index.json", func() string { return writeRawTar(t, drop("index.json")(layoutEntries(t, fx))) }, ErrNotLayout, "index.json"},
		{"index.json not JSON", func() string {
			return writeRawTar(t, replace("index.json", rawEntry{name: "index.json", body: []byte(`{"manifests":[`)})(layoutEntries(t, fx)))
		}, ErrMalformedIndex, "index.json"},
		{"index.json schemaVersion", func() string {
			return writeRawTar(t, replace("index.json", rawEntry{name: "index.json", body: indexWith(func(i *ocispec.Index) { i.SchemaVersion = 1 })})(layoutEntries(t, fx)))
		}, ErrMalformedIndex, "schemaVersion"},
		{"index.json bad digest", func() string {
			return writeRawTar(t, replace("index.json", rawEntry{name: "index.json", body: indexWith(func(i *ocispec.Index) { i.Manifests[1].Digest = "sha256:zz" })})(layoutEntries(t, fx)))
		}, ErrMalformedIndex, "manifests[1]"},
		{"index.json bad ferry annotation", func() string {
			return writeRawTar(t, replace("index.json", rawEntry{name: "index.json", body: indexWith(func(i *ocispec.Index) {
				i.Manifests[0].Annotations = map[string]string{AnnotationFerryRequests: "[{"}
			})})(layoutEntries(t, fx)))
		}, ErrMalformedIndex, AnnotationFerryRequests},
		{"docker save", func() string {
			return writeRawTar(t, []rawEntry{{name: "manifest.json", body: []byte(`[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l/layer.tar"]}]`)}, {name: "c.json", body: []byte("{}")}})
		}, ErrNotLayout, "manifest.json"},
		{"imgpkg tar", func() string { return "testdata/imgpkg-image.tar" }, ErrNotLayout, "manifest.json"},
		{"a directory", func() string { return t.TempDir() }, nil, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.file()
			lt, err := OpenTar(context.Background(), p)
			if err == nil {
				lt.Close()
				t.Fatal("OpenTar succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not name %q", err, tc.mention)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// tarWithBlob writes fx's layout with the body of blob d replaced.
func tarWithBlob(t *testing.T, fx *fixture, d digest.Digest, body []byte) string {
	t.Helper()
	es := layoutEntries(t, fx)
	for i := range es {
		if es[i].name == blobPath(d) {
			es[i].body = body
		}
	}
	return writeRawTar(t, es)
}

func TestFetchVerifies(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	lay := fx.appLay
	flipped := slices.Clone(fx.data[lay.Digest])
	flipped[len(flipped)-1] ^= 1

	t.Run("wrong bytes", func(t *testing.T) {
		lt, err := OpenTar(ctx, tarWithBlob(t, fx, lay.Digest, flipped))
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		rc, err := lt.Fetch(ctx, lay)
		if err != nil {
			t.Fatal(err)
		}
		b, err := readAllFrom(t, rc)
		if !errors.Is(err, ErrDigestMismatch) || !errors.Is(err, content.ErrMismatchedDigest) {
			t.Fatalf("read error %v, want ErrDigestMismatch", err)
		}
		if !strings.Contains(err.Error(), lay.Digest.String()) || !strings.Contains(err.Error(), blobPath(lay.Digest)) {
			t.Errorf("error %q does not name the digest and entry", err)
		}
		if len(b) != len(flipped) {
			t.Errorf("read %d bytes before the error, want all %d", len(b), len(flipped))
		}
		problems, err := lt.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 1 || problems[0].Digest != lay.Digest || problems[0].Entry != blobPath(lay.Digest) || !errors.Is(problems[0].Err, ErrDigestMismatch) {
			t.Errorf("Verify problems %v, want one digest mismatch of %s", problems, lay.Digest)
		}
		// oras-go refuses the blob too.
		err = oras.CopyGraph(ctx, lt, memory.New(), fx.app, oras.CopyGraphOptions{})
		if !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("CopyGraph error %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("entry of another size", func(t *testing.T) {
		lt, err := OpenTar(ctx, tarWithBlob(t, fx, lay.Digest, []byte("short")))
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		if _, err := lt.Fetch(ctx, lay); !errors.Is(err, ErrSizeMismatch) || !strings.Contains(err.Error(), lay.Digest.String()) {
			t.Errorf("Fetch error %v, want ErrSizeMismatch naming %s", err, lay.Digest)
		}
		problems, err := lt.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, p := range problems {
			found = found || (p.Digest == lay.Digest && errors.Is(p.Err, ErrSizeMismatch) && p.Parent == fx.app.Digest)
		}
		if !found {
			t.Errorf("Verify problems %v, want a size mismatch of %s under %s", problems, lay.Digest, fx.app.Digest)
		}
	})
	t.Run("descriptor of another size", func(t *testing.T) {
		lt, err := OpenTar(ctx, writeFixtureTar(t, fx))
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		d := lay
		d.Size++
		if _, err := lt.Fetch(ctx, d); !errors.Is(err, ErrSizeMismatch) {
			t.Errorf("Fetch error %v, want ErrSizeMismatch", err)
		}
	})
	t.Run("missing blob", func(t *testing.T) {
		es := slices.DeleteFunc(layoutEntries(t, fx), func(e rawEntry) bool { return e.name == blobPath(lay.Digest) })
		lt, err := OpenTar(ctx, writeRawTar(t, es))
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		_, err = lt.Fetch(ctx, lay)
		if !errors.Is(err, ErrMissingBlob) || !errors.Is(err, errdef.ErrNotFound) || !strings.Contains(err.Error(), lay.Digest.String()) {
			t.Errorf("Fetch error %v, want ErrMissingBlob naming %s", err, lay.Digest)
		}
		if ok, err := lt.Exists(ctx, lay); ok || err != nil {
			t.Errorf("Exists = %v, %v", ok, err)
		}
		problems, err := lt.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 1 || problems[0].Digest != lay.Digest || problems[0].Parent != fx.app.Digest || !errors.Is(problems[0].Err, ErrMissingBlob) {
			t.Errorf("Verify problems %v, want the missing layer of %s", problems, fx.app.Digest)
		}
	})
	t.Run("invalid digest", func(t *testing.T) {
		lt, err := OpenTar(ctx, writeFixtureTar(t, fx))
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		if _, err := lt.Fetch(ctx, ocispec.Descriptor{Digest: "sha256:../x"}); !errors.Is(err, ErrInvalidDescriptor) {
			t.Errorf("Fetch error %v, want ErrInvalidDescriptor", err)
		}
	})
}

func TestVerifyNonDistributable(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	// Without the skipped-layers annotation the missing foreign layer is a problem.
	roots := slices.Clone(fx.roots)
	roots[3].SkippedLayers = nil
	idx, err := NewIndex(roots)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "out.tar")
	if _, err := WriteTar(ctx, p, fx.blobs, idx, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lt, err := OpenTar(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	problems, err := lt.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Digest != fx.skipped.Digest || !strings.Contains(problems[0].String(), "non-distributable") {
		t.Errorf("problems %v, want the unannotated non-distributable layer", problems)
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	p := writeFixtureTar(t, fx)
	dir := t.TempDir()
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lt, err := OpenTar(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	ld, err := OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	amd := ocispec.Descriptor{}
	for _, d := range fx.blobs {
		if d.MediaType == mediaTypeDockerManifest && d.Digest != fx.bundle.Digest && d.Digest != fx.foreign.Digest {
			amd = d
			break
		}
	}
	cases := []struct {
		ref  string
		want ocispec.Descriptor
		err  error
	}{
		{"v1", fx.bundle, nil},
		{"reg.example/tiny/bundle:v1", fx.bundle, nil},
		{DigestTag(fx.app.Digest), fx.app, nil},
		{"reg.example/tiny/app@" + fx.app.Digest.String(), fx.app, nil},
		{fx.multi.Digest.String(), fx.multi, nil},
		{amd.Digest.String(), amd, nil},                        // not a root: media type read from the blob
		{fx.appLay.Digest.String(), fx.appLay, ErrRefNotFound}, // not a manifest
		{"v2", ocispec.Descriptor{}, ErrRefNotFound},
		{digest.FromString("nothing").String(), ocispec.Descriptor{}, ErrRefNotFound},
	}
	for _, target := range []oras.ReadOnlyTarget{lt, ld} {
		for _, tc := range cases {
			got, err := target.Resolve(ctx, tc.ref)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !errors.Is(err, errdef.ErrNotFound) {
					t.Errorf("%T Resolve(%q) error %v, want %v and errdef.ErrNotFound", target, tc.ref, err, tc.err)
				}
				continue
			}
			if err != nil || got.Digest != tc.want.Digest || got.Size != tc.want.Size || got.MediaType != tc.want.MediaType {
				t.Errorf("%T Resolve(%q) = %v %v %d, %v; want %v %v %d", target, tc.ref, got.MediaType, got.Digest, got.Size, err, tc.want.MediaType, tc.want.Digest, tc.want.Size)
			}
		}
	}
	// Two roots answering to one name are ambiguous.
	idx := fx.index
	idx.Manifests = slices.Clone(idx.Manifests)
	idx.Manifests[1].Annotations = map[string]string{AnnotationContainerdName: "same"}
	idx.Manifests[2].Annotations = map[string]string{AnnotationContainerdName: "same"}
	p2 := filepath.Join(t.TempDir(), "x.tar")
	if _, err := WriteTar(ctx, p2, fx.blobs, idx, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lt2, err := OpenTar(ctx, p2)
	if err != nil {
		t.Fatal(err)
	}
	defer lt2.Close()
	if _, err := lt2.Resolve(ctx, "same"); !errors.Is(err, ErrConflictingRef) {
		t.Errorf("ambiguous Resolve error %v, want ErrConflictingRef", err)
	}
}

// skipSkipped is a FindSuccessors that leaves out layers listed as skipped.
func skipSkipped(skipped map[digest.Digest]bool) func(context.Context, content.Fetcher, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return func(ctx context.Context, f content.Fetcher, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		succ, err := content.Successors(ctx, f, d)
		return slices.DeleteFunc(succ, func(s ocispec.Descriptor) bool { return skipped[s.Digest] }), err
	}
}

func TestCopyGraphFromLayouts(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := t.TempDir()
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lt, err := OpenTar(ctx, writeFixtureTar(t, fx))
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	ld, err := OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	for name, src := range map[string]interface {
		oras.ReadOnlyTarget
		Roots() []Root
	}{"tar": lt, "dir": ld} {
		t.Run(name, func(t *testing.T) {
			dst := memory.New()
			skipped := map[digest.Digest]bool{}
			for _, r := range src.Roots() {
				for _, l := range r.SkippedLayers {
					skipped[l.Digest] = true
				}
			}
			if !skipped[fx.skipped.Digest] {
				t.Fatalf("roots do not list the skipped layer")
			}
			for _, r := range src.Roots() {
				if err := oras.CopyGraph(ctx, src, dst, r.Desc, oras.CopyGraphOptions{FindSuccessors: skipSkipped(skipped)}); err != nil {
					t.Fatalf("CopyGraph %s: %v", r.Desc.Digest, err)
				}
			}
			for _, d := range fx.blobs {
				if ok, err := dst.Exists(ctx, d); !ok || err != nil {
					t.Errorf("blob %s not copied: %v", d.Digest, err)
				}
			}
			// Copy by reference works as with any oras target.
			desc, err := oras.Copy(ctx, src, "v1", memory.New(), "copied", oras.CopyOptions{})
			if err != nil || desc.Digest != fx.bundle.Digest {
				t.Errorf("oras.Copy v1 = %v, %v", desc.Digest, err)
			}
		})
	}
}

func TestConcurrentFetch(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	lt, err := OpenTar(ctx, writeFixtureTar(t, fx))
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(fx.blobs))
	for range 8 {
		for _, d := range fx.blobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rc, err := lt.Fetch(ctx, d)
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestOpenDirBroken(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	mk := func(t *testing.T, mut func(dir string)) string {
		dir := t.TempDir()
		if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		mut(dir)
		return dir
	}
	rootFile := func(dir string) string { return filepath.Join(dir, "blobs", "sha256", fx.app.Digest.Encoded()) }
	cases := []struct {
		name    string
		mut     func(dir string)
		want    error
		mention string
	}{
		{"no oci-layout", func(dir string) { os.Remove(filepath.Join(dir, "oci-layout")) }, ErrNotLayout, "oci-layout"},
		{"no index.json", func(dir string) { os.Remove(filepath.Join(dir, "index.json")) }, ErrNotLayout, "index.json"},
		{"bad index.json", func(dir string) { os.WriteFile(filepath.Join(dir, "index.json"), []byte("[]"), 0o644) }, ErrMalformedIndex, "index.json"},
		{"missing root", func(dir string) { os.Remove(rootFile(dir)) }, ErrMissingBlob, fx.app.Digest.String()},
		{"root of the wrong size", func(dir string) { os.WriteFile(rootFile(dir), []byte("{}"), 0o644) }, ErrSizeMismatch, fx.app.Digest.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := OpenDir(ctx, mk(t, tc.mut))
			if err == nil {
				d.Close()
				t.Fatal("OpenDir succeeded")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q, want %v naming %q", err, tc.want, tc.mention)
			}
		})
	}
	t.Run("symlink out of the layout", func(t *testing.T) {
		dir := mk(t, func(dir string) {
			p := filepath.Join(dir, "blobs", "sha256", fx.appLay.Digest.Encoded())
			os.Remove(p)
			outside := filepath.Join(t.TempDir(), "secret")
			os.WriteFile(outside, fx.data[fx.appLay.Digest], 0o644)
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
		})
		d, err := OpenDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.Fetch(ctx, fx.appLay); err == nil {
			t.Error("Fetch followed a symlink out of the layout")
		}
	})
}

func TestDirFetchVerifies(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := t.TempDir()
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	lay := fx.appLay
	file := filepath.Join(dir, "blobs", "sha256", lay.Digest.Encoded())
	if ok, err := d.Exists(ctx, lay); !ok || err != nil {
		t.Errorf("Exists = %v, %v", ok, err)
	}

	flipped := slices.Clone(fx.data[lay.Digest])
	flipped[0] ^= 1
	os.WriteFile(file, flipped, 0o644)
	rc, err := d.Fetch(ctx, lay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAllFrom(t, rc); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), lay.Digest.String()) {
		t.Errorf("read error %v, want ErrDigestMismatch naming %s", err, lay.Digest)
	}

	os.WriteFile(file, []byte("short"), 0o644)
	if _, err := d.Fetch(ctx, lay); !errors.Is(err, ErrSizeMismatch) || !strings.Contains(err.Error(), lay.Digest.Encoded()) {
		t.Errorf("Fetch error %v, want ErrSizeMismatch naming the file", err)
	}

	os.Remove(file)
	if _, err := d.Fetch(ctx, lay); !errors.Is(err, ErrMissingBlob) || !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("Fetch error %v, want ErrMissingBlob", err)
	}
	if ok, err := d.Exists(ctx, lay); ok || err != nil {
		t.Errorf("Exists after removal = %v, %v", ok, err)
	}
	problems, err := d.Verify(ctx)
	if err != nil || len(problems) != 1 || !errors.Is(problems[0].Err, ErrMissingBlob) || problems[0].Parent != fx.app.Digest {
		t.Errorf("Verify = %v, %v; want the missing layer", problems, err)
	}
}

// Tars made with "tar -C layout -cf x.tar ." name entries "./..." and hold
// a "./" entry; other tools put index.json last. Both are read.
func TestOpenTarOtherShapes(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	es := layoutEntries(t, fx)
	dotted := []rawEntry{{name: "./", typ: tar.TypeDir}}
	for _, e := range es {
		e.name = "./" + e.name
		dotted = append(dotted, e)
	}
	last := append(slices.Clone(es[2:]), es[1], es[0])
	for name, entries := range map[string][]rawEntry{"dot-slash": dotted, "index last": last} {
		t.Run(name, func(t *testing.T) {
			lt, err := OpenTar(ctx, writeRawTar(t, entries))
			if err != nil {
				t.Fatal(err)
			}
			defer lt.Close()
			problems, err := lt.Verify(ctx)
			if err != nil || len(problems) != 0 || len(lt.Blobs()) != len(fx.blobs) {
				t.Errorf("Verify = %v, %v; %d blobs", problems, err, len(lt.Blobs()))
			}
		})
	}
}
