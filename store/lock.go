package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"
	"github.com/opencontainers/go-digest"
)

// ingestLock is an exclusive, cross-process lock on the ingest of one digest:
// flock(2) on locks/<alg>-<hex>.lock. flock locks belong to an open file, so
// two goroutines of one process exclude each other as well.
//
// The holder removes the lock file before it unlocks, so lock files do not
// pile up. A waiter that gets the lock on a file that has meanwhile been
// removed (or replaced) notices it by comparing the locked file with the path
// and tries again.
type ingestLock struct {
	f    *flock.Flock
	path string
}

func (s *Store) lockPath(d digest.Digest) string {
	return filepath.Join(s.root, "locks", d.Algorithm().String()+"-"+d.Encoded()+".lock")
}

// lockIngest waits until it holds the ingest lock of d or ctx ends.
func (s *Store) lockIngest(ctx context.Context, d digest.Digest) (*ingestLock, error) {
	path := s.lockPath(d)
	for {
		f := flock.New(path, flock.SetPermissions(0o600))
		ok, err := f.TryLockContext(ctx, lockPoll)
		if err != nil {
			return nil, fmt.Errorf("blob %s: waiting for the ingest lock %s: %w", d, path, err)
		}
		if !ok { // not reachable with TryLockContext, kept for safety
			continue
		}
		if l := holdIfCurrent(f, path); l != nil {
			return l, nil
		}
	}
}

// tryLockIngest takes the ingest lock of d if it is free, without waiting.
func (s *Store) tryLockIngest(d digest.Digest) (*ingestLock, bool, error) {
	path := s.lockPath(d)
	for range 3 {
		f := flock.New(path, flock.SetPermissions(0o600))
		ok, err := f.TryLock()
		if err != nil {
			return nil, false, fmt.Errorf("blob %s: ingest lock %s: %w", d, path, err)
		}
		if !ok {
			return nil, false, nil
		}
		if l := holdIfCurrent(f, path); l != nil {
			return l, true, nil
		}
	}
	return nil, false, nil
}

// holdIfCurrent keeps the locked f when path still names the locked file;
// otherwise it unlocks f and returns nil.
func holdIfCurrent(f *flock.Flock, path string) *ingestLock {
	held, err1 := f.Stat()
	cur, err2 := os.Stat(path)
	if err1 == nil && err2 == nil && os.SameFile(held, cur) {
		return &ingestLock{f: f, path: path}
	}
	_ = f.Unlock()
	return nil
}

// release removes the lock file and unlocks. It may be called more than once.
func (l *ingestLock) release() {
	if l == nil || !l.f.Locked() {
		return
	}
	_ = os.Remove(l.path)
	_ = l.f.Unlock()
}
