package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/ocilayout"
)

// layoutReader is what ferry reads a layout (or an imgpkg tarball) through.
type layoutReader interface {
	oras.ReadOnlyTarget
	Roots() []ocilayout.Root
	io.Closer
}

// openLayout opens a tar (OCI layout or imgpkg's format, detected) or an
// OCI layout directory.
func openLayout(ctx context.Context, path string) (layoutReader, error) {
	format, err := ocilayout.Detect(ctx, path)
	if err != nil {
		return nil, err
	}
	switch format {
	case ocilayout.FormatOCILayoutTar:
		return ocilayout.OpenTar(ctx, path)
	case ocilayout.FormatOCILayoutDir:
		return ocilayout.OpenDir(ctx, path)
	case ocilayout.FormatImgpkgTar:
		return ocilayout.OpenImgpkgTar(ctx, path)
	}
	return nil, fmt.Errorf("%s: %s cannot be read", path, format)
}

// layoutSource serves every repository from one layout: a layout holds the
// whole graph, whatever repository its parts came from.
type layoutSource struct{ layout oras.ReadOnlyTarget }

func (s layoutSource) Repository(context.Context, string) (oras.ReadOnlyTarget, error) {
	return s.layout, nil
}

// layoutRootSpecs turns the roots recorded in a layout back into the roots
// of the copy that wrote it: the bundle asked for, or every request (-i, the
// entries of a --lock ImagesLock) in order. A layout written by another tool
// has no such record: each of its index.json entries is then a root.
func layoutRootSpecs(roots []ocilayout.Root) []graph.RootSpec {
	type positioned struct {
		pos  int
		spec graph.RootSpec
	}
	var asked []positioned
	for _, r := range roots {
		repo := repoOf(r.OriginalRef)
		ref := repo + "@" + r.Desc.Digest.String()
		if r.RootBundle {
			asked = append(asked, positioned{-1, graph.RootSpec{Ref: ref, Kind: graph.RootBundle, Tag: r.Tag}})
			continue
		}
		for _, req := range r.Requests {
			asked = append(asked, positioned{req.Position, graph.RootSpec{Ref: ref, Tag: r.Tag, Annotations: req.Annotations}})
		}
	}
	if len(asked) == 0 {
		for i, r := range roots {
			asked = append(asked, positioned{i, graph.RootSpec{Ref: repoOf(r.OriginalRef) + "@" + r.Desc.Digest.String(), Tag: r.Tag}})
		}
	}
	slices.SortStableFunc(asked, func(a, b positioned) int { return a.pos - b.pos })
	specs := make([]graph.RootSpec, len(asked))
	for i, a := range asked {
		specs[i] = a.spec
	}
	return specs
}

// repoOf returns the repository of a reference, or "layout" when the
// reference is unknown (the layout serves every repository name alike).
func repoOf(ref string) string {
	if ref == "" {
		return "layout"
	}
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// layoutOmissions is what a layout written for a graph leaves out, by node
// digest.
type layoutOmissions struct {
	// skipped are the non-distributable layers (dev.ferry-oci.skipped-layers).
	skipped map[digest.Digest][]ocispec.Descriptor
	// sparse are the nodes whose index children a platform filter left out
	// (Gathered.LeftOut): layoutRoots records the children, with the index
	// listing each, in dev.ferry-oci.left-out-children.
	sparse map[digest.Digest]bool
}

// withLeftOut says what a layout of g leaves out: its non-distributable
// layers and the index children of the indexes kept sparse. `tar verify`
// accepts both as absent, and a later copy from the layout reads the
// children back (layoutLeftOut).
func withLeftOut(g *graph.Gathered) layoutOmissions {
	o := layoutOmissions{skipped: g.Skipped, sparse: make(map[digest.Digest]bool, len(g.LeftOut))}
	for d, children := range g.LeftOut {
		if len(children) > 0 {
			o.sparse[d] = true
		}
	}
	return o
}

// leftOutChildren lists the children n leaves out, with the index listing
// each (n itself or an index nested in it), as recorded in a layout.
func leftOutChildren(n *graph.Node) []ocilayout.LeftOutChild {
	var out []ocilayout.LeftOutChild
	for _, c := range n.LeftOut {
		out = append(out, ocilayout.LeftOutChild{
			Parent: c.Parent,
			Desc:   ocispec.Descriptor{MediaType: c.Desc.MediaType, Digest: c.Desc.Digest, Size: c.Desc.Size, Platform: c.Desc.Platform, ArtifactType: c.Desc.ArtifactType},
		})
	}
	return out
}

// layoutLeftOut lists the index children a layout records as left out
// (dev.ferry-oci.left-out-children, or manifests among the skipped layers
// of layouts written before it): a copy from it must not look for them.
func layoutLeftOut(roots []ocilayout.Root) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, r := range roots {
		for _, c := range r.LeftOutChildren {
			out = append(out, c.Desc)
		}
	}
	return out
}

