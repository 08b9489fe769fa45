package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
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
