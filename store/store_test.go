package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

func TestDefaultRoot(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
		err  error
	}{
		{"FERRY_STORE wins", map[string]string{"FERRY_STORE": "/s", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/s", nil},
		{"XDG_CACHE_HOME", map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/ferry/store", nil},
		{"relative XDG_CACHE_HOME is ignored", map[string]string{"XDG_CACHE_HOME": "x", "HOME": "/h"}, "/h/.cache/ferry/store", nil},
		{"HOME", map[string]string{"HOME": "/h"}, "/h/.cache/ferry/store", nil},
		{"nothing", map[string]string{}, "", ErrNoLocation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultRoot(func(k string) string { return tt.env[k] })
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("DefaultRoot = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestOpenCreatesRoot0700(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b", "store")
	s := openStore(t, root)
	if s.Root() != root {
		t.Errorf("Root() = %q, want %q", s.Root(), root)
	}
	for _, dir := range []string{root, filepath.Dir(root)} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s: mode %o, want 700", dir, got)
		}
	}
	// Opening it again works and leaves it alone.
	openStore(t, root)

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), file); err == nil {
		t.Errorf("Open(%s) of a file succeeded", file)
	}
	if _, err := Open(context.Background(), ""); !errors.Is(err, ErrNoLocation) {
		t.Errorf("Open(\"\") = %v, want ErrNoLocation", err)
	}
}

func TestPushFetchExists(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	blob, desc := randomBlob(t, 100_000)

	if ok, err := s.Exists(ctx, desc); err != nil || ok {
		t.Fatalf("Exists before Push = %v, %v", ok, err)
	}
	_, err := s.Fetch(ctx, desc)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, errdef.ErrNotFound) || !strings.Contains(err.Error(), desc.Digest.String()) {
		t.Fatalf("Fetch before Push = %v, want ErrNotFound naming the digest", err)
	}
	if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(ctx, desc); err != nil || !ok {
		t.Fatalf("Exists after Push = %v, %v", ok, err)
	}
	rc, err := s.Fetch(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(rc)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("Fetch returned %d bytes (%v), want the %d pushed", len(got), err, len(blob))
	}
	// Pushing again is not an error and does not read the reader.
	if err := s.Push(ctx, desc, errReader{}); err != nil {
		t.Errorf("second Push = %v", err)
	}
	p, err := s.BlobPath(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk, err := os.ReadFile(p); err != nil || !bytes.Equal(onDisk, blob) {
		t.Errorf("BlobPath %s does not hold the blob (%v)", p, err)
	}
	if _, err := s.BlobPath(digest.FromString("other")); !errors.Is(err, ErrNotFound) {
		t.Errorf("BlobPath of a missing blob = %v, want ErrNotFound", err)
	}
	// A descriptor with another size for the same digest is refused.
	wrong := desc
	wrong.Size++
	if _, err := s.Exists(ctx, wrong); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("Exists with a wrong size = %v, want ErrSizeMismatch", err)
	}
	if _, err := s.Fetch(ctx, wrong); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("Fetch with a wrong size = %v, want ErrSizeMismatch", err)
	}
	mustVerifyClean(t, s)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestPushRefusesBadContent(t *testing.T) {
	blob, desc := randomBlob(t, 5000)
	other := bytes.Clone(blob)
	other[100] ^= 1
	tests := []struct {
		name    string
		content []byte
		want    error
	}{
		{"wrong bytes", other, ErrDigestMismatch},
		{"short", blob[:4999], ErrSizeMismatch},
		{"long", append(bytes.Clone(blob), 'x'), ErrSizeMismatch},
		{"empty", nil, ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openStore(t, t.TempDir())
			err := s.Push(ctx, desc, bytes.NewReader(tt.content))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), desc.Digest.String()) {
				t.Fatalf("Push = %v, want %v naming the digest", err, tt.want)
			}
			if ok, err := s.Exists(ctx, desc); err != nil || ok {
				t.Errorf("Exists after a refused Push = %v, %v", ok, err)
			}
			if u := mustUsage(t, s); u != (Usage{}) {
				t.Errorf("usage after a refused Push = %+v, want nothing", u)
			}
			// The right content is accepted afterwards.
			if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInvalidDescriptor(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	for _, desc := range []ocispec.Descriptor{
		{Digest: "sha256:nothex", Size: 1},
		{Digest: digest.FromString("x"), Size: -1},
		{},
	} {
		if _, err := s.Exists(ctx, desc); !errors.Is(err, ErrInvalidDescriptor) {
			t.Errorf("Exists(%v) = %v, want ErrInvalidDescriptor", desc, err)
		}
		if err := s.Push(ctx, desc, strings.NewReader("x")); !errors.Is(err, ErrInvalidDescriptor) {
			t.Errorf("Push(%v) = %v, want ErrInvalidDescriptor", desc, err)
		}
		if _, err := s.Cache(nil).Fetch(ctx, desc); !errors.Is(err, ErrInvalidDescriptor) {
			t.Errorf("Cache.Fetch(%v) = %v, want ErrInvalidDescriptor", desc, err)
		}
	}
}

func TestPushWaitsForConcurrentWriter(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s1, s2 := openStore(t, root), openStore(t, root)
	// Over smallBlobMax: smaller blobs take no ingest lock (see smallBlobMax).
	blob, desc := randomBlob(t, smallBlobMax+10_000)
	lock, err := s1.lockIngest(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s2.Push(ctx, desc, bytes.NewReader(blob)) }()
	select {
	case err := <-done:
		t.Fatalf("Push returned (%v) while another holder had the ingest lock", err)
	default:
	}
	lock.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ok, _ := s1.Exists(ctx, desc); !ok {
		t.Error("blob not committed")
	}
	// Waiting ends with the context.
	lock, err = s1.lockIngest(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s2.lockIngest(cctx, desc.Digest); !errors.Is(err, context.Canceled) {
		t.Errorf("lockIngest with a cancelled context = %v, want context.Canceled", err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "locks"))
	if len(entries) != 1 {
		t.Errorf("locks/ holds %d files, want only the held lock's", len(entries))
	}
}

// TestValidDigest: the store's digest check agrees with go-digest's.
func TestValidDigest(t *testing.T) {
	hex64 := strings.Repeat("0123456789abcdef", 4)
	for _, d := range []digest.Digest{
		digest.Digest("sha256:" + hex64),
		digest.Digest("sha256:" + strings.ToUpper(hex64)),
		digest.Digest("sha256:" + hex64[:63]),
		digest.Digest("sha256:" + hex64 + "0"),
		digest.Digest("sha256:" + hex64[:63] + "g"),
		digest.Digest("sha512:" + hex64 + hex64),
		digest.Digest("sha512:" + hex64),
		digest.Digest("md5:" + hex64[:32]),
		digest.Digest(hex64),
		digest.Digest(""),
		digest.Digest("sha256:"),
	} {
		want := d.Validate() == nil
		err := validDigest(d)
		if (err == nil) != want {
			t.Errorf("validDigest(%q) = %v, want valid %v", d, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidDescriptor) {
			t.Errorf("validDigest(%q) = %v, want ErrInvalidDescriptor", d, err)
		}
	}
}