// layoutRoots lists the index.json roots of a layout written for g: every
// node (bundles, the images and indexes they list, the roots asked for,
// signatures, referrers), with the tags, requests and skipped layers a later
// copy --tar --to-repo needs to finish the job without any registry.
// Referrers are listed untagged and without requests: a copy from the
// layout finds them again as referrers of their subjects (the layout lists
// its referrers by scanning the manifests of index.json), so
// --referrers=false leaves them out there too.
func layoutRoots(g *graph.Graph, omitted layoutOmissions) []ocilayout.Root {
	requests := map[*graph.Node][]ocilayout.Request{}
	rootBundle := map[*graph.Node]bool{}
	for i, n := range g.Roots {
		spec := g.Specs[i]
		if spec.Kind == graph.RootBundle {
			rootBundle[n] = true
			continue
		}
		requests[n] = append(requests[n], ocilayout.Request{Position: i, Ref: spec.Ref, Annotations: spec.Annotations})
	}
	var roots []ocilayout.Root
	for _, n := range g.Nodes {
		// A referrer keeps its artifact type, so that index.json says what it is.
		desc := ocispec.Descriptor{MediaType: n.Desc.MediaType, Digest: n.Desc.Digest, Size: n.Desc.Size, ArtifactType: n.Desc.ArtifactType}
		r := ocilayout.Root{
			Desc:          desc,
			OriginalRef:   n.Ref,
			Bundle:        n.Bundle,
			RootBundle:    rootBundle[n],
			Requests:      requests[n],
			SkippedLayers: omitted.skipped[n.Desc.Digest],
		}
		if omitted.sparse[n.Desc.Digest] {
			r.LeftOutChildren = leftOutChildren(n)
		}
		if len(n.Tags) == 0 {
			roots = append(roots, r)
			continue
		}
		for i, tag := range n.Tags { // one entry per tag; the first carries the requests
			r.Tag = tag
			if i > 0 {
				r.Requests, r.RootBundle = nil, false
			}
			roots = append(roots, r)
		}
	}
	return roots
}

// omissionsOf is what withLeftOut says of the Gathered of g, known from
// g alone before Gather runs: the non-distributable layers left out (none
// with includeNonDistributable) and the indexes kept sparse.
func omissionsOf(g *graph.Graph, includeNonDistributable bool) layoutOmissions {
	o := layoutOmissions{skipped: map[digest.Digest][]ocispec.Descriptor{}, sparse: map[digest.Digest]bool{}}
	for _, n := range g.Nodes {
		if n.Rewrite == nil && len(n.LeftOut) > 0 {
			o.sparse[n.Desc.Digest] = true
		}
		if !includeNonDistributable && len(n.NonDistributable) > 0 {
			o.skipped[n.Desc.Digest] = slices.Clone(n.NonDistributable)
		}
	}
	return o
}

