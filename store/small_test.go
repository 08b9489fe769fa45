package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmallBlobs: a blob of at most smallBlobMax bytes is downloaded whole,
// verified and committed before Fetch returns (one GET), a cut download is
// fetched again whole, wrong bytes fail Fetch and leave nothing behind, and
// the blob file is read-only like the others.
func TestSmallBlobs(t *testing.T) {
	ctx := context.Background()
	blob, desc := randomBlob(t, smallBlobMax)
	tests := []struct {
		name     string
		cut      bool
		corrupt  bool
		wantGets int
		wantErr  error
	}{
		{"whole", false, false, 1, nil},
		{"cut once, fetched again", true, false, 2, nil},
		{"wrong bytes", false, true, 1, ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, blob)
			srv.set(func(b *blobServer) {
				b.corrupt = tt.corrupt
				if tt.cut {
					b.cutAfter, b.cuts = 1000, 1
				}
			})
			s := openStore(t, t.TempDir())
			c := s.Cache(srv.repo(t))
			rc, err := c.Fetch(ctx, desc)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch = %v, want %v", err, tt.wantErr)
				}
				if ok, _ := s.Exists(ctx, desc); ok {
					t.Error("wrong bytes committed")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				// Committed before a byte is read.
				if ok, _ := s.Exists(ctx, desc); !ok {
					t.Error("not committed when Fetch returned")
				}
				if !c.Verifies(desc, rc) {
					t.Error("reader not reported verified")
				}
				if got, err := readAll(rc); err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("content: %d bytes, %v", len(got), err)
				}
				p, _ := s.blobPath(desc.Digest)
				if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o222 != 0 {
					t.Errorf("blob file %v, %v: want read-only", fi.Mode(), err)
				}
				mustVerifyClean(t, s)
			}
			if gets, _, _, _ := srv.stats(); gets != tt.wantGets {
				t.Errorf("%d GETs, want %d", gets, tt.wantGets)
			}
			if u := mustUsage(t, s); u.Partials != 0 {
				t.Errorf("usage %+v: a small blob left a partial", u)
			}
			for _, dir := range []string{tmpDir, "locks"} {
				if entries, _ := os.ReadDir(filepath.Join(s.Root(), dir)); len(entries) != 0 {
					t.Errorf("%d files left in %s", len(entries), dir)
				}
			}
		})
	}
}

func TestPushSmall(t *testing.T) {
	ctx := context.Background()
	blob, desc := randomBlob(t, 1000)
	s := openStore(t, t.TempDir())
	bad := bytes.Clone(blob)
	bad[10] ^= 1
	if err := s.Push(ctx, desc, bytes.NewReader(bad)); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Push of wrong bytes = %v, want ErrDigestMismatch", err)
	}
	if err := s.Push(ctx, desc, bytes.NewReader(blob[:999])); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("Push of short bytes = %v, want ErrSizeMismatch", err)
	}
	if ok, _ := s.Exists(ctx, desc); ok {
		t.Fatal("wrong bytes committed")
	}
	if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Fetch(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(rc); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("content %d bytes, %v", len(got), err)
	}
	// Pushed again: not read.
	if err := s.Push(ctx, desc, io.MultiReader()); err != nil {
		t.Errorf("second Push = %v", err)
	}
}

func TestPruneRemovesStaleTemps(t *testing.T) {
	s := openStore(t, t.TempDir())
	dir := filepath.Join(s.Root(), tmpDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(dir, "blob-stale"), filepath.Join(dir, "blob-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTempAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(t.Context(), PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("a stale temporary file survived Prune")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary file (a writer may hold it) was removed: %v", err)
	}
}

// TestSmallBlobOneDownloadPerProcess: callers fetching the same small blob
// at once share one download (the others wait for it and read the committed
// blob), so the source serves its bytes once.
func TestSmallBlobOneDownloadPerProcess(t *testing.T) {
	ctx := context.Background()
	blob, desc := randomBlob(t, 200<<10) // 7 chunks of 32 KiB: the first download is still running when the others ask
	srv := newBlobServer(t, blob)
	srv.set(func(b *blobServer) { b.chunkDelay = 20 * time.Millisecond })
	s := openStore(t, t.TempDir())
	c := s.Cache(srv.repo(t))
	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() {
			rc, err := c.Fetch(ctx, desc)
			if err != nil {
				errs <- err
				return
			}
			got, err := readAll(rc)
			if err == nil && !bytes.Equal(got, blob) {
				err = errors.New("wrong content")
			}
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if gets, _, body, _ := srv.stats(); gets != 1 || body != int64(len(blob)) {
		t.Errorf("%d GETs, %d body bytes: want 1 GET of %d bytes", gets, body, len(blob))
	}
	mustVerifyClean(t, s)
}

// TestWriteSmallPaths: writeSmall commits the same read-only bytes whether
// it links an unnamed file (Linux), falls back to a named temporary file
// (elsewhere, or where unnamed files are not available), or finds a file at
// the blob's path already (replaced: the caller saw none, so it is not a
// committed copy of these bytes); no temporary file is left either way.
func TestWriteSmallPaths(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		noAnonymous bool // as if the system had no unnamed temporary files
		existing    []byte
	}{
		{"default", false, nil},
		{"named temporary file", true, nil},
		{"file in the way", false, []byte("left over")},
		{"file in the way, named temporary file", true, []byte("left over")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			s.noAnonymous.Store(tt.noAnonymous)
			blob, desc := randomBlob(t, 3000)
			p, _ := s.blobPath(desc.Digest)
			if tt.existing != nil {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tt.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.writeSmall(desc, blob); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("blob file: %d bytes, %v; want the %d bytes written", len(got), err, len(blob))
			}
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o222 != 0 || fi.Mode().Perm()&0o400 == 0 {
				t.Errorf("blob file mode %v, %v: want read-only", fi.Mode(), err)
			}
			if entries, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir)); len(entries) != 0 {
				t.Errorf("%d files left in %s", len(entries), tmpDir)
			}
			if ok, err := s.Exists(ctx, desc); !ok || err != nil {
				t.Errorf("Exists = %v, %v", ok, err)
			}
			mustVerifyClean(t, s)
		})
	}
}

