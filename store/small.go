package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
)

// smallBlobMax is the largest blob the store takes in whole, in memory,
// rather than through a resumable ingest: manifests, configs and small
// layers. Committing through containerd's ingest costs a directory, three
// small files written synchronously and two syncs per blob — several
// milliseconds, most of a small blob's time; a small blob is instead
// verified in memory, written to a temporary file and given its name,
// without a sync (see writeSmall). A cut download of one is fetched again
// whole (it is small).
//
// Small blobs take no ingest lock either (creating and removing its lock
// file cost as much system time as writing the blob): two writers of one
// small blob, in one process or two, each rename a complete, verified copy
// of the same bytes into place, so the last rename wins harmlessly.
const smallBlobMax = 256 << 10

// tmpDir holds, under the store's root, the named temporary files of small
// blobs being written where unnamed ones are not available (see
// writeSmall); Prune removes those a killed process left.
const tmpDir = "tmp"

// staleTempAge is how old a temporary file must be for Prune to remove it
// (no writer keeps one for more than an instant).
const staleTempAge = time.Hour

// smallBlob serves a small blob verified in memory (and committed).
type smallBlob struct {
	*bytes.Reader
	desc ocispec.Descriptor
}

func (b *smallBlob) Close() error { return nil }

// fetchSmall downloads the small blob desc from remote (or reads body, a
// response already open at byte 0), verifies it and commits it, without the
// ingest lock (see smallBlobMax). A partial an earlier version left for it
// is not resumed; Prune removes it once stale.
func (s *Store) fetchSmall(ctx context.Context, remote orascontent.Fetcher, desc ocispec.Descriptor, body io.ReadCloser) (io.ReadCloser, error) {
	data, err := s.downloadSmall(ctx, remote, desc, body)
	if err != nil {
		return nil, err
	}
	if err := s.writeSmall(desc, data); err != nil {
		return nil, err
	}
	return &smallBlob{Reader: bytes.NewReader(data), desc: desc}, nil
}

// downloadSmall reads desc whole from remote, verified; a download cut
// short is fetched again, up to s.retries times in a row.
func (s *Store) downloadSmall(ctx context.Context, remote orascontent.Fetcher, desc ocispec.Descriptor, body io.ReadCloser) ([]byte, error) {
	if body == nil {
		var err error
		if body, err = remote.Fetch(ctx, desc); err != nil {
			return nil, err
		}
	}
	for fails := 0; ; {
		data, err := readSmall(body, desc.Size)
		body.Close()
		if err == nil {
			switch n := int64(len(data)); {
			case n > desc.Size:
				return nil, fmt.Errorf("blob %s: %w: the remote sent more than %d bytes", desc.Digest, ErrSizeMismatch, desc.Size)
			case n == desc.Size:
				if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
					return nil, fmt.Errorf("blob %s: %w: the remote sent content that hashes to %s", desc.Digest, ErrDigestMismatch, got)
				}
				return data, nil
			}
			err = io.ErrUnexpectedEOF // cut short
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("blob %s: download stopped: %w", desc.Digest, context.Cause(ctx))
		}
		fails++
		if fails > s.retries {
			return nil, fmt.Errorf("blob %s: download cut, %d attempts in a row: %w", desc.Digest, fails, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("blob %s: download stopped: %w", desc.Digest, context.Cause(ctx))
		case <-time.After(s.backoff << (fails - 1)):
		}
		if body, err = remote.Fetch(ctx, desc); err != nil {
			body = io.NopCloser(failedFetch{err})
		}
	}
}

// readSmall reads r to its end into one buffer of size+1 bytes: at most
// size+1 bytes, more than size meaning too long. Unlike io.ReadAll it
// allocates once.
func readSmall(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, size+1)
	n, err := io.ReadFull(r, buf)
	switch {
	case err == nil: // size+1 bytes: too long, the caller says so
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = nil
	}
	return buf[:n], err
}

// failedFetch fails every read with err (a fetch that failed, retried as a
// cut download).
type failedFetch struct{ err error }

func (r failedFetch) Read([]byte) (int, error) { return 0, r.err }

// Errors of writeAnonymous that send writeSmall to a named temporary file.
var (
	errNoAnonymous  = errors.New("no unnamed temporary files here")
	errTargetExists = errors.New("the blob file exists")
)

// writeSmall commits the verified data of desc. It writes an unnamed file
// in the blob's directory and links it at its blob path where the system
// can (writeAnonymous, on Linux); otherwise, or when a file is at the blob's
// path already, it writes a temporary file under tmp/, makes it read-only
// and renames it to its blob path. It needs no lock: the rename replaces a
// copy committed meanwhile with the same bytes, and the link fails on one.
//
// The blob has its name only once all its bytes are written, so a killed
// process never leaves a partial blob file. It does not wait for the disk
// (no fsync: on a 100-image bundle, syncing each manifest, config and small
// layer cost more CPU than anything else the store does): after a power
// loss, the file of a small blob written in the seconds before may be empty
// or hold other bytes. Such a file is found the first time a process opens
// it or asks whether it exists (checkSmallFile: a small blob is cheap to
// hash) and counts as absent, so it is fetched again; this process knows
// the blobs it wrote (Store.intact) and does not hash those.
func (s *Store) writeSmall(desc ocispec.Descriptor, data []byte) (err error) {
	target, err := s.blobPath(desc.Digest)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("store: write blob %s: %w", desc.Digest, err)
		}
	}()
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			s.intact.Store(desc.Digest, struct{}{})
		}
	}()
	if !s.noAnonymous.Load() {
		err := writeAnonymous(dir, target, data)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errNoAnonymous):
			s.noAnonymous.Store(true)
		case !errors.Is(err, errTargetExists):
			return err
		}
	}
	tmp := filepath.Join(s.root, tmpDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(tmp, "blob-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o444); err != nil { // read-only, as committed blobs are
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	done = true
	if err := os.Rename(f.Name(), target); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// checkSmallPath is checkSmallFile for the file at p.
func (s *Store) checkSmallPath(p string, d digest.Digest, size int64) error {
	if size > smallBlobMax || s.isIntact(d) {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	return s.checkSmallFile(f, d, size)
}

// checkSmallFile checks, once per process, that the file f of the small
// blob d (size bytes) holds its bytes: small blobs are not synced when
// written (see writeSmall), so a power loss may have spoilt one. A spoilt
// file fails with [ErrNotFound] (a new download replaces it). A size over
// smallBlobMax is not checked: such files are synced before they are named.
func (s *Store) checkSmallFile(f *os.File, d digest.Digest, size int64) error {
	if size > smallBlobMax || s.isIntact(d) {
		return nil
	}
	h := d.Algorithm().Hash()
	buf := s.bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, size+1), *buf)
	s.bufs.Put(buf)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if n != size || digest.NewDigest(d.Algorithm(), h) != d {
		return fmt.Errorf("blob %s: %w: its file holds other bytes (cut by a crash); it is fetched again", d, ErrNotFound)
	}
	s.intact.Store(d, struct{}{})
	return nil
}

// isIntact reports whether this process wrote or checked the small blob d.
func (s *Store) isIntact(d digest.Digest) bool {
	_, ok := s.intact.Load(d)
	return ok
}

// removeStaleTemps removes temporary files of small blobs that a killed
// process left behind.
func (s *Store) removeStaleTemps() {
	dir := filepath.Join(s.root, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	now := time.Now()
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) >= staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