// plannedLayout lists, before Gather runs, the blobs and the index.json
// of the layout of g that Gather and copyToLayout will give: the blobs plan
// lists (nil plan: one is made with popts, reading the manifests, which
// discovery left in the store, and, with a platform filter, those of the
// children left out) and the index of layoutRoots with omissionsOf. It
// fails when they do not make a valid layout.
func plannedLayout(ctx context.Context, src graph.Source, g *graph.Graph, plan *graph.Plan, popts graph.PlanOptions) ([]ocispec.Descriptor, ocispec.Index, error) {
	if plan == nil {
		popts.ThroughLocal = true
		var err error
		if plan, err = graph.PlanCopy(ctx, src, g, popts); err != nil {
			return nil, ocispec.Index{}, err
		}
	}
	blobs := make([]ocispec.Descriptor, len(plan.Blobs))
	for i, pb := range plan.Blobs {
		blobs[i] = pb.Desc
	}
	index, err := ocilayout.NewIndex(layoutRoots(g, omissionsOf(g, popts.IncludeNonDistributable)))
	if err != nil {
		return nil, ocispec.Index{}, err
	}
	if _, err := ocilayout.TarKey(blobs, index); err != nil {
		return nil, ocispec.Index{}, err
	}
	return blobs, index, nil
}

// layoutOut is where copyToLayout writes: a tar file (--to-tar) or an OCI
// layout directory (--to-oci-layout).
type layoutOut struct {
	path string
	dir  bool
}

// layoutOut is the copy's --to-tar or --to-oci-layout.
func (r *copyRun) layoutOut() layoutOut {
	if r.o.toLayout != "" {
		return layoutOut{path: r.o.toLayout, dir: true}
	}
	return layoutOut{path: r.o.toTar}
}

// startLayout creates the --to-tar or --to-oci-layout before the downloads
// start, for the blobs and index plannedLayout gives, and returns the feed
// that writes each blob into it as Gather makes the blob local. When
// plannedLayout fails it returns nil: the layout is then written after the
// downloads, as WriteTar and WriteDir do, and that write or Gather reports
// the problem. Failing to create the tar or the directory fails the copy
// at once, before anything is downloaded.
func (r *copyRun) startLayout(ctx context.Context, plan *graph.Plan, src ocilayout.BlobOpener, opts ocilayout.WriteOptions) (*layoutFeed, error) {
	blobs, index, err := plannedLayout(ctx, r.src, r.g, plan, graph.PlanOptions{
		IncludeNonDistributable: r.o.includeNonDistributable,
		Concurrency:             r.o.concurrency,
	})
	if err != nil {
		return nil, nil
	}
	return startLayoutFeed(ctx, r.layoutOut(), blobs, index, src, opts)
}

// layoutBuilder is what a layoutFeed fills: an ocilayout.TarBuilder, or a
// dirBuilder.
type layoutBuilder interface {
	WriteBlob(ctx context.Context, desc ocispec.Descriptor, src ocilayout.BlobOpener) error
	Commit(ctx context.Context, src ocilayout.BlobOpener) (digest.Digest, error)
	Key() digest.Digest
	Abort()
}

// dirBuilder is an ocilayout.DirBuilder with TarBuilder's Commit (a
// directory has no digest: "").
type dirBuilder struct{ *ocilayout.DirBuilder }

func (b dirBuilder) Commit(ctx context.Context, src ocilayout.BlobOpener) (digest.Digest, error) {
	return "", b.DirBuilder.Commit(ctx, src)
}

// startLayoutFeed creates the tar or directory out for blobs and index and
// starts the goroutine that writes the blobs queued by enqueue.
func startLayoutFeed(ctx context.Context, out layoutOut, blobs []ocispec.Descriptor, index ocispec.Index, src ocilayout.BlobOpener, opts ocilayout.WriteOptions) (*layoutFeed, error) {
	f := &layoutFeed{src: src, done: make(chan struct{})}
	f.ready = sync.NewCond(&f.mu)
	opts.OnBlob = f.wrote
	if out.dir {
		b, err := ocilayout.CreateDir(ctx, out.path, blobs, index, opts)
		if err != nil {
			return nil, err
		}
		f.b = dirBuilder{b}
	} else {
		b, err := ocilayout.CreateTar(ctx, out.path, blobs, index, opts)
		if err != nil {
			return nil, err
		}
		f.b = b
	}
	go f.run(ctx)
	return f, nil
}

