package main

import (
	"context"
	"encoding/json"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/store"
)

// readRecorder records which digests this run read from the source rather
// than from the local store. Safe for concurrent use.
type readRecorder struct {
	st *store.Store

	mu     sync.Mutex
	remote map[digest.Digest]int64
}

func newReadRecorder(st *store.Store) *readRecorder {
	return &readRecorder{st: st, remote: map[digest.Digest]int64{}}
}

func (r *readRecorder) markRemote(desc ocispec.Descriptor) {
	r.mu.Lock()
	r.remote[desc.Digest] = desc.Size
	r.mu.Unlock()
}

// fetched reports whether d was read from the source.
func (r *readRecorder) fetched(d digest.Digest) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.remote[d]
	return ok
}

// fetchedBytes sums the sizes of every digest read from the source.
func (r *readRecorder) fetchedBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, s := range r.remote {
		n += s
	}
	return n
}

// source wraps src so that the store-backed repositories it returns record
// their misses. Other repositories are returned as they are.
//
// Telling a miss from a hit costs a store lookup before each Fetch (a
// reader served from the store's file may still be a download the store
// resumed and committed within the call), so only a run that reports what
// it fetched (--json, --dry-run) wraps its source; the reads of a source
// without a store are recorded by wrap, which costs nothing.
func (r *readRecorder) source(src graph.Source) graph.Source {
	return recordingSource{Source: src, rec: r}
}

// wrap records a read from a source that has no store in front of it
// (every read there is a fetch); for a graph WrapReader.
func (r *readRecorder) wrap(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
	r.markRemote(desc)
	return rc
}

type recordingSource struct {
	graph.Source
	rec *readRecorder
}

func (s recordingSource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := s.Source.Repository(ctx, repo)
	if ct, ok := t.(*store.CachedTarget); ok && err == nil && s.rec.st != nil {
		return &recordingCache{CachedTarget: ct, rec: s.rec}, nil
	}
	return t, err
}

// recordingCache is a store-backed repository that records the blobs it
// had to download. It keeps every method of the CachedTarget it embeds.
type recordingCache struct {
	*store.CachedTarget
	rec *readRecorder
}

// Fetch records desc as fetched when the store did not hold it before the
// call. The store is asked first: afterwards it holds the blob either way,
// and its reader does not tell a hit from a download resumed and committed
// within Fetch.
func (c *recordingCache) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	hit, _ := c.rec.st.Exists(ctx, desc)
	rc, err := c.CachedTarget.Fetch(ctx, desc)
	if err == nil && !hit {
		c.rec.markRemote(desc)
	}
	return rc, err
}

func (c *recordingCache) FetchReference(ctx context.Context, reference string) (ocispec.Descriptor, io.ReadCloser, error) {
	desc, rc, err := c.CachedTarget.FetchReference(ctx, reference)
	if err == nil {
		// A download is committed only when read to its end, so a blob
		// committed now was served by the store.
		if hit, _ := c.rec.st.Exists(ctx, desc); !hit {
			c.rec.markRemote(desc)
		}
	}
	return desc, rc, err
}

// outcomes records what a copy did with each blob. Safe for concurrent use.
type outcomes struct {
	mu  sync.Mutex
	how map[digest.Digest]graph.BlobOutcome
}

func newOutcomes() *outcomes { return &outcomes{how: map[digest.Digest]graph.BlobOutcome{}} }

func (o *outcomes) record(desc ocispec.Descriptor, how graph.BlobOutcome) {
	o.mu.Lock()
	o.how[desc.Digest] = how
	o.mu.Unlock()
}

func (o *outcomes) get(d digest.Digest) (graph.BlobOutcome, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	how, ok := o.how[d]
	return how, ok
}

// JSON documents of copy --json and copy --dry-run --json.

// rootJSON is one root of the copy.
type rootJSON struct {
	Ref       string `json:"ref"`
	Digest    string `json:"digest"`
	Kind      string `json:"kind"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	// Destination is REPO@digest for a repository destination.
	Destination string   `json:"destination,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	// OriginalDigest is the digest of the index at the source when
	// --rewrite-index replaced it (Digest is the new one).
	OriginalDigest string `json:"originalDigest,omitempty"`
}

// destinationJSON says where the copy goes.
type destinationJSON struct {
	Type       string `json:"type"` // repository, tar, oci-layout
	Repository string `json:"repository,omitempty"`
	Path       string `json:"path,omitempty"`
	// SHA256 is the tar's digest (hex), --to-tar only.
	SHA256     string `json:"sha256,omitempty"`
	LockOutput string `json:"lockOutput,omitempty"`
}

