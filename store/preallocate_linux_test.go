//go:build linux

package store

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// allocated is the disk space the file at path holds.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// preallocate reserves the blocks of a blob without changing the file's
// size, refuses a size the filesystem cannot take, and
// releasePreallocated gives the reservation back.
func TestPreallocate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 8 << 20
	preallocate(path, 0, n)
	if got := allocated(t, path); got < n {
		f, _ := os.OpenFile(path, os.O_WRONLY, 0)
		err := syscall.Fallocate(int(f.Fd()), 1, 0, n)
		f.Close()
		if err != nil {
			t.Skipf("SKIP: the filesystem of %s cannot preallocate: %v", path, err)
		}
		t.Fatalf("%d bytes allocated after preallocate, want at least %d", got, n)
	}
	if fi, _ := os.Stat(path); fi.Size() != 4096 {
		t.Errorf("size %d after preallocate, want 4096 (unchanged)", fi.Size())
	}
	releasePreallocated(path)
	if got := allocated(t, path); got >= n {
		t.Errorf("%d bytes allocated after releasePreallocated, want about 4096", got)
	}
	preallocate(path, 0, 1<<60) // more than any disk: a lying descriptor
	if got := allocated(t, path); got >= n {
		t.Errorf("%d bytes allocated after preallocating 1 EiB, want nothing reserved", got)
	}
}

func TestRoomFor(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		avail, n int64
		want     bool
	}{
		{gib, 100 << 20, true},
		{gib, gib - preallocSpare, true},
		{gib, gib - preallocSpare + 1, false},
		{gib, gib, false},
		{gib, math.MaxInt64, false}, // n + spare would wrap
		{preallocSpare - 1, 1, false},
		{gib, 0, false},
		{gib, -1, false},
	} {
		if got := roomFor(tc.avail, tc.n); got != tc.want {
			t.Errorf("roomFor(%d, %d) = %v, want %v", tc.avail, tc.n, got, tc.want)
		}
	}
}

// failAfter reads n zero bytes, then fails.
type failAfter struct{ n int64 }

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("source cut")
	}
	k := min(int64(len(p)), f.n)
	clear(p[:k])
	f.n -= k
	return int(k), nil
}

// A push cut half way keeps its partial without the blocks reserved for
// the rest of the blob.
func TestCutPushGivesBackReservation(t *testing.T) {
	s := openStore(t, t.TempDir())
	const size = 32 << 20
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString("32 MiB that never come"), Size: size}
	if err := s.Push(context.Background(), desc, &failAfter{n: 1 << 20}); err == nil {
		t.Fatal("Push of a cut source succeeded")
	}
	path := s.ingestDataPath(desc.Digest.String())
	if _, err := os.Stat(path); err != nil {
		t.Skipf("SKIP: no partial kept to look at: %v", err)
	}
	if got := allocated(t, path); got >= size/2 {
		t.Errorf("the partial holds %d bytes of disk after the cut push, want about 1 MiB", got)
	}
}
