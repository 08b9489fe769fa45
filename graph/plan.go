package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// mediaTypeArtifactManifest is the (withdrawn) OCI artifact manifest, which
// oras-go still walks.
const mediaTypeArtifactManifest = "application/vnd.oci.artifact.manifest.v1+json"

// PlanOptions configure [PlanCopy]. The zero value plans a copy into a
// destination that holds nothing, with no local store, concurrency 5 and
// non-distributable layers left out.
type PlanOptions struct {
	// Local is the local content store the copy reads through (blobs it
	// holds are not fetched from the source). nil means there is none.
	Local content.ReadOnlyStorage
	// Dest is the destination, asked with Exists (for a registry, one HEAD
	// request per blob or manifest). nil means it holds nothing. Without
	// ThroughLocal, when Dest is a registry (registry.ReferencePusher and
	// content.Resolver, as a remote repository is), a node's manifest is
	// asked for by the tag CopyToRepo gives it (see RepoBasedTags), as the
	// copy asks: one HEAD that says whether the manifest is there and
	// tagged. A node whose tag is missing or points elsewhere is planned as
	// the copy does it: its manifest is written again (by its tag) and what
	// it refers to is asked for.
	Dest content.ReadOnlyStorage
	// RepoBasedTags says the copy tags nodes with RepoBasedTag instead of
	// sha256-<hex>.imgpkg (CopyOptions.RepoBasedTags): the plan asks Dest
	// for those tags.
	RepoBasedTags bool
	// ThroughLocal says that the copy makes every blob local before it
	// writes it, as [Gather] does for a layout: what Dest has is then still
	// fetched when Local lacks it, and is only reported. Without it the
	// plan follows [CopyToRepo]: content Dest has is neither fetched nor
	// sent, and nothing below a manifest Dest has is looked at.
	ThroughLocal bool
	// IncludeNonDistributable plans non-distributable (foreign) layers as
	// ordinary blobs; by default they are listed in Plan.LeftOut.
	IncludeNonDistributable bool
	// Concurrency bounds the requests in flight. <= 0 means 5.
	Concurrency int
}

// PlanBytes counts the blobs (manifests, indexes, configs and layers) of a
// plan, or of the part of it attributed to one node, each digest once.
type PlanBytes struct {
	// Blobs is the number of distinct blobs and Total their bytes.
	Blobs int   `json:"blobs"`
	Total int64 `json:"bytes"`
	// Fetch is the bytes the copy will download from the source.
	Fetch int64 `json:"fetch"`
	// Local is the bytes the copy will read from the local store instead
	// of the source.
	Local int64 `json:"store"`
	// Dest is the bytes the destination already has. Without
	// PlanOptions.ThroughLocal, Fetch + Local + Dest = Total; with it,
	// Fetch + Local = Total and Dest overlaps them.
	Dest int64 `json:"destination"`
	// LeftOut is the bytes of non-distributable layers left out (not part
	// of Total).
	LeftOut int64 `json:"leftOut"`
	// PlatformLeftOut is the bytes of the blobs that only the children
	// left out of indexes (Node.LeftOut) reach: what a platform filter
	// saves (not part of Total; left out of JSON when zero).
	PlatformLeftOut int64 `json:"platformLeftOut,omitempty"`
}

// ToWrite returns the bytes the copy will write at the destination:
// Total - Dest.
func (b PlanBytes) ToWrite() int64 { return b.Total - b.Dest }

func (b *PlanBytes) add(pb PlannedBlob) {
	b.Blobs++
	b.Total += pb.Desc.Size
	if pb.Fetch {
		b.Fetch += pb.Desc.Size
	}
	if pb.FromLocal {
		b.Local += pb.Desc.Size
	}
	if pb.AtDest {
		b.Dest += pb.Desc.Size
	}
}