// movedBytes counts what a copy did, each blob once.
type movedBytes struct {
	Blobs int   `json:"blobs"`
	Total int64 `json:"bytes"`
	// Moved is the bytes written at the destination.
	Moved int64 `json:"moved"`
	// Skipped is the bytes the destination already had.
	Skipped int64 `json:"skipped"`
	// Mounted is the bytes the destination registry mounted from another
	// of its repositories.
	Mounted int64 `json:"mounted"`
	// Fetched is the bytes downloaded from the source in this run.
	Fetched int64 `json:"fetched"`
	// FromStore is the bytes written at the destination that the local
	// store already held (cache hits).
	FromStore int64 `json:"fromStore"`
	// LeftOut is the bytes of non-distributable layers left out.
	LeftOut int64 `json:"leftOut"`
	// PlatformLeftOut is the bytes only the index children left out by
	// --platform reach.
	PlatformLeftOut int64 `json:"platformLeftOut,omitempty"`
}

func (m *movedBytes) add(o movedBytes) {
	m.Blobs += o.Blobs
	m.Total += o.Total
	m.Moved += o.Moved
	m.Skipped += o.Skipped
	m.Mounted += o.Mounted
	m.Fetched += o.Fetched
	m.FromStore += o.FromStore
	m.LeftOut += o.LeftOut
	m.PlatformLeftOut += o.PlatformLeftOut
}

// imageJSON is one node of the graph.
type imageJSON struct {
	Ref         string `json:"ref"`
	Digest      string `json:"digest"`
	Kind        string `json:"kind"`
	MediaType   string `json:"mediaType"`
	Source      string `json:"source"`
	Destination string `json:"destination,omitempty"`
	// AtDestination: the destination had this manifest before the copy.
	AtDestination bool `json:"atDestination"`
	// OriginalDigest: see rootJSON.
	OriginalDigest string `json:"originalDigest,omitempty"`
}

type copiedImageJSON struct {
	imageJSON
	Bytes movedBytes `json:"bytes"`
}

type plannedImageJSON struct {
	imageJSON
	Bytes graph.PlanBytes `json:"bytes"`
}

