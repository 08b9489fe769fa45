package store

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// tarDigestsDir holds, under the store's root, the digests of tarballs
// written before: tars/<alg>/<hex of the key> holds the tar's digest.
const tarDigestsDir = "tars"

// tarDigestPath is where the digest of the tar of key is remembered.
func (s *Store) tarDigestPath(key digest.Digest) (string, bool) {
	if key.Validate() != nil {
		return "", false
	}
	return filepath.Join(s.root, tarDigestsDir, key.Algorithm().String(), key.Encoded()), true
}

// TarDigest returns the digest remembered for a tarball by its key (see
// ocilayout.TarKey), so that writing the same tarball again need not hash
// it, and records the use. Safe for concurrent use by several processes.
func (s *Store) TarDigest(key digest.Digest) (digest.Digest, bool) {
	p, ok := s.tarDigestPath(key)
	if !ok {
		return "", false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", false
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", false
	}
	s.touch(p)
	return d, true
}

// RememberTarDigest records tar as the digest of the tarball of key
// (replacing the file in one rename, so a reader never sees half of it).
// Errors are ignored: the next write of that tarball then hashes it again.
func (s *Store) RememberTarDigest(key, tar digest.Digest) {
	p, ok := s.tarDigestPath(key)
	if !ok || tar.Validate() != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return
	}
	_, werr := f.WriteString(tar.String() + "\n")
	cerr := f.Close()
	if werr != nil || cerr != nil || os.Rename(f.Name(), p) != nil {
		os.Remove(f.Name())
	}
}

// pruneTarDigests removes remembered tarball digests not used for olderThan
// (and temporary files left by a killed writer).
func (s *Store) pruneTarDigests(olderThan time.Duration) {
	now := time.Now()
	root := filepath.Join(s.root, tarDigestsDir)
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil && now.Sub(fi.ModTime()) >= olderThan {
			os.Remove(p)
		}
		return nil
	})
}
