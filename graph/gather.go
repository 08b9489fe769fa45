package graph

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// GatherOptions configure [Gather]. The zero value gathers with concurrency
// 5 and leaves non-distributable layers out.
type GatherOptions struct {
	// Concurrency bounds the large blobs (over 256 KiB) in flight;
	// manifests and smaller blobs run at up to 4 times it. <= 0 means 5.
	Concurrency int
	// IncludeNonDistributable gathers non-distributable (foreign) layers too.
	IncludeNonDistributable bool
	// OnWarning, when not nil, receives warnings such as the list of
	// non-distributable layers left out. Calls are serialized.
	OnWarning func(msg string)
	// SourceFillsLocal says that src already writes what it serves into
	// local, as a caching store in front of registries does: blobs are then
	// read through once and not pushed into local a second time (which
	// would also wait on the ingest the read itself holds). A blob of at
	// most 256 KiB that local has once src's Fetch returned (ferry's store
	// commits small blobs before) is not read at all, unless WrapReader is
	// set (it sees every byte).
	SourceFillsLocal bool
	// OnBlob, when not nil, is called once for every blob as it is made
	// local. Calls may come
	// from several goroutines at once.
	OnBlob func(desc ocispec.Descriptor)
	// WrapReader, when not nil, wraps every reader opened on the source,
	// as CopyOptions.WrapReader does.
	WrapReader func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser
}

// Gathered is what a layout of a graph holds.
type Gathered struct {
	// Blobs lists every manifest, index, config and layer of the graph,
	// once each, sorted by digest, all readable from the local storage.
	Blobs []ocispec.Descriptor
	// Skipped lists, by manifest digest, the non-distributable layers left
	// out (empty with IncludeNonDistributable).
	Skipped map[digest.Digest][]ocispec.Descriptor
	// LeftOut lists, by node digest, the children of the indexes copied
	// sparse (Node.LeftOut of an index not rewritten), as their index lists
	// them: the layout does not hold them.
	LeftOut map[digest.Digest][]ocispec.Descriptor
}

// Gather makes every blob of g readable from local, fetching through src
// what local lacks (with bounded concurrency, streaming, each blob verified),
// and lists them. It is the first half of writing an OCI layout: the second
// half copies the listed blobs from local into a directory or a tar.
//
// Manifests local already has are walked again so that every blob they
// reference is checked, not only the manifest itself. The manifests and
// indexes Discover read are taken from g (verified then) rather than
// fetched from src again; WrapReader still sees them. The children indexes
// leave out (Node.LeftOut) are not gathered; Gathered.LeftOut lists those
// of the indexes kept sparse. Errors say "fetch into the local store".
func Gather(ctx context.Context, src Source, g *Graph, local content.Storage, opts GatherOptions) (*Gathered, error) {
	var dst content.Storage = descendAlways{local}
	if opts.SourceFillsLocal {
		dst = descendAlways{&readThrough{
			Storage:  local,
			bodies:   g.manifests,
			skipRead: opts.WrapReader == nil,
			bufs:     &sync.Pool{New: func() any { return new([readThroughBuffer]byte) }},
		}}
	}
	c := newCopier(src, g, dst, CopyOptions{
		Concurrency:             opts.Concurrency,
		IncludeNonDistributable: opts.IncludeNonDistributable,
		OnWarning:               opts.OnWarning,
		WrapReader:              opts.WrapReader,
	})
	c.gather = true
	var mu sync.Mutex
	blobs := map[digest.Digest]ocispec.Descriptor{}
	c.seen = func(desc ocispec.Descriptor) {
		mu.Lock()
		_, dup := blobs[desc.Digest]
		blobs[desc.Digest] = plain(desc)
		mu.Unlock()
		if !dup && opts.OnBlob != nil {
			opts.OnBlob(desc)
		}
	}
	c.warnNonDistributable(g)
	if err := c.copyGraph(ctx, g); err != nil {
		return nil, err
	}
	out := &Gathered{Skipped: map[digest.Digest][]ocispec.Descriptor{}, LeftOut: map[digest.Digest][]ocispec.Descriptor{}}
	for _, n := range g.Nodes {
		if n.Rewrite != nil {
			continue
		}
		for _, c := range n.LeftOut {
			out.LeftOut[n.Desc.Digest] = append(out.LeftOut[n.Desc.Digest], c.Desc)
		}
	}
	for _, d := range blobs {
		out.Blobs = append(out.Blobs, d)
	}
	slices.SortFunc(out.Blobs, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	if !opts.IncludeNonDistributable {
		for _, n := range g.Nodes {
			if len(n.NonDistributable) > 0 {
				out.Skipped[n.Desc.Digest] = slices.Clone(n.NonDistributable)
			}
		}
	}
	return out, nil
}

// descendAlways is local storage that reports manifests and indexes as
// absent, so that oras-go's CopyGraph walks into them (it does not descend
// into a node the destination has) and every blob they reference is made
// local. Pushing a manifest that is already there is harmless.
type descendAlways struct{ content.Storage }

func (d descendAlways) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		return false, nil
	}
	return d.Storage.Exists(ctx, desc)
}