// PlannedBlob is one blob of a plan.
type PlannedBlob struct {
	// Desc is the blob's descriptor as its parent lists it (the node's own
	// descriptor for a node).
	Desc ocispec.Descriptor
	// Node is the first node, in Graph.Nodes order, whose content reaches
	// the blob; the blob's bytes count for that node only.
	Node *Node
	// Fetch is true when the copy downloads the blob from the source.
	Fetch bool
	// FromLocal is true when the copy reads it from the local store.
	FromLocal bool
	// AtDest is true when the destination already has it (or, without
	// ThroughLocal, a manifest above it).
	AtDest bool
}

// NodePlan is the part of a plan attributed to one node.
type NodePlan struct {
	// Node is the graph node.
	Node *Node
	// AtDest is true when the destination already has the node's manifest
	// or index; asked of a registry by the node's tag (see PlanOptions.Dest),
	// it also means that the tag points at it.
	AtDest bool
	// Bytes counts the blobs first reached from this node.
	Bytes PlanBytes
}

// LeftOutBlob is a blob the copy leaves out.
type LeftOutBlob struct {
	// Node is the first node whose content lists the blob.
	Node *Node
	// Desc is the blob's descriptor.
	Desc ocispec.Descriptor
	// Reason says why, for example "non-distributable".
	Reason string
}

// LeftOutChildPlan is a child an index leaves out (Node.LeftOut), with
// what leaving it out saves.
type LeftOutChildPlan struct {
	// Node is the index node.
	Node *Node
	// Child is the child left out.
	Child LeftOutChild
	// Blobs and Bytes count the blobs that only children left out reach,
	// each once, for the first such child (in Graph.Nodes, then Node.LeftOut
	// order) that reaches it: what the copy does not move. They are zero for
	// a child the source lacks.
	Blobs int
	Bytes int64
}

// Plan is what copying a graph will do, computed by [PlanCopy] before
// anything moves. It is read-only and safe for concurrent reads.
type Plan struct {
	// Graph is the planned graph.
	Graph *Graph
	// Nodes has one entry per Graph.Nodes, in the same order.
	Nodes []NodePlan
	// Blobs lists every blob once, in attribution order: node by node,
	// each node's manifest, then depth first what it references.
	Blobs []PlannedBlob
	// LeftOut lists the blobs left out, each digest once.
	LeftOut []LeftOutBlob
	// LeftOutChildren lists the children of indexes left out (by a
	// platform filter, see DiscoverOptions.Platforms), node by node.
	LeftOutChildren []LeftOutChildPlan
	// Total counts every blob once.
	Total PlanBytes

	// asked holds what the destination answered, by digest, when the plan
	// followed the copy's walk (PlanOptions.Dest without ThroughLocal), for
	// CopyOptions.Plan. Read-only.
	asked map[digest.Digest]destAnswer
}

// destAnswer is what a destination answered about one digest: whether it
// has it, asked by tag (the manifest is there and tag points at it) or, when
// tag is "", by digest.
type destAnswer struct {
	tag     string
	present bool
}

