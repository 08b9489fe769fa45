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
	// would also wait on the ingest the read itself holds).
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
// Manifests local already has are read again so that every blob they
// reference is checked, not only the manifest itself. The children indexes
// leave out (Node.LeftOut) are not gathered; Gathered.LeftOut lists those
// of the indexes kept sparse. Errors say "fetch into the local store".
func Gather(ctx context.Context, src Source, g *Graph, local content.Storage, opts GatherOptions) (*Gathered, error) {
	var dst content.Storage = descendAlways{local}
	if opts.SourceFillsLocal {
		dst = readThrough{descendAlways{local}}
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

// readThrough is local storage filled by the source itself: pushing a blob
// only reads it to its end (the source commits it into local as it streams,
// verified) and then checks that local has it. Manifests and indexes, which
// a source may serve without storing them (a tag fetched while another
// process held the digest's ingest), are read into memory and pushed when
// local still lacks them.
type readThrough struct{ content.Storage }

func (r readThrough) Push(ctx context.Context, desc ocispec.Descriptor, rd io.Reader) error {
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		// Read to EOF (not just Size bytes): a caching source commits
		// before it returns EOF, so local has it afterwards.
		body, err := io.ReadAll(io.LimitReader(rd, maxMetadataBytes+1))
		if err != nil {
			return err
		}
		if int64(len(body)) != desc.Size || digest.FromBytes(body) != desc.Digest {
			return fmt.Errorf("%s: %w", desc.Digest, ErrDigestMismatch)
		}
		if ok, err := r.Storage.Exists(ctx, desc); err != nil || ok {
			return err
		}
		return r.Storage.Push(ctx, desc, bytes.NewReader(body))
	}
	// A large buffer, and io.Discard hidden behind a plain writer (its own
	// ReadFrom reads 8 KiB at a time): each read becomes one network read
	// and one store write, so small reads would multiply the system calls.
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, rd, buf); err != nil {
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