func TestReadSmall(t *testing.T) {
	tests := []struct {
		name    string
		content string
		size    int64
		want    string
	}{
		{"exact", "abcd", 4, "abcd"},
		{"short", "ab", 4, "ab"},
		{"one too many", "abcde", 4, "abcde"},
		{"far too many", "abcdefgh", 4, "abcde"},
		{"empty", "", 0, ""},
		{"empty, got more", "x", 0, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readSmall(strings.NewReader(tt.content), tt.size)
			if err != nil || string(got) != tt.want {
				t.Errorf("readSmall = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := readSmall(io.MultiReader(strings.NewReader("ab"), failedFetch{boom}), 4); !errors.Is(err, boom) {
		t.Errorf("readSmall of a failing reader = %v, want %v", err, boom)
	}
}

// TestSpoiltSmallBlob: small blobs are not synced when written, so after a
// power loss the file of one may be empty, short or hold other bytes. A
// process that did not write it (a new Store) hashes it before trusting it:
// such a file counts as absent (Exists false, Fetch and BlobPath
// ErrNotFound), and fetching or pushing the blob again replaces it. A file
// that does hold the blob still reports a descriptor of the wrong size.
func TestSpoiltSmallBlob(t *testing.T) {
	ctx := context.Background()
	blob, desc := randomBlob(t, 5000)
	tests := []struct {
		name  string
		spoil func([]byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"short", func(b []byte) []byte { return b[:len(b)/2] }},
		{"zeros", func(b []byte) []byte { return make([]byte, len(b)) }},
		{"one bit", func(b []byte) []byte { c := bytes.Clone(b); c[4000] ^= 1; return c }},
	}
	for _, tt := range tests {
		for _, refill := range []string{"Cache.Fetch", "Push"} {
			t.Run(tt.name+"/"+refill, func(t *testing.T) {
				root := t.TempDir()
				writer := openStore(t, root)
				if err := writer.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
					t.Fatal(err)
				}
				p, _ := writer.blobPath(desc.Digest)
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tt.spoil(blob), 0o644); err != nil {
					t.Fatal(err)
				}
				s := openStore(t, root) // the next process
				if ok, err := s.Exists(ctx, desc); ok || err != nil {
					t.Errorf("Exists = %v, %v; want false, nil", ok, err)
				}
				if _, err := s.Fetch(ctx, desc); !errors.Is(err, ErrNotFound) {
					t.Errorf("Fetch = %v, want ErrNotFound", err)
				}
				if _, err := s.BlobPath(desc.Digest); !errors.Is(err, ErrNotFound) {
					t.Errorf("BlobPath = %v, want ErrNotFound", err)
				}
				switch refill {
				case "Cache.Fetch":
					srv := newBlobServer(t, blob)
					rc, err := s.Cache(srv.repo(t)).Fetch(ctx, desc)
					if err != nil {
						t.Fatal(err)
					}
					if got, err := readAll(rc); err != nil || !bytes.Equal(got, blob) {
						t.Fatalf("Cache.Fetch: %d bytes, %v", len(got), err)
					}
					if gets, _, _, _ := srv.stats(); gets != 1 {
						t.Errorf("%d GETs, want 1", gets)
					}
				case "Push":
					if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
						t.Fatal(err)
					}
				}
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("blob file after %s: %d bytes, %v; want the blob", refill, len(got), err)
				}
				next := openStore(t, root)
				if ok, err := next.Exists(ctx, desc); !ok || err != nil {
					t.Errorf("Exists after %s = %v, %v", refill, ok, err)
				}
				wrong := desc
				wrong.Size++
				if _, err := openStore(t, root).Exists(ctx, wrong); !errors.Is(err, ErrSizeMismatch) {
					t.Errorf("Exists with the wrong size = %v, want ErrSizeMismatch", err)
				}
				mustVerifyClean(t, next)
			})
		}
	}
}