// PlanCopy computes, without copying anything, what copying g from src
// will do: for each node and in total, the bytes to fetch from the source,
// the bytes the local store already holds and the bytes the destination
// already has. A blob shared by several nodes counts once, for the first
// node (in Graph.Nodes order) that reaches it.
//
// PlanCopy reads every manifest and index of the graph through src (a
// caching source keeps them; discovery has usually read them already), asks
// opts.Local and opts.Dest with Exists (a registry's node manifests by their
// tags, see PlanOptions.Dest), and reads no config or layer. What Dest
// answered is kept in the plan for the copy (CopyOptions.Plan). It
// follows the copy's rules: without opts.ThroughLocal, content below a
// manifest the destination has is not asked about (a registry never holds
// a manifest without its blobs). Blobs the copy mounts from another
// repository of the destination's registry count as fetched, and the
// ImageLocations images CopyToRepo adds are not counted. Indexes written
// by DiscoverOptions.RewriteIndexes count as read from the store. The
// children indexes leave out (Node.LeftOut) are read too, down to their
// manifests, for the bytes they save (Plan.LeftOutChildren); one the
// source lacks counts nothing. Requests run concurrently, bounded by
// opts.Concurrency. PlanCopy is safe for concurrent use if src, Local and
// Dest are.
func PlanCopy(ctx context.Context, src Source, g *Graph, opts PlanOptions) (*Plan, error) {
	p := &planner{
		route:   newRouter(src, g),
		opts:    opts,
		limit:   newLimiter(opts.Concurrency),
		kids:    map[digest.Digest][]ocispec.Descriptor{},
		foreign: map[digest.Digest][]ocispec.Descriptor{},
		pruned:  prunedChildren(g),
		extra:   g.extra,
		unread:  map[digest.Digest]bool{},
		asked:   map[digest.Digest]destAnswer{},
	}
	if !opts.ThroughLocal && opts.Dest != nil {
		if _, ok := opts.Dest.(registry.ReferencePusher); ok {
			if res, ok := opts.Dest.(content.Resolver); ok {
				p.tags, p.resolver = askByTag(g, opts.RepoBasedTags), res
			}
		}
	}
	p.source = p.route
	if len(g.extra) > 0 {
		p.source = extraBlobs{ReadOnlyStorage: p.route, blobs: g.extra}
	}
	if err := p.readTree(ctx, g); err != nil {
		return nil, err
	}
	plan := p.attribute(g)
	if err := p.locate(ctx, g, plan); err != nil {
		return nil, err
	}
	if len(p.asked) > 0 {
		plan.asked = p.asked
	}
	index := make(map[*Node]int, len(plan.Nodes))
	for i, np := range plan.Nodes {
		index[np.Node] = i
	}
	for _, pb := range plan.Blobs {
		np := &plan.Nodes[index[pb.Node]]
		np.Bytes.add(pb)
		plan.Total.add(pb)
		if pb.Desc.Digest == np.Node.Desc.Digest {
			np.AtDest = pb.AtDest
		}
	}
	for _, lo := range plan.LeftOut {
		plan.Nodes[index[lo.Node]].Bytes.LeftOut += lo.Desc.Size
		plan.Total.LeftOut += lo.Desc.Size
	}
	for _, lc := range plan.LeftOutChildren {
		plan.Nodes[index[lc.Node]].Bytes.PlatformLeftOut += lc.Bytes
		plan.Total.PlatformLeftOut += lc.Bytes
	}
	return plan, nil
}

// newRouter returns a router that reads each node from its repository.
func newRouter(src Source, g *Graph) *router {
	r := &router{repos: newRepoCache(src), owners: make(map[digest.Digest][]string)}
	for _, n := range g.Nodes {
		r.own(n.Desc.Digest, n.Repo)
	}
	return r
}

// planner holds the state of one PlanCopy call.
type planner struct {
	route  *router
	source content.ReadOnlyStorage // route, with the indexes Discover rewrote
	opts   PlanOptions
	limit  limiter
	pruned map[digest.Digest]map[digest.Digest]bool // index -> children left out
	extra  map[digest.Digest][]byte                 // indexes Discover rewrote

	// Written by readTree only, read-only afterwards.
	kids    map[digest.Digest][]ocispec.Descriptor // manifest -> distributable successors
	foreign map[digest.Digest][]ocispec.Descriptor // manifest -> non-distributable layers
	unread  map[digest.Digest]bool                 // left-out children the source lacks

	// Set by PlanCopy, read-only afterwards: the tags nodes are asked for
	// by (askByTag) and what resolves them (Dest), or nil.
	tags     map[digest.Digest]string
	resolver content.Resolver

	mu    sync.Mutex
	asked map[digest.Digest]destAnswer // written by walkDest
}

