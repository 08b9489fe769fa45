package ocilayout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DirBuilder writes the OCI image layout directory WriteDir writes (same
// blobs, same index.json) while its blobs arrive in any order: each blob is
// written into blobs/<alg>/<hex> whenever it is ready, for example as a
// download into a store completes, and index.json is written last, so the
// layout names its new content only once all of it is there.
//
// Create one with CreateDir, call WriteBlob for blobs as they become
// available, then Commit, which writes the blobs not written yet and then
// index.json. Abort (a no-op after Commit) and a failed Commit remove what
// the builder added: the blob files it wrote where nothing was, and the
// oci-layout file and the directories it created (dir and its parents
// included); what was already there stays. Call Abort on every path that
// does not commit.
//
// WriteBlob is safe for concurrent use; Commit and Abort may be called from
// any goroutine, and Abort interrupts a running Commit and the WriteBlob
// calls in flight. No other writer may use the directory meanwhile.
type DirBuilder struct {
	dir     string
	root    *os.Root
	sorted  []ocispec.Descriptor
	size    map[digest.Digest]int64 // the blobs, by digest
	index   ocispec.Index
	key     digest.Digest
	opts    WriteOptions
	created []string // dir and the parents CreateDir created, deepest first

	ctx    context.Context // cancelled by Abort and when Commit ends
	cancel context.CancelFunc

	mu      sync.Mutex
	made    []string               // names created in root, in order
	present map[digest.Digest]bool // blobs written, or found there
	writers blobWriters

	finish   sync.Mutex // serializes Commit and Abort
	finished bool
}

// CreateDir prepares dir for a layout of blobs and index, as WriteDir
// describes: it creates dir when needed, checks or writes its oci-layout
// file, removes stale temporary files and creates the blob directories.
// Nothing is downloaded or copied yet. The blobs and index are checked as
// WriteTar checks them.
func CreateDir(ctx context.Context, dir string, blobs []ocispec.Descriptor, index ocispec.Index, opts WriteOptions) (_ *DirBuilder, err error) {
	sorted, indexJSON, err := plan(blobs, index)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	created := missingDirs(dir)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create layout directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open layout directory: %w", err)
	}
	b := &DirBuilder{
		dir: dir, root: root, sorted: sorted, index: index, opts: opts,
		size:    make(map[digest.Digest]int64, len(sorted)),
		present: make(map[digest.Digest]bool, len(sorted)),
		key:     tarKey(sorted, indexJSON),
		created: created,
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			b.discard()
		}
	}()
	for _, d := range sorted {
		b.size[d.Digest] = d.Size
	}
	if data, err := readRootFile(root, ocispec.ImageLayoutFile, maxLayoutFile); err == nil {
		if err := checkLayoutFile(data); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ocispec.ImageLayoutFile), err)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err := writeRootFileAtomic(root, ocispec.ImageLayoutFile, layoutFile); err != nil {
			return nil, err
		}
		b.made = append(b.made, ocispec.ImageLayoutFile)
	} else {
		return nil, err
	}
	removeStaleTemps(root, ".", func(target string) bool {
		return target == ocispec.ImageLayoutFile || target == ocispec.ImageIndexFile
	})
	// An index.json Commit could not merge fails now, before the blobs.
	if _, err := mergeIndex(root, index); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ocispec.ImageIndexFile), err)
	}
	seen := make(map[string]bool)
	for _, d := range sorted {
		alg := path.Dir(blobPath(d.Digest))
		if seen[alg] {
			continue
		}
		seen[alg] = true
		for _, name := range []string{ocispec.ImageBlobsDir, alg} {
			if fi, err := root.Stat(name); err == nil && fi.IsDir() {
				continue
			}
			if err := root.Mkdir(name, dirMode); err != nil {
				return nil, fmt.Errorf("create %s: %w", filepath.Join(dir, name), err)
			}
			b.made = append(b.made, name)
		}
		removeStaleTemps(root, alg, func(string) bool { return true })
	}
	return b, nil
}

// Key returns TarKey of the blobs and index b was created with.
func (b *DirBuilder) Key() digest.Digest { return b.key }