// readThroughBuffer is the size of the buffers readThrough drains large
// blobs with.
const readThroughBuffer = 1 << 20

// readThrough is local storage filled by the source itself: the source
// commits a blob into local as it streams it, verified, so pushing a blob
// only reads it to its end (when the source commits it at the end) and then
// checks that local has it.
//
// Manifests and indexes, which a source may serve without storing them (a
// tag fetched while another process held the digest's ingest), are pushed
// into local when it lacks them: from bodies, the verified bytes Discover
// kept (the reader is then not read, and nothing is hashed again), or else
// read from the reader and checked.
//
// Safe for concurrent use.
type readThrough struct {
	content.Storage
	// bodies are the manifests and indexes Discover read, verified, by
	// digest (Graph.manifests); nil when none. Read-only.
	bodies map[digest.Digest][]byte
	// skipRead says that nobody watches the bytes stream (no WrapReader):
	// a small blob local already has (the source commits it before its
	// Fetch returns, as ferry's store does) is then not read at all.
	skipRead bool
	// bufs holds *[readThroughBuffer]byte for draining large blobs.
	bufs *sync.Pool
}

func (r *readThrough) Push(ctx context.Context, desc ocispec.Descriptor, rd io.Reader) error {
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		body, ok := r.bodies[desc.Digest]
		if !ok || int64(len(body)) != desc.Size {
			// Read to EOF (not just Size bytes): a caching source commits
			// before it returns EOF, so local has it afterwards.
			var err error
			if body, err = io.ReadAll(io.LimitReader(rd, maxMetadataBytes+1)); err != nil {
				return err
			}
			if int64(len(body)) != desc.Size || digest.FromBytes(body) != desc.Digest {
				return fmt.Errorf("%s: %w", desc.Digest, ErrDigestMismatch)
			}
		}
		if ok, err := r.Storage.Exists(ctx, desc); err != nil || ok {
			return err
		}
		return r.Storage.Push(ctx, desc, bytes.NewReader(body))
	}
	if r.skipRead && desc.Size <= largeBlobBytes {
		if ok, err := r.Storage.Exists(ctx, desc); err != nil || ok {
			return err
		}
	}
	if err := r.drain(desc, rd); err != nil {
		return err
	}
	ok, err := r.Storage.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: read through the source but not in local storage", desc.Digest)
	}
	return nil
}

// drain reads rd, the source's reader of desc, to its end. Large reads, and
// io.Discard hidden behind a plain writer (its own ReadFrom reads 8 KiB at
// a time): each read becomes one network read and one store write, so small
// reads would multiply the system calls. A small blob gets a buffer of its
// size (plus the byte that meets the end), a large one a pooled buffer.
func (r *readThrough) drain(desc ocispec.Descriptor, rd io.Reader) error {
	discard := struct{ io.Writer }{io.Discard}
	if desc.Size >= 0 && desc.Size <= largeBlobBytes {
		_, err := io.CopyBuffer(discard, rd, make([]byte, desc.Size+1))
		return err
	}
	buf := r.bufs.Get().(*[readThroughBuffer]byte)
	defer r.bufs.Put(buf)
	_, err := io.CopyBuffer(discard, rd, buf[:])
	return err
}