// askByTag lists, for each node's manifest the copy pushes by its tag or
// finds by it (tagOnPush), that tag: its first node's sha256-<hex>.imgpkg,
// or RepoBasedTag when repoBased. Signatures, referrers and sparse
// indexes (pushed by digest, tagged after the copy) are left out.
func askByTag(g *Graph, repoBased bool) map[digest.Digest]string {
	sparse := sparseIndexes(g)
	ask := make(map[digest.Digest]string)
	for _, j := range nodeTags(g, repoBased) {
		d := j.desc.Digest
		if _, ok := sparse[d]; ok {
			continue
		}
		if _, ok := ask[d]; ok {
			continue
		}
		ask[d] = j.tag
	}
	return ask
}

// hasSuccessors reports whether oras-go's Successors reads a descriptor of
// this media type.
func hasSuccessors(mt string) bool {
	return isImageManifest(mt) || isIndex(mt) || mt == mediaTypeArtifactManifest
}

// readTree reads every manifest and index below the nodes, and below the
// children indexes leave out, level by level, concurrently. What is read
// only through a child left out may be missing from the source.
func (p *planner) readTree(ctx context.Context, g *Graph) error {
	type item struct {
		desc     ocispec.Descriptor
		optional bool // reached only through a child left out
	}
	seen := map[digest.Digest]bool{}
	var frontier []item
	for _, n := range g.Nodes {
		if !seen[n.Desc.Digest] {
			seen[n.Desc.Digest] = true
			frontier = append(frontier, item{desc: n.Desc})
		}
	}
	for _, n := range g.Nodes {
		for _, c := range n.LeftOut {
			if c.Absent {
				p.unread[c.Desc.Digest] = true
				continue
			}
			p.route.own(c.Desc.Digest, n.Repo)
			if !seen[c.Desc.Digest] {
				seen[c.Desc.Digest] = true
				frontier = append(frontier, item{desc: plain(c.Desc), optional: true})
			}
		}
	}
	for len(frontier) > 0 {
		succ := make([][]ocispec.Descriptor, len(frontier))
		missing := make([]bool, len(frontier))
		err := forEach(ctx, len(frontier), func(ctx context.Context, i int) error {
			d := frontier[i].desc
			if !hasSuccessors(d.MediaType) {
				return nil
			}
			if d.Size > maxMetadataBytes {
				return fmt.Errorf("manifest %s is %d bytes: %w", d.Digest, d.Size, ErrTooLarge)
			}
			if err := p.limit.acquire(ctx); err != nil {
				return err
			}
			s, err := content.Successors(ctx, p.source, d)
			p.limit.release()
			if err != nil {
				if frontier[i].optional && isAbsent(err) {
					missing[i] = true
					return nil
				}
				return fmt.Errorf("plan: %s: %w", d.Digest, err)
			}
			p.route.adopt(d.Digest, s)
			succ[i] = s
			return nil
		})
		if err != nil {
			return err
		}
		var next []item
		for i, it := range frontier {
			d := it.desc
			if missing[i] {
				p.unread[d.Digest] = true
				continue
			}
			for _, s := range succ[i] {
				if isNonDistributable(s) {
					p.foreign[d.Digest] = append(p.foreign[d.Digest], s)
					continue
				}
				if p.pruned[d.Digest][s.Digest] {
					continue // read as a child left out
				}
				p.kids[d.Digest] = append(p.kids[d.Digest], s)
				if !seen[s.Digest] {
					seen[s.Digest] = true
					next = append(next, item{desc: s, optional: it.optional})
				}
			}
		}
		frontier = next
	}
	return nil
}

// below returns what the copy takes along with the manifest d: its
// distributable successors, then its non-distributable layers when they
// are included.
func (p *planner) below(d digest.Digest) []ocispec.Descriptor {
	out := p.kids[d]
	if p.opts.IncludeNonDistributable {
		out = append(out[:len(out):len(out)], p.foreign[d]...)
	}
	return out
}