// WriteBlob copies the blob desc from src into blobs/<alg>/<hex> (file to
// file when src gives an *os.File), unless a file of its size is there,
// then calls WriteOptions.OnBlob. The bytes are not hashed (see
// BlobOpener), only counted: a source holding more or fewer than desc.Size
// bytes fails with ErrSizeMismatch and leaves nothing. A blob already
// written is not written again (nil is returned). A digest that is not
// among the layout's blobs fails with ErrUnknownBlob, a call after Commit
// or Abort with ErrBuilderClosed. Safe for concurrent use.
func (b *DirBuilder) WriteBlob(ctx context.Context, desc ocispec.Descriptor, src BlobOpener) error {
	size, ok := b.size[desc.Digest]
	if !ok {
		return fmt.Errorf("blob %s: %w", desc.Digest, ErrUnknownBlob)
	}
	if desc.Size != size {
		return fmt.Errorf("blob %s: %w: size %d, the layout was created for %d", desc.Digest, ErrSizeMismatch, desc.Size, size)
	}
	if !b.writers.enter() {
		return fmt.Errorf("blob %s: layout %s: %w", desc.Digest, b.dir, ErrBuilderClosed)
	}
	defer b.writers.leave()
	return b.write(ctx, desc, src)
}

// write writes desc unless it is present, records it and tells OnBlob.
func (b *DirBuilder) write(ctx context.Context, desc ocispec.Descriptor, src BlobOpener) error {
	b.mu.Lock()
	done := b.present[desc.Digest]
	b.mu.Unlock()
	if done {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	wrote, err := writeDirBlob(ctx, b.root, desc, src)
	stop()
	cancel()
	if err != nil {
		return err
	}
	b.mu.Lock()
	first := !b.present[desc.Digest]
	b.present[desc.Digest] = true
	if wrote {
		b.made = append(b.made, blobPath(desc.Digest))
	}
	b.mu.Unlock()
	if first && b.opts.OnBlob != nil {
		b.opts.OnBlob(desc)
	}
	return nil
}

// Commit writes the blobs WriteBlob has not written (in digest order, from
// src), then index.json, merged with the one already there (see WriteDir).
// On error or cancellation what the builder added is removed. Commit may be
// called once; later calls fail with ErrBuilderClosed.
func (b *DirBuilder) Commit(ctx context.Context, src BlobOpener) (err error) {
	b.finish.Lock()
	defer b.finish.Unlock()
	if b.finished {
		return fmt.Errorf("commit layout %s: %w", b.dir, ErrBuilderClosed)
	}
	b.finished = true
	defer func() {
		if err != nil {
			b.discard()
		}
	}()
	for _, d := range b.sorted {
		if err := b.write(ctx, d, src); err != nil {
			return err
		}
	}
	b.writers.close()
	merged, err := mergeIndex(b.root, b.index)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(b.dir, ocispec.ImageIndexFile), err)
	}
	data, err := json.Marshal(merged)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if err := writeRootFileAtomic(b.root, ocispec.ImageIndexFile, data); err != nil {
		return err
	}
	syncDir(b.dir)
	b.cancel()
	b.root.Close()
	return nil
}

// Abort stops the WriteBlob calls in flight and a running Commit and
// removes what the builder added. It does nothing after Commit (which
// cleans up itself when it fails) or a first Abort. Safe for concurrent
// use.
func (b *DirBuilder) Abort() {
	b.cancel() // a running Commit stops and cleans up itself
	b.finish.Lock()
	defer b.finish.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	b.discard()
}

// discard stops everything and removes, newest first, the names the
// builder created in dir (a directory only when empty), then dir and the
// parents CreateDir created, while empty.
func (b *DirBuilder) discard() {
	b.cancel()
	b.writers.close()
	b.mu.Lock()
	made := slices.Clone(b.made)
	b.mu.Unlock()
	for _, name := range slices.Backward(made) {
		b.root.Remove(name)
	}
	b.root.Close()
	for _, d := range b.created {
		if os.Remove(d) != nil {
			break
		}
	}
}

// missingDirs lists dir and those of its parents that do not exist, deepest
// first: what os.MkdirAll(dir) creates.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			return out
		}
		out = append(out, d)
		parent := filepath.Dir(d)
		if parent == d {
			return out
		}
		d = parent
	}
}