// leftOutJSON is a blob left out of the copy: a non-distributable layer
// (reason "non-distributable"), or a child of an index (reason "platform",
// "attestation" for the attestation of an image left out, "absent" for a
// child the source layout lacks), whose size is then the bytes leaving it
// out saves.
type leftOutJSON struct {
	Image     string `json:"image"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Reason    string `json:"reason"`
	MediaType string `json:"mediaType,omitempty"`
	Platform  string `json:"platform,omitempty"`
	// Index is the digest of the index listing the child, when it is one
	// nested in the image's index.
	Index string `json:"index,omitempty"`
}

// copyResultJSON is what copy --json prints.
type copyResultJSON struct {
	DryRun      bool              `json:"dryRun"`
	Roots       []rootJSON        `json:"roots"`
	Destination destinationJSON   `json:"destination"`
	Images      []copiedImageJSON `json:"images"`
	Total       movedBytes        `json:"total"`
	LeftOut     []leftOutJSON     `json:"leftOut"`
}

// copyPlanJSON is what copy --dry-run --json prints.
type copyPlanJSON struct {
	DryRun      bool               `json:"dryRun"`
	Roots       []rootJSON         `json:"roots"`
	Destination destinationJSON    `json:"destination"`
	Images      []plannedImageJSON `json:"images"`
	Total       graph.PlanBytes    `json:"total"`
	LeftOut     []leftOutJSON      `json:"leftOut"`
	// DiscoveryFetched is the bytes discovery downloaded into the store
	// (manifests, bundle configs and layers) to find what to copy.
	DiscoveryFetched int64 `json:"discoveryFetched"`
}

// nodeKind names what a node is.
func nodeKind(n *graph.Node) string {
	switch {
	case n.Signature:
		return "signature"
	case n.Referrer:
		return "referrer"
	case n.Bundle:
		return "bundle"
	case n.Index:
		return "index"
	}
	return "image"
}

func rootsJSON(g *graph.Graph, destRepo string) []rootJSON {
	out := make([]rootJSON, len(g.Roots))
	for i, n := range g.Roots {
		out[i] = rootJSON{
			Ref:       g.Specs[i].Ref,
			Digest:    n.Desc.Digest.String(),
			Kind:      nodeKind(n),
			MediaType: n.Desc.MediaType,
			Size:      n.Desc.Size,
			Tags:      n.Tags,
		}
		if destRepo != "" {
			out[i].Destination = destRepo + "@" + n.Desc.Digest.String()
		}
		if n.Rewrite != nil {
			out[i].OriginalDigest = n.Rewrite.Original.Digest.String()
		}
	}
	return out
}

func nodeJSON(n *graph.Node, destRepo string, atDest bool) imageJSON {
	img := imageJSON{
		Ref:           n.Ref,
		Digest:        n.Desc.Digest.String(),
		Kind:          nodeKind(n),
		MediaType:     n.Desc.MediaType,
		Source:        sourceOf(n),
		AtDestination: atDest,
	}
	if destRepo != "" {
		img.Destination = destRepo + "@" + n.Desc.Digest.String()
	}
	if n.Rewrite != nil {
		img.OriginalDigest = n.Rewrite.Original.Digest.String()
	}
	return img
}

func leftOutOf(p *graph.Plan) []leftOutJSON {
	out := []leftOutJSON{}
	for _, lo := range p.LeftOut {
		out = append(out, leftOutJSON{Image: lo.Node.Ref, Digest: lo.Desc.Digest.String(), Size: lo.Desc.Size, Reason: lo.Reason})
	}
	for _, lc := range p.LeftOutChildren {
		c := lc.Child
		j := leftOutJSON{Image: lc.Node.Ref, Digest: c.Desc.Digest.String(), Size: lc.Bytes, Reason: "platform", MediaType: c.Desc.MediaType}
		switch {
		case c.Absent:
			j.Reason = "absent"
		case c.Attestation:
			j.Reason = "attestation"
		}
		if c.Desc.Platform != nil {
			j.Platform = graph.FormatPlatform(*c.Desc.Platform)
		}
		orig := lc.Node.Desc.Digest
		if lc.Node.Rewrite != nil {
			orig = lc.Node.Rewrite.Original.Digest
		}
		if c.Parent != orig {
			j.Index = c.Parent.String()
		}
		out = append(out, j)
	}
	return out
}

// copyResult builds the copy --json document from the plan of the copy
// (for attribution), what the copy did with each blob and what was
// fetched. For a layout, present says which blobs the destination had
// before (nil: none); for a repository, done says what the copy did.
func copyResult(p *graph.Plan, dest destinationJSON, destRepo string, done *outcomes, rec *readRecorder, layoutHad func(digest.Digest) bool) copyResultJSON {
	doc := copyResultJSON{
		Roots:       rootsJSON(p.Graph, destRepo),
		Destination: dest,
		LeftOut:     leftOutOf(p),
	}
	perNode := make(map[*graph.Node]*movedBytes, len(p.Nodes))
	for _, np := range p.Nodes {
		perNode[np.Node] = &movedBytes{LeftOut: np.Bytes.LeftOut, PlatformLeftOut: np.Bytes.PlatformLeftOut}
	}
	atDest := map[digest.Digest]bool{}
	for _, pb := range p.Blobs {
		d, size := pb.Desc.Digest, pb.Desc.Size
		m := perNode[pb.Node]
		m.Blobs++
		m.Total += size
		moved := false
		switch {
		case layoutHad != nil:
			moved = !layoutHad(d)
		case done != nil:
			how, reached := done.get(d)
			switch {
			case reached && how == graph.BlobCopied:
				moved = true
			case reached && how == graph.BlobMounted:
				m.Mounted += size
			}
		default: // a tar is written whole
			moved = true
		}
		fetched := rec.fetched(d)
		if fetched {
			m.Fetched += size
		}
		switch {
		case moved:
			m.Moved += size
			if !fetched {
				m.FromStore += size
			}
		case done == nil || !isMounted(done, d):
			m.Skipped += size
			atDest[d] = true
		}
	}
	for _, np := range p.Nodes {
		m := perNode[np.Node]
		doc.Images = append(doc.Images, copiedImageJSON{
			imageJSON: nodeJSON(np.Node, destRepo, atDest[np.Node.Desc.Digest]),
			Bytes:     *m,
		})
		doc.Total.add(*m)
	}
	return doc
}

func isMounted(done *outcomes, d digest.Digest) bool {
	how, ok := done.get(d)
	return ok && how == graph.BlobMounted
}

// planDocument builds the copy --dry-run --json document.
func planDocument(p *graph.Plan, dest destinationJSON, destRepo string, discoveryFetched int64) copyPlanJSON {
	doc := copyPlanJSON{
		DryRun:           true,
		Roots:            rootsJSON(p.Graph, destRepo),
		Destination:      dest,
		Total:            p.Total,
		LeftOut:          leftOutOf(p),
		DiscoveryFetched: discoveryFetched,
	}
	for _, np := range p.Nodes {
		doc.Images = append(doc.Images, plannedImageJSON{imageJSON: nodeJSON(np.Node, destRepo, np.AtDest), Bytes: np.Bytes})
	}
	return doc
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