// attribute lists every blob once, each for the first node reaching it,
// and the non-distributable layers left out.
func (p *planner) attribute(g *Graph) *Plan {
	plan := &Plan{Graph: g, Nodes: make([]NodePlan, len(g.Nodes))}
	claimed := map[digest.Digest]bool{}
	leftOut := map[digest.Digest]bool{}
	var visit func(n *Node, d ocispec.Descriptor)
	visit = func(n *Node, d ocispec.Descriptor) {
		if claimed[d.Digest] {
			return
		}
		claimed[d.Digest] = true
		plan.Blobs = append(plan.Blobs, PlannedBlob{Desc: plain(d), Node: n})
		for _, s := range p.below(d.Digest) {
			visit(n, s)
		}
		if !p.opts.IncludeNonDistributable {
			for _, l := range p.foreign[d.Digest] {
				if !leftOut[l.Digest] {
					leftOut[l.Digest] = true
					plan.LeftOut = append(plan.LeftOut, LeftOutBlob{Node: n, Desc: plain(l), Reason: "non-distributable"})
				}
			}
		}
	}
	for i, n := range g.Nodes {
		plan.Nodes[i].Node = n
		visit(n, n.Desc)
	}
	// What only the children left out reach, each blob once.
	var lc *LeftOutChildPlan
	var save func(d ocispec.Descriptor)
	save = func(d ocispec.Descriptor) {
		if claimed[d.Digest] || p.unread[d.Digest] {
			return
		}
		claimed[d.Digest] = true
		lc.Blobs++
		lc.Bytes += d.Size
		for _, s := range p.below(d.Digest) {
			save(s)
		}
	}
	for _, n := range g.Nodes {
		for _, c := range n.LeftOut {
			plan.LeftOutChildren = append(plan.LeftOutChildren, LeftOutChildPlan{Node: n, Child: c})
			lc = &plan.LeftOutChildren[len(plan.LeftOutChildren)-1]
			save(plain(c.Desc))
		}
	}
	return plan
}

// locate finds out where each blob of plan is: at the destination, in the
// local store, or only at the source.
func (p *planner) locate(ctx context.Context, g *Graph, plan *Plan) error {
	// Which blobs the copy reaches, and which of them Dest has.
	atDest := map[digest.Digest]bool{}
	needed := map[digest.Digest]bool{}
	switch {
	case p.opts.Dest == nil:
		for _, pb := range plan.Blobs {
			needed[pb.Desc.Digest] = true
		}
	case p.opts.ThroughLocal:
		all := make([]ocispec.Descriptor, len(plan.Blobs))
		for i, pb := range plan.Blobs {
			all[i] = pb.Desc
			needed[pb.Desc.Digest] = true
		}
		has, err := p.exists(ctx, p.opts.Dest, all, "destination")
		if err != nil {
			return err
		}
		for i, d := range all {
			atDest[d.Digest] = has[i]
		}
	default:
		if err := p.walkDest(ctx, g, atDest, needed); err != nil {
			return err
		}
	}
	// Which of the blobs to copy Local holds.
	inLocal := map[digest.Digest]bool{}
	if p.opts.Local != nil {
		var ask []ocispec.Descriptor
		for _, pb := range plan.Blobs {
			if needed[pb.Desc.Digest] && (p.opts.ThroughLocal || !atDest[pb.Desc.Digest]) {
				ask = append(ask, pb.Desc)
			}
		}
		has, err := p.exists(ctx, p.opts.Local, ask, "local store")
		if err != nil {
			return err
		}
		for i, d := range ask {
			inLocal[d.Digest] = has[i]
		}
	}
	for d := range p.extra {
		inLocal[d] = true // written by Discover, read from memory
	}
	for i := range plan.Blobs {
		pb := &plan.Blobs[i]
		d := pb.Desc.Digest
		if p.opts.ThroughLocal {
			pb.AtDest = atDest[d]
			pb.FromLocal = inLocal[d]
			pb.Fetch = !inLocal[d]
			continue
		}
		pb.AtDest = !needed[d] || atDest[d]
		pb.FromLocal = !pb.AtDest && inLocal[d]
		pb.Fetch = !pb.AtDest && !inLocal[d]
	}
	return nil
}

