package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
)

// smallBlobMax is the largest blob the store takes in whole, in memory,
// rather than through a resumable ingest: manifests, configs and small
// layers. Committing through containerd's ingest costs a directory, three
// small files written synchronously and two syncs per blob — several
// milliseconds, most of a small blob's time; a small blob is instead
// verified in memory, written to a temporary file, synced once and renamed
// into place. A cut download of one is fetched again whole (it is small).
//
// Small blobs take no ingest lock either (creating and removing its lock
// file cost as much system time as writing the blob): two writers of one
// small blob, in one process or two, each rename a complete, verified copy
// of the same bytes into place, so the last rename wins harmlessly.
const smallBlobMax = 256 << 10

// tmpDir holds, under the store's root, the temporary files of small blobs
// being written; Prune removes those a killed process left.
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
		data, err := io.ReadAll(io.LimitReader(body, desc.Size+1))
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

// failedFetch fails every read with err (a fetch that failed, retried as a
// cut download).
type failedFetch struct{ err error }

func (r failedFetch) Read([]byte) (int, error) { return 0, r.err }

// writeSmall commits the verified data of desc: a temporary file under
// tmp/, synced, made read-only and renamed to its blob path. It needs no
// lock: the rename replaces a copy committed meanwhile with the same bytes.
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
	tmp := filepath.Join(s.root, tmpDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
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
	if err := f.Sync(); err != nil {
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
