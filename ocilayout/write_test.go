package ocilayout

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestWriteTarRoundTrip(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	openers := map[string]BlobOpener{
		"file":   newFileOpener(t, fx.data),
		"stream": streamOpener(fx.data),
	}
	var first []byte
	for _, name := range []string{"file", "stream"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "out.tar")
			var seen []digest.Digest
			dg, err := WriteTar(ctx, p, fx.blobs, fx.index, openers[name], WriteOptions{OnBlob: func(d ocispec.Descriptor) { seen = append(seen, d.Digest) }})
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if want := "sha256:" + hex.EncodeToString(sum[:]); dg.String() != want {
				t.Errorf("WriteTar returned %s, the file hashes to %s", dg, want)
			}
			if len(seen) != len(fx.blobs) || !slices.IsSorted(seen) {
				t.Errorf("OnBlob saw %d digests (sorted: %v), want %d sorted", len(seen), slices.IsSorted(seen), len(fx.blobs))
			}
			if first == nil {
				first = b
			} else if !bytes.Equal(first, b) {
				t.Errorf("the file and stream openers gave different tars")
			}

			lt, err := OpenTar(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			defer lt.Close()
			for _, d := range fx.blobs {
				rc, err := lt.Fetch(ctx, d)
				if err != nil {
					t.Fatalf("Fetch %s: %v", d.Digest, err)
				}
				got, err := readAllFrom(t, rc)
				if err != nil {
					t.Fatalf("read %s: %v", d.Digest, err)
				}
				if !bytes.Equal(got, fx.data[d.Digest]) {
					t.Errorf("blob %s: bytes differ", d.Digest)
				}
			}
			if got, want := string(mustJSON(t, lt.Index())), string(mustJSON(t, fx.index)); got != want {
				t.Errorf("Index() = %s, want %s", got, want)
			}
			if n := len(lt.Blobs()); n != len(fx.blobs) {
				t.Errorf("Blobs() lists %d, want %d", n, len(fx.blobs))
			}
			problems, err := lt.Verify(ctx)
			if err != nil || len(problems) != 0 {
				t.Errorf("Verify = %v, %v; want no problems", problems, err)
			}
		})
	}
}

func TestWriteTarReproducible(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := t.TempDir()
	var tars [2][]byte
	var digests [2]digest.Digest
	for i := range tars {
		// A different blob order in the input must not matter.
		blobs := slices.Clone(fx.blobs)
		if i == 1 {
			slices.Reverse(blobs)
			blobs = append(blobs, blobs[0]) // duplicates are written once
		}
		p := filepath.Join(dir, "out.tar")
		dg, err := WriteTar(ctx, p, blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tars[i], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		digests[i] = dg
		time.Sleep(10 * time.Millisecond) // a clock in the headers would show
	}
	if !bytes.Equal(tars[0], tars[1]) || digests[0] != digests[1] {
		t.Fatalf("two writes differ: %s vs %s", digests[0], digests[1])
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"out.tar"}) {
		t.Errorf("directory holds %v, want only out.tar", got)
	}
}

func TestWriteTarEntries(t *testing.T) {
	fx := newFixture(t)
	p := writeFixtureTar(t, fx)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o644 {
		t.Errorf("tar mode %v, want 0644", fi.Mode().Perm())
	}
	want := []string{"oci-layout", "index.json", "blobs/", "blobs/sha256/"}
	digests := make([]string, 0, len(fx.blobs))
	for _, d := range fx.blobs {
		digests = append(digests, blobPath(d.Digest))
	}
	slices.Sort(digests)
	want = append(want, digests...)
	tr := tar.NewReader(f)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name)
		mode := int64(0o644)
		if h.Typeflag == tar.TypeDir {
			mode = 0o755
		}
		if h.Mode != mode || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) || h.Format != tar.FormatUSTAR {
			t.Errorf("%s: mode %o uid %d gid %d uname %q gname %q mtime %v format %v; want fixed metadata, USTAR", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime, h.Format)
		}
		if h.Name == "oci-layout" {
			b, _ := io.ReadAll(tr)
			if string(b) != `{"imageLayoutVersion":"1.0.0"}` {
				t.Errorf("oci-layout = %s", b)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries\n%v\nwant\n%v", got, want)
	}
}

