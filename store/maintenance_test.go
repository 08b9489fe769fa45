package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushBlobs pushes n random blobs of size bytes and returns their descriptors.
func pushBlobs(t *testing.T, s *Store, n, size int) []ocispec.Descriptor {
	t.Helper()
	var descs []ocispec.Descriptor
	for range n {
		blob, desc := randomBlob(t, size)
		if err := s.Push(context.Background(), desc, bytes.NewReader(blob)); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, desc)
	}
	return descs
}

// setLastUse sets the recorded last use of a committed blob.
func setLastUse(t *testing.T, s *Store, d digest.Digest, when time.Time) {
	t.Helper()
	p, _ := s.blobPath(d)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
}

// makePartial leaves a partial ingest of n bytes of blob, last written at when.
func makePartial(t *testing.T, s *Store, blob []byte, n int, when time.Time) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	desc := descOf(blob)
	lock, err := s.lockIngest(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()
	w, err := s.openWriter(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(blob[:n]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.root, "ingest", digest.FromString(desc.Digest.String()).Encoded())
	stamp, _ := when.MarshalText()
	if err := os.WriteFile(filepath.Join(dir, "updatedat"), stamp, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "data"), when, when); err != nil {
		t.Fatal(err)
	}
	return desc
}

func TestListAndDiskUsage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	if u := mustUsage(t, s); u != (Usage{}) {
		t.Errorf("empty store usage %+v", u)
	}
	descs := pushBlobs(t, s, 3, 1000)
	descs = append(descs, pushBlobs(t, s, 1, 5000)...)
	partial, _ := randomBlob(t, 4000)
	makePartial(t, s, partial, 1500, time.Now())

	if u := mustUsage(t, s); u != (Usage{Blobs: 4, Bytes: 8000, Partials: 1, PartialBytes: 1500}) {
		t.Errorf("usage %+v", u)
	}
	var listed []BlobInfo
	if err := s.List(ctx, func(b BlobInfo) error { listed = append(listed, b); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(descs, func(a, b ocispec.Descriptor) int { return cmpString(a.Digest.String(), b.Digest.String()) })
	if len(listed) != len(descs) {
		t.Fatalf("List gave %d blobs, want %d", len(listed), len(descs))
	}
	for i, b := range listed {
		if b.Digest != descs[i].Digest || b.Size != descs[i].Size || time.Since(b.LastUsed) > time.Minute {
			t.Errorf("List[%d] = %+v, want %s of %d bytes used just now", i, b, descs[i].Digest, descs[i].Size)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.List(ctx, func(BlobInfo) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("List with a failing callback = %v after %d calls", err, n)
	}
	partials, err := s.Partials(ctx)
	if err != nil || len(partials) != 1 || partials[0].Ref != descOf(partial).Digest.String() || partials[0].Size != 1500 || partials[0].Total != 4000 {
		t.Errorf("Partials = %+v, %v", partials, err)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestFetchRecordsLastUse(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	desc := pushBlobs(t, s, 1, 100)[0]
	old := time.Now().Add(-48 * time.Hour)
	lastUse := func() time.Time {
		var got time.Time
		_ = s.List(ctx, func(b BlobInfo) error { got = b.LastUsed; return nil })
		return got
	}
	for name, use := range map[string]func() error{
		"Fetch": func() error { rc, err := s.Fetch(ctx, desc); rc.Close(); return err },
		"Cache.Fetch": func() error {
			rc, err := s.Cache(nil).Fetch(ctx, desc)
			rc.Close()
			return err
		},
		"BlobPath": func() error { _, err := s.BlobPath(desc.Digest); return err },
	} {
		setLastUse(t, s, desc.Digest, old)
		if err := use(); err != nil {
			t.Fatal(err)
		}
		if got := lastUse(); time.Since(got) > time.Minute {
			t.Errorf("%s: last use %v, want now", name, got)
		}
	}
	// A use within useGranularity of the recorded one is not written.
	recent := time.Now().Add(-useGranularity / 2).Truncate(time.Second)
	for name, use := range map[string]func() error{
		"Fetch":    func() error { rc, err := s.Fetch(ctx, desc); rc.Close(); return err },
		"BlobPath": func() error { _, err := s.BlobPath(desc.Digest); return err },
	} {
		setLastUse(t, s, desc.Digest, recent)
		if err := use(); err != nil {
			t.Fatal(err)
		}
		if got := lastUse(); !got.Equal(recent) {
			t.Errorf("%s: last use %v rewritten, want %v kept (within %v)", name, got, recent, useGranularity)
		}
	}
	// Exists and Verify are not uses.
	setLastUse(t, s, desc.Digest, old)
	if _, err := s.Exists(ctx, desc); err != nil {
		t.Fatal(err)
	}
	mustVerifyClean(t, s)
	if got := lastUse(); !got.Equal(old) {
		t.Errorf("Exists/Verify changed the last use to %v", got)
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	descs := pushBlobs(t, s, 3, 2000)
	bad := descs[1]
	p, _ := s.blobPath(bad.Digest)
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(s.root, "blobs", "sha256", "not-a-digest")
	if err := os.WriteFile(stray, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	problems, err := s.Verify(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 {
		t.Fatalf("Verify found %d problems, want 2: %+v", len(problems), problems)
	}
	byPath := map[string]Problem{}
	for _, pr := range problems {
		byPath[pr.Path] = pr
	}
	if pr := byPath[p]; pr.Digest != bad.Digest || !errors.Is(pr.Err, ErrDigestMismatch) || pr.Removed {
		t.Errorf("corrupt blob problem %+v", pr)
	}
	if pr := byPath[stray]; !errors.Is(pr.Err, ErrInvalidDescriptor) || pr.Removed {
		t.Errorf("stray entry problem %+v", pr)
	}
	if _, err := os.Stat(p); err != nil {
		t.Error("Verify without fix removed the corrupt blob")
	}

	problems, err = s.Verify(ctx, true)
	if err != nil || len(problems) != 2 || !problems[0].Removed || !problems[1].Removed {
		t.Fatalf("Verify(fix) = %+v, %v; want both removed", problems, err)
	}
	mustVerifyClean(t, s)
	for _, d := range descs {
		ok, err := s.Exists(ctx, d)
		if err != nil || ok != (d.Digest != bad.Digest) {
			t.Errorf("Exists(%s) = %v, %v after the fix", d.Digest, ok, err)
		}
	}
}

func TestPrune(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name        string
		opts        PruneOptions
		wantRemoved []int // indexes of the blobs removed, oldest first
		wantPartial bool  // the stale partial is removed
	}{
		{"zero options remove nothing", PruneOptions{}, nil, false},
		{"by age", PruneOptions{OlderThan: 90 * time.Minute}, []int{0, 1}, false},
		{"by budget", PruneOptions{MaxBytes: 2500}, []int{0, 1}, false},
		{"budget already met", PruneOptions{MaxBytes: 4000}, nil, false},
		{"age and budget", PruneOptions{OlderThan: 150 * time.Minute, MaxBytes: 1000}, []int{0, 1, 2}, false},
		{"stale partials", PruneOptions{StalePartialsOlderThan: 24 * time.Hour}, nil, true},
		{"dry run", PruneOptions{OlderThan: time.Minute, StalePartialsOlderThan: time.Hour, DryRun: true}, []int{0, 1, 2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openStore(t, t.TempDir())
			// Blobs of 1000 bytes last used 3 h, 2 h and 1 h ago, and
			// one used now.
			descs := pushBlobs(t, s, 4, 1000)
			for i, d := range descs[:3] {
				setLastUse(t, s, d.Digest, now.Add(-time.Duration(3-i)*time.Hour))
			}
			stale, _ := randomBlob(t, 3000)
			makePartial(t, s, stale, 1000, now.Add(-48*time.Hour))
			fresh, _ := randomBlob(t, 3000)
			makePartial(t, s, fresh, 500, now)
			before := mustUsage(t, s)

			res, err := s.Prune(ctx, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []digest.Digest
			for _, b := range res.Removed {
				got = append(got, b.Digest)
			}
			var want []digest.Digest
			for _, i := range tt.wantRemoved {
				want = append(want, descs[i].Digest)
			}
			if !slices.Equal(got, want) || res.Bytes != int64(1000*len(want)) {
				t.Errorf("removed %v (%d bytes), want %v", got, res.Bytes, want)
			}
			wantPartials, wantPartialBytes := 0, int64(0)
			if tt.wantPartial {
				wantPartials, wantPartialBytes = 1, 1000
			}
			if res.Partials != wantPartials || res.PartialBytes != wantPartialBytes {
				t.Errorf("removed %d partials (%d bytes), want %d (%d)", res.Partials, res.PartialBytes, wantPartials, wantPartialBytes)
			}
			after := mustUsage(t, s)
			if tt.opts.DryRun {
				if after != before {
					t.Errorf("dry run changed the store: %+v -> %+v", before, after)
				}
				return
			}
			if after.Blobs != before.Blobs-len(want) || after.Partials != before.Partials-wantPartials {
				t.Errorf("usage %+v -> %+v", before, after)
			}
			for i, d := range descs {
				ok, _ := s.Exists(ctx, d)
				if ok == slices.Contains(tt.wantRemoved, i) {
					t.Errorf("blob %d: exists=%v after prune", i, ok)
				}
			}
			mustVerifyClean(t, s)
		})
	}
}

func TestPruneSkipsBusyIngest(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	stale, _ := randomBlob(t, 3000)
	desc := makePartial(t, s, stale, 1000, time.Now().Add(-48*time.Hour))
	lock, err := s.lockIngest(ctx, desc.Digest) // a download in progress
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(ctx, PruneOptions{StalePartialsOlderThan: time.Hour})
	if err != nil || res.Partials != 0 {
		t.Errorf("Prune removed %d partials (%v) held by a download", res.Partials, err)
	}
	lock.release()
	res, err = s.Prune(ctx, PruneOptions{StalePartialsOlderThan: time.Hour})
	if err != nil || res.Partials != 1 {
		t.Errorf("Prune removed %d partials (%v) after the download let go, want 1", res.Partials, err)
	}
	// A lock file left by a process that died holding it is cleaned up.
	dead := s.lockPath(digest.FromString("dead"))
	if err := os.WriteFile(dead, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale lock file kept: %v", err)
	}
}
