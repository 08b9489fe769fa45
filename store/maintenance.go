package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// BlobInfo describes a committed blob.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
	// LastUsed is when the blob was last committed, fetched or located
	// through the store (see [Store.BlobPath]).
	LastUsed time.Time
}

// PartialInfo describes a partial download (an ingest) kept for resuming.
type PartialInfo struct {
	// Ref is the ingest's key: the digest being downloaded. It is empty
	// when the ingest's metadata is unreadable.
	Ref string
	// Size is how many bytes are on disk.
	Size int64
	// Total is the size of the complete blob, 0 when unknown.
	Total int64
	// UpdatedAt is the last time data was written to it.
	UpdatedAt time.Time
	dir       string
}

// Usage is the disk usage of a store.
type Usage struct {
	Blobs        int   // committed blobs
	Bytes        int64 // their total size
	Partials     int   // partial downloads kept for resuming
	PartialBytes int64 // bytes they hold
}

// List calls fn for every committed blob, in digest order. An error from fn
// stops the walk and is returned.
func (s *Store) List(ctx context.Context, fn func(BlobInfo) error) error {
	algs, err := os.ReadDir(filepath.Join(s.root, "blobs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", s.root, err)
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		dir := filepath.Join(s.root, "blobs", alg.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("store %s: %w", s.root, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if e.IsDir() || d.Validate() != nil {
				continue // not a blob; Verify reports it
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return fmt.Errorf("blob %s: %w", d, err)
			}
			if err := fn(BlobInfo{Digest: d, Size: fi.Size(), LastUsed: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Partials returns the partial downloads kept in the store for resuming.
func (s *Store) Partials(ctx context.Context) ([]PartialInfo, error) {
	dir := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", s.root, err)
	}
	var out []PartialInfo
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() {
			continue
		}
		p := PartialInfo{dir: filepath.Join(dir, e.Name())}
		if fi, err := os.Stat(filepath.Join(p.dir, "data")); err == nil {
			p.Size = fi.Size()
			p.UpdatedAt = fi.ModTime()
		} else if fi, err := e.Info(); err == nil {
			p.UpdatedAt = fi.ModTime()
		} else {
			continue // removed meanwhile
		}
		if ref, err := os.ReadFile(filepath.Join(p.dir, "ref")); err == nil {
			p.Ref = string(ref)
			if st, err := s.cs.Status(ctx, p.Ref); err == nil {
				p.Total = st.Total
				if st.UpdatedAt.After(p.UpdatedAt) {
					p.UpdatedAt = st.UpdatedAt
				}
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// DiskUsage counts the committed blobs and the partial downloads.
func (s *Store) DiskUsage(ctx context.Context) (Usage, error) {
	var u Usage
	err := s.List(ctx, func(b BlobInfo) error {
		u.Blobs++
		u.Bytes += b.Size
		return nil
	})
	if err != nil {
		return Usage{}, err
	}
	partials, err := s.Partials(ctx)
	if err != nil {
		return Usage{}, err
	}
	for _, p := range partials {
		u.Partials++
		u.PartialBytes += p.Size
	}
	return u, nil
}

// Problem is something wrong that [Store.Verify] found.
type Problem struct {
	// Digest is the blob at fault; for an entry under blobs/ that is not
	// a blob, the digest its path would stand for (possibly invalid).
	Digest digest.Digest
	// Path is the file at fault.
	Path string
	// Err says what is wrong: it wraps [ErrDigestMismatch] for a blob
	// whose content does not hash to its name, [ErrInvalidDescriptor] for
	// an entry that is not a blob, or the error that kept Verify from
	// reading the file.
	Err error
	// Removed is true when Verify removed the file (fix).
	Removed bool
}

// Verify re-hashes every committed blob and reports those whose content does
// not match their digest, and entries under blobs/ that are not blobs. With
// fix, it removes them (a later fetch downloads the blob again); a directory
// of an unknown digest algorithm is reported but kept. Verify
// returns an error only when it cannot walk the store or ctx ends; the
// problems found so far are returned with it.
func (s *Store) Verify(ctx context.Context, fix bool) ([]Problem, error) {
	var problems []Problem
	algs, err := os.ReadDir(filepath.Join(s.root, "blobs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", s.root, err)
	}
	buf := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(buf)
	for _, alg := range algs {
		dir := filepath.Join(s.root, "blobs", alg.Name())
		if !alg.IsDir() || !digest.Algorithm(alg.Name()).Available() {
			// Not removed even with fix: it may hold blobs of an
			// algorithm this build cannot check.
			problems = append(problems, Problem{
				Digest: digest.Digest(alg.Name() + ":"),
				Path:   dir,
				Err:    fmt.Errorf("%s: %w: unknown digest algorithm %q", dir, ErrInvalidDescriptor, alg.Name()),
			})
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return problems, fmt.Errorf("store %s: %w", s.root, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return problems, err
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			p := filepath.Join(dir, e.Name())
			if e.IsDir() || d.Validate() != nil {
				problems = append(problems, s.fixEntry(Problem{
					Digest: d, Path: p,
					Err: fmt.Errorf("%s: %w: not a blob", p, ErrInvalidDescriptor),
				}, fix))
				continue
			}
			got, err := hashFile(p, d.Algorithm(), *buf)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				problems = append(problems, Problem{Digest: d, Path: p, Err: fmt.Errorf("blob %s: %w", d, err)})
				continue
			}
			if got != d {
				problems = append(problems, s.fixBlob(ctx, Problem{
					Digest: d, Path: p,
					Err: fmt.Errorf("blob %s: %w: content hashes to %s", d, ErrDigestMismatch, got),
				}, fix))
			}
		}
	}
	return problems, nil
}

func hashFile(p string, alg digest.Algorithm, buf []byte) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	dg := alg.Digester()
	if _, err := io.CopyBuffer(dg.Hash(), struct{ io.Reader }{f}, buf); err != nil {
		return "", err
	}
	return dg.Digest(), nil
}

// fixEntry removes a stray entry under blobs/ when fix is set.
func (s *Store) fixEntry(p Problem, fix bool) Problem {
	if !fix {
		return p
	}
	if err := os.RemoveAll(p.Path); err != nil {
		p.Err = fmt.Errorf("%w (removing it failed: %v)", p.Err, err)
		return p
	}
	p.Removed = true
	return p
}

// fixBlob removes a corrupt blob when fix is set, holding its ingest lock.
func (s *Store) fixBlob(ctx context.Context, p Problem, fix bool) Problem {
	if !fix {
		return p
	}
	lock, err := s.lockIngest(ctx, p.Digest)
	if err != nil {
		p.Err = fmt.Errorf("%w (not removed: %v)", p.Err, err)
		return p
	}
	defer lock.release()
	if err := os.Remove(p.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.Err = fmt.Errorf("%w (removing it failed: %v)", p.Err, err)
		return p
	}
	p.Removed = true
	return p
}

// PruneOptions says what [Store.Prune] removes. The zero value removes nothing.
type PruneOptions struct {
	// OlderThan removes blobs (and remembered tarball digests, see
	// [Store.TarDigest]) not used for at least this long; 0 keeps blobs
	// whatever their age.
	OlderThan time.Duration
	// MaxBytes then removes the least recently used blobs until the
	// committed blobs take at most MaxBytes; 0 means no budget. Partial
	// downloads do not count against it.
	MaxBytes int64
	// StalePartialsOlderThan removes partial downloads that have not
	// been written to for at least this long; 0 keeps them all.
	// A partial that a running download holds is never removed.
	StalePartialsOlderThan time.Duration
	// DryRun reports what would be removed without removing it.
	DryRun bool
}

// PruneResult is what [Store.Prune] removed (or would remove, in a dry run).
type PruneResult struct {
	Removed      []BlobInfo // blobs, least recently used first
	Bytes        int64      // their total size
	Partials     int        // partial downloads
	PartialBytes int64      // bytes they held
}

// Prune removes blobs by last use or down to a size budget, and stale
// partial downloads, as opts says. A blob or partial that a download in
// progress holds is skipped. It is safe to run while other goroutines or
// processes use the store: a blob removed under a reader stays readable
// through the open file, and a later fetch downloads it again.
func (s *Store) Prune(ctx context.Context, opts PruneOptions) (PruneResult, error) {
	var res PruneResult
	now := time.Now()
	if opts.OlderThan > 0 || opts.MaxBytes > 0 {
		var blobs []BlobInfo
		var total int64
		err := s.List(ctx, func(b BlobInfo) error {
			blobs = append(blobs, b)
			total += b.Size
			return nil
		})
		if err != nil {
			return res, err
		}
		sort.SliceStable(blobs, func(i, j int) bool { return blobs[i].LastUsed.Before(blobs[j].LastUsed) })
		for _, b := range blobs {
			old := opts.OlderThan > 0 && now.Sub(b.LastUsed) >= opts.OlderThan
			over := opts.MaxBytes > 0 && total > opts.MaxBytes
			if !old && !over {
				continue
			}
			removed, err := s.removeBlob(ctx, b.Digest, opts.DryRun)
			if err != nil {
				return res, err
			}
			if removed {
				res.Removed = append(res.Removed, b)
				res.Bytes += b.Size
				total -= b.Size
			}
		}
	}
	if opts.StalePartialsOlderThan > 0 {
		partials, err := s.Partials(ctx)
		if err != nil {
			return res, err
		}
		for _, p := range partials {
			if now.Sub(p.UpdatedAt) < opts.StalePartialsOlderThan {
				continue
			}
			removed, err := s.removePartial(p, opts.DryRun)
			if err != nil {
				return res, err
			}
			if removed {
				res.Partials++
				res.PartialBytes += p.Size
			}
		}
	}
	if !opts.DryRun {
		s.removeStaleLocks()
		s.removeStaleTemps()
		if opts.OlderThan > 0 {
			s.pruneTarDigests(opts.OlderThan)
		}
	}
	return res, nil
}

// removeBlob removes a committed blob unless its ingest lock is held.
func (s *Store) removeBlob(ctx context.Context, d digest.Digest, dryRun bool) (bool, error) {
	lock, ok, err := s.tryLockIngest(d)
	if err != nil || !ok {
		return false, err
	}
	defer lock.release()
	if dryRun {
		return true, nil
	}
	p, err := s.blobPath(d)
	if err != nil {
		return false, err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("blob %s: %w", d, err)
	}
	return true, nil
}

// removePartial removes an ingest directory unless a download holds it.
func (s *Store) removePartial(p PartialInfo, dryRun bool) (bool, error) {
	if d, err := digest.Parse(p.Ref); err == nil {
		lock, ok, err := s.tryLockIngest(d)
		if err != nil || !ok {
			return false, err
		}
		defer lock.release()
	}
	if dryRun {
		return true, nil
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return false, fmt.Errorf("partial %s: %w", p.dir, err)
	}
	return true, nil
}

// removeStaleLocks removes lock files left by processes that died holding
// them (the kernel released their locks). Lock files in use are kept.
func (s *Store) removeStaleLocks() {
	entries, err := os.ReadDir(filepath.Join(s.root, "locks"))
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok {
			continue
		}
		alg, hex, ok := strings.Cut(name, "-")
		if !ok {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() != nil {
			continue
		}
		if lock, ok, err := s.tryLockIngest(d); err == nil && ok {
			lock.release()
		}
	}
}