func TestHeaderLargeSizeUsesPAX(t *testing.T) {
	const size = 9 << 30
	h, err := header("blobs/sha256/"+strings.Repeat("a", 64), tar.TypeReg, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) <= blockSize || len(h)%blockSize != 0 {
		t.Fatalf("header is %d bytes, want a PAX header plus the entry header", len(h))
	}
	hdr, err := tar.NewReader(bytes.NewReader(h)).Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Size != size || hdr.Format != tar.FormatPAX || !hdr.ModTime.Equal(time.Unix(0, 0)) {
		t.Errorf("size %d format %v mtime %v; want %d, PAX, epoch", hdr.Size, hdr.Format, hdr.ModTime, int64(size))
	}
	// A long name (sha512) also fits.
	h, err = header("blobs/sha512/"+strings.Repeat("b", 128), tar.TypeReg, 10)
	if err != nil {
		t.Fatal(err)
	}
	if hdr, err = tar.NewReader(bytes.NewReader(h)).Next(); err != nil || hdr.Name != "blobs/sha512/"+strings.Repeat("b", 128) {
		t.Errorf("long name: %v, %v", hdr, err)
	}
}

// wrongOpener serves altered bytes for one digest.
type wrongOpener struct {
	BlobOpener
	d    digest.Digest
	body []byte
	file bool
}

func (w wrongOpener) OpenBlob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if d.Digest != w.d {
		return w.BlobOpener.OpenBlob(ctx, d)
	}
	if w.file {
		p := filepath.Join(os.TempDir(), "ferry-wrong-"+d.Digest.Encoded())
		if err := os.WriteFile(p, w.body, 0o644); err != nil {
			return nil, err
		}
		f, err := os.Open(p)
		os.Remove(p)
		return f, err
	}
	if w.body == nil {
		return nil, errors.New("store is broken")
	}
	return io.NopCloser(bytes.NewReader(w.body)), nil
}

func TestWriteTarErrors(t *testing.T) {
	fx := newFixture(t)
	lay := fx.data[fx.appLay.Digest]
	src := streamOpener(fx.data)
	cases := []struct {
		name    string
		blobs   []ocispec.Descriptor
		index   ocispec.Index
		src     BlobOpener
		want    error
		mention string
	}{
		{"longer stream", fx.blobs, fx.index, wrongOpener{src, fx.appLay.Digest, append(slices.Clone(lay), 'x'), false}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"shorter stream", fx.blobs, fx.index, wrongOpener{src, fx.appLay.Digest, lay[:10], false}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"longer file", fx.blobs, fx.index, wrongOpener{src, fx.appLay.Digest, append(slices.Clone(lay), 'x'), true}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"shorter file", fx.blobs, fx.index, wrongOpener{src, fx.appLay.Digest, lay[:10], true}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"open error", fx.blobs, fx.index, wrongOpener{src, fx.appLay.Digest, nil, false}, nil, fx.appLay.Digest.String()},
		{"root not among blobs", slices.DeleteFunc(slices.Clone(fx.blobs), func(d ocispec.Descriptor) bool { return d.Digest == fx.app.Digest }), fx.index, src, ErrMissingBlob, fx.app.Digest.String()},
		{"invalid digest", append(slices.Clone(fx.blobs), ocispec.Descriptor{Digest: "sha256:../../etc", Size: 1}), fx.index, src, ErrInvalidDescriptor, "sha256:../../etc"},
		{"two sizes", append(slices.Clone(fx.blobs), ocispec.Descriptor{Digest: fx.appLay.Digest, Size: 1}), fx.index, src, ErrInvalidDescriptor, fx.appLay.Digest.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := WriteTar(context.Background(), filepath.Join(dir, "out.tar"), tc.blobs, tc.index, tc.src, WriteOptions{})
			if err == nil {
				t.Fatal("WriteTar succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not name %s", err, tc.mention)
			}
			if left := listDir(t, dir); len(left) != 0 {
				t.Errorf("files left behind: %v", left)
			}
		})
	}
}