// layoutFeed writes a --to-tar or --to-oci-layout while Gather downloads
// its blobs: Gather's OnBlob queues each blob as it becomes local, and one
// goroutine copies it from the store into the layout (a layoutBuilder), so
// the downloads never wait for the layout. Of the blobs waiting, the first
// in digest order (a tar's order) goes first: a tar's hash, which follows
// the filled start of the tar, then moves on as early as it can. A nil
// *layoutFeed does nothing, and its finish writes the whole layout after
// the downloads (WriteTar, WriteDir).
type layoutFeed struct {
	b   layoutBuilder
	src ocilayout.BlobOpener

	mu      sync.Mutex
	ready   *sync.Cond           // on mu: a blob was queued, or closed
	pending []ocispec.Descriptor // queued, sorted by digest
	closed  bool
	done    chan struct{} // closed when run returns

	bytes  atomic.Int64             // written into the layout
	onBlob func(ocispec.Descriptor) // set by report once run has returned
}

// enqueue is Gather's OnBlob: it queues desc for the layout. Safe for
// concurrent use; it never waits for the layout.
func (f *layoutFeed) enqueue(desc ocispec.Descriptor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	i, _ := slices.BinarySearchFunc(f.pending, desc.Digest, func(d ocispec.Descriptor, t digest.Digest) int {
		return strings.Compare(string(d.Digest), string(t))
	})
	f.pending = slices.Insert(f.pending, i, desc)
	f.ready.Signal()
}

// next waits for a queued blob and takes the first in digest order; false
// once drained.
func (f *layoutFeed) next() (ocispec.Descriptor, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.pending) == 0 && !f.closed {
		f.ready.Wait()
	}
	if len(f.pending) == 0 {
		return ocispec.Descriptor{}, false
	}
	desc := f.pending[0]
	f.pending = f.pending[1:]
	return desc, true
}

// run writes the queued blobs into the layout. A blob it cannot write is left
// to finish, which writes it again or reports the error: Gather reports a
// non-distributable layer (--include-non-distributable-layers) before it
// fetches it, and a blob the plan does not list has no slot.
func (f *layoutFeed) run(ctx context.Context) {
	defer close(f.done)
	for {
		desc, ok := f.next()
		if !ok {
			return
		}
		_ = f.b.WriteBlob(ctx, desc, f.src)
	}
}

// wrote is the builder's OnBlob.
func (f *layoutFeed) wrote(desc ocispec.Descriptor) {
	f.bytes.Add(desc.Size)
	if f.onBlob != nil {
		f.onBlob(desc)
	}
}

// drain stops taking blobs and waits for run to write those queued.
func (f *layoutFeed) drain() {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.closed = true
	f.ready.Broadcast()
	f.mu.Unlock()
	<-f.done
}

// abort stops the writes in flight and removes the unfinished layout; after
// finish it does nothing.
func (f *layoutFeed) abort() {
	if f == nil {
		return
	}
	f.b.Abort()
	f.drain()
}

// written is the bytes written into the layout so far.
func (f *layoutFeed) written() int64 {
	if f == nil {
		return 0
	}
	return f.bytes.Load()
}

// report sends the blobs written from now on to fn too; call it after
// drain.
func (f *layoutFeed) report(fn func(ocispec.Descriptor)) {
	if f != nil {
		f.onBlob = fn
	}
}

// finish completes the layout out of blobs and index, as gathered: it
// commits the layout started before the downloads when that was made for
// the same blobs and index (the same TarKey: the same bytes), writing what
// is not in it yet, and otherwise writes it anew with WriteTar or
// WriteDir. It returns the tar's sha256 ("" for a directory).
func (f *layoutFeed) finish(ctx context.Context, out layoutOut, blobs []ocispec.Descriptor, index ocispec.Index, src ocilayout.BlobOpener, opts ocilayout.WriteOptions) (digest.Digest, error) {
	if f != nil {
		if key, err := ocilayout.TarKey(blobs, index); err == nil && key == f.b.Key() {
			return f.b.Commit(ctx, src)
		}
		f.abort()
	}
	if out.dir {
		return "", ocilayout.WriteDir(ctx, out.path, blobs, index, src, opts)
	}
	return ocilayout.WriteTar(ctx, out.path, blobs, index, src, opts)
}