// walkDest follows oras-go's CopyGraph: from the nodes down, each blob
// reached is asked at Dest, and the copy descends only into manifests Dest
// lacks. needed gets every blob reached, atDest those Dest has.
func (p *planner) walkDest(ctx context.Context, g *Graph, atDest, needed map[digest.Digest]bool) error {
	var frontier []ocispec.Descriptor
	for _, n := range g.Nodes {
		if !needed[n.Desc.Digest] {
			needed[n.Desc.Digest] = true
			frontier = append(frontier, plain(n.Desc))
		}
	}
	for len(frontier) > 0 {
		has, err := p.exists(ctx, destAsker{p}, frontier, "destination")
		if err != nil {
			return err
		}
		var next []ocispec.Descriptor
		for i, d := range frontier {
			if has[i] {
				atDest[d.Digest] = true
				continue
			}
			for _, s := range p.below(d.Digest) {
				if !needed[s.Digest] {
					needed[s.Digest] = true
					next = append(next, s)
				}
			}
		}
		frontier = next
	}
	return nil
}

// destAsker is the destination as walkDest asks it: a node's manifest by
// its tag when the plan has one for it (as retryingStorage.Exists does),
// anything else by digest. It records each answer in the planner's asked.
type destAsker struct{ p *planner }

func (a destAsker) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	p := a.p
	if tag := p.tags[desc.Digest]; tag != "" {
		cur, err := p.resolver.Resolve(ctx, tag)
		switch {
		case err == nil && cur.Digest == desc.Digest:
			p.record(desc.Digest, destAnswer{tag: tag, present: true})
			return true, nil
		case err == nil || errors.Is(err, errdef.ErrNotFound):
			p.record(desc.Digest, destAnswer{tag: tag})
			return false, nil
		}
		// Any other answer: ask for the manifest itself, as the copy does.
	}
	ok, err := p.opts.Dest.Exists(ctx, desc)
	if err == nil {
		p.record(desc.Digest, destAnswer{present: ok})
	}
	return ok, err
}

func (a destAsker) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return a.p.opts.Dest.Fetch(ctx, desc)
}

func (p *planner) record(d digest.Digest, a destAnswer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[d] = a
}

// answered returns whether the plan found the digest d at the
// destination, and whether it asked as the copy asks: by tag when tag (the
// copy's tagAs) is not "", by digest when it is. A nil plan knows nothing.
func (pl *Plan) answered(d digest.Digest, tag string) (present, ok bool) {
	if pl == nil {
		return false, false
	}
	a, ok := pl.asked[d]
	if !ok || a.tag != tag {
		return false, false
	}
	return a.present, true
}

// exists asks st about every descriptor, concurrently under the limit.
func (p *planner) exists(ctx context.Context, st content.ReadOnlyStorage, descs []ocispec.Descriptor, what string) ([]bool, error) {
	out := make([]bool, len(descs))
	err := forEach(ctx, len(descs), func(ctx context.Context, i int) error {
		if err := p.limit.acquire(ctx); err != nil {
			return err
		}
		ok, err := st.Exists(ctx, descs[i])
		p.limit.release()
		if err != nil {
			return fmt.Errorf("plan: %s %s: %w", what, descs[i].Digest, err)
		}
		out[i] = ok
		return nil
	})
	return out, err
}

// usePlan hands the copy's uploads what pl found at the destination, so
// that retryingStorage.Exists answers from it instead of asking again: a
// blob or manifest it found is taken as there (and a tag found pointing at
// a manifest as done), one it did not find is sent without asking. The
// answers are as old as the plan; a copy started right after it takes no
// more risk than one that asks for itself and then writes.
func (c *copier) usePlan(pl *Plan) {
	if up := uploadsOf(c.blobs); up != nil && pl != nil && len(pl.asked) > 0 {
		up.plan = pl
	}
}