func TestWriteTarCancel(t *testing.T) {
	fx := newFixture(t)
	for _, name := range []string{"file", "stream"} {
		t.Run(name, func(t *testing.T) {
			var src BlobOpener = streamOpener(fx.data)
			if name == "file" {
				src = newFileOpener(t, fx.data)
			}
			ctx, cancel := context.WithCancel(context.Background())
			dir := t.TempDir()
			n := 0
			_, err := WriteTar(ctx, filepath.Join(dir, "out.tar"), fx.blobs, fx.index, src, WriteOptions{OnBlob: func(ocispec.Descriptor) {
				if n++; n == 2 {
					cancel()
				}
			}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if left := listDir(t, dir); len(left) != 0 {
				t.Errorf("files left behind: %v", left)
			}
		})
	}
}

func TestWriteTarSkipDigest(t *testing.T) {
	fx := newFixture(t)
	p := filepath.Join(t.TempDir(), "out.tar")
	dg, err := WriteTar(context.Background(), p, fx.blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{SkipDigest: true})
	if err != nil || dg != "" {
		t.Fatalf("WriteTar = %q, %v; want no digest", dg, err)
	}
	withDigest := writeFixtureTar(t, fx)
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(withDigest)
	if !bytes.Equal(a, b) {
		t.Error("SkipDigest changed the tar's bytes")
	}
}

func TestWriteDir(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := filepath.Join(t.TempDir(), "layout")
	var n int
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{OnBlob: func(ocispec.Descriptor) { n++ }}); err != nil {
		t.Fatal(err)
	}
	if n != len(fx.blobs) {
		t.Errorf("OnBlob called %d times, want %d", n, len(fx.blobs))
	}
	d, err := OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range fx.blobs {
		rc, err := d.Fetch(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAllFrom(t, rc)
		if err != nil || !bytes.Equal(got, fx.data[b.Digest]) {
			t.Errorf("blob %s: %v, equal=%v", b.Digest, err, bytes.Equal(got, fx.data[b.Digest]))
		}
	}
	if problems, err := d.Verify(ctx); err != nil || len(problems) != 0 {
		t.Errorf("Verify = %v, %v", problems, err)
	}
	d.Close()
	if left := listDir(t, filepath.Join(dir, "blobs", "sha256")); len(left) != len(fx.blobs) {
		t.Errorf("blobs/sha256 holds %d files, want %d (temporary files left?)", len(left), len(fx.blobs))
	}

	// Merge: a second write re-tags the app as v1 (replacing the bundle's
	// entry of that name) and adds nothing else.
	second, err := NewIndex([]Root{{Desc: fx.app, Tag: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(ctx, dir, []ocispec.Descriptor{fx.app, fx.appLay, fx.blobs[1]}, second, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err = OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for _, m := range d.Index().Manifests {
		names = append(names, m.Annotations[AnnotationRefName])
	}
	want := []string{DigestTag(fx.app.Digest), DigestTag(fx.multi.Digest), DigestTag(fx.foreign.Digest), "v1"}
	if !slices.Equal(names, want) {
		t.Errorf("merged ref names %v, want %v", names, want)
	}
	if got, err := d.Resolve(ctx, "v1"); err != nil || got.Digest != fx.app.Digest {
		t.Errorf("Resolve(v1) = %v, %v; want the app", got.Digest, err)
	}
}

func TestWriteDirKeepsPresentBlobs(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := t.TempDir()
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A present blob of the right size is not rewritten (nor hashed); Verify
	// is what finds it corrupt.
	p := filepath.Join(dir, "blobs", "sha256", fx.appLay.Digest.Encoded())
	bad := bytes.Repeat([]byte{'z'}, int(fx.appLay.Size))
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, bad) {
		t.Fatal("present blob was rewritten")
	}
	d, err := OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	problems, err := d.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Digest != fx.appLay.Digest || !errors.Is(problems[0].Err, ErrDigestMismatch) {
		t.Errorf("problems %v, want one digest mismatch for %s", problems, fx.appLay.Digest)
	}
	// A blob of the wrong size is replaced.
	if err := os.WriteFile(p, []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, fx.data[fx.appLay.Digest]) {
		t.Error("blob of the wrong size was not replaced")
	}
}

func TestWriteDirErrors(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	t.Run("other layout version", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"2.0.0"}`), 0o644)
		err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{})
		if !errors.Is(err, ErrNotLayout) || !strings.Contains(err.Error(), "2.0.0") {
			t.Errorf("error %v, want ErrNotLayout naming the version", err)
		}
	})
	t.Run("malformed existing index.json", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{`), 0o644)
		err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{})
		if !errors.Is(err, ErrMalformedIndex) || !strings.Contains(err.Error(), "index.json") {
			t.Errorf("error %v, want ErrMalformedIndex naming index.json", err)
		}
	})
	t.Run("size mismatch", func(t *testing.T) {
		dir := t.TempDir()
		src := wrongOpener{streamOpener(fx.data), fx.appLay.Digest, []byte("x"), true}
		err := WriteDir(ctx, dir, fx.blobs, fx.index, src, WriteOptions{})
		if !errors.Is(err, ErrSizeMismatch) || !strings.Contains(err.Error(), fx.appLay.Digest.String()) {
			t.Errorf("error %v, want ErrSizeMismatch naming %s", err, fx.appLay.Digest)
		}
		// The directory was empty: what WriteDir added (oci-layout, the
		// blobs written before the failure, blobs/) is removed again.
		if left := listDir(t, dir); len(left) != 0 {
			t.Errorf("left after the failure: %v, want nothing", left)
		}
	})
}
