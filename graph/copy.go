package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/ferry-oci/ferry/lockfile"
)

// CopyOptions tunes CopyToRepo. The zero value is imgpkg's default
// behaviour, except that DestRepo is needed for lock output.
type CopyOptions struct {
	// Concurrency bounds the large blobs (over 256 KiB) in flight;
	// manifests, indexes and smaller blobs run at up to 4 times it, as
	// their round trips rather than bandwidth set the time. <= 0 means 5.
	Concurrency int
	// IncludeNonDistributable copies non-distributable (foreign) layers too.
	// By default they are skipped and OnWarning names them.
	IncludeNonDistributable bool
	// RepoBasedTags tags each node with RepoBasedTag instead of
	// sha256-<hex>.imgpkg.
	RepoBasedTags bool
	// DestRepo is the destination repository ("host/path"), used for lock
	// output references.
	DestRepo string
	// SameRegistry, when not nil, reports whether a source repository
	// ("host/path") is on the destination's registry. Blobs of such
	// repositories are mounted rather than uploaded when dst implements
	// oras-go's registry.Mounter (a remote repository does).
	SameRegistry func(srcRepo string) bool
	// OnCopy, when not nil, is called once per node when it is at the
	// destination: skipped is true when it was there already. Calls may come
	// from several goroutines at once.
	OnCopy func(n *Node, skipped bool)
	// OnWarning, when not nil, receives warnings such as the list of
	// non-distributable layers skipped. Calls are serialized.
	OnWarning func(msg string)
	// OnBlob, when not nil, is called once for every manifest, index,
	// config and layer the copy reaches, when it is done with it: how says
	// whether it was sent, mounted or already at the destination. Content
	// below a manifest the destination already has is not reached. Calls
	// may come from several goroutines at once.
	OnBlob func(desc ocispec.Descriptor, how BlobOutcome)
	// WrapReader, when not nil, wraps every reader the copy opens on the
	// source (a caching source may serve it from the local store; the
	// manifests Discover kept are served from memory), for example to
	// count bytes for a progress display; each manifest is read once. It
	// must return a reader of the same bytes that closes rc when it is
	// closed. The bytes are verified below the wrapper: a read that
	// reaches the end of a blob whose digest does not match fails. Calls
	// may come from several goroutines at once.
	WrapReader func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser
	// Plan, when not nil, is the plan PlanCopy made of this copy just
	// before, with PlanOptions.Dest the same destination: what it asked the
	// destination is not asked again (see PlanOptions.Dest). nil, or a plan
	// made without Dest, means the copy asks for itself.
	Plan *Plan
}

// BlobOutcome says what a copy did with one blob, for CopyOptions.OnBlob.
type BlobOutcome int

const (
	// BlobCopied means the blob was read from the source and sent.
	BlobCopied BlobOutcome = iota
	// BlobMounted means the destination registry mounted the blob from
	// another of its repositories.
	BlobMounted
	// BlobPresent means the destination already had the blob.
	BlobPresent
)

// String returns "copied", "mounted" or "present".
func (o BlobOutcome) String() string {
	switch o {
	case BlobMounted:
		return "mounted"
	case BlobPresent:
		return "present"
	default:
		return "copied"
	}
}

// Result tells what CopyToRepo did. Its counters are final once CopyToRepo
// returned; it is then safe for concurrent reads.
type Result struct {
	// Graph is the graph that was copied.
	Graph *Graph
	// DestRepo is CopyOptions.DestRepo.
	DestRepo string
	// BytesPushed counts the bytes of blobs and manifests uploaded (not
	// those mounted or already present).
	BytesPushed int64
	// BlobsMounted counts blobs mounted from another repository.
	BlobsMounted int64
	// NodesSkipped counts nodes that were at the destination already.
	NodesSkipped int64
}

// CopyToRepo copies every node of g, with all it reaches, into the single
// repository dst, by digest, following imgpkg's relocation rules:
//
//   - one oras-go CopyGraph over the whole graph, so a blob shared by several
//     images is sent once, content that dst has already is not sent again,
//     and blobs stream from source to destination with their digest verified;
//   - non-distributable layers are skipped with a warning naming image and
//     layers, unless opts.IncludeNonDistributable;
//   - every node but signatures and referrers is tagged sha256-<hex>.imgpkg (or its
//     RepoBasedTag); when dst is a registry (registry.ReferencePusher), the
//     node's manifest is pushed by that tag, one request for both, after
//     everything it refers to, and whether dst has it is asked of the tag;
//   - every followed bundle gets its ImageLocations cache image, tagged
//     sha256-<bundle hex>.image-locations.imgpkg;
//   - only after all that succeeded, node Tags are applied (user tags of
//     roots, signature tags);
//   - the children indexes leave out (Node.LeftOut) are not copied, nor is
//     anything only they reach; an index that keeps its digest is pushed
//     without them (sparse), and when dst refuses it for that, the error is
//     a *SparseIndexError (ErrSparseIndexRefused) naming the index and the
//     registry setting that allows it. Indexes Discover rewrote are pushed
//     from memory, and so are the manifests and indexes it read (verified
//     then): the source is not asked for them again, and their bytes are
//     not hashed again.
//
// Tags already pointing at the right digest are not re-applied. CopyToRepo
// is safe for concurrent use if src and dst are, though two copies into one
// repository at once may both send the same blob.
func CopyToRepo(ctx context.Context, src Source, g *Graph, dst oras.Target, opts CopyOptions) (*Result, error) {
	c := newCopier(src, g, guardSparse(dst, g), opts)
	c.dst = dst
	c.tagOnPush(g, dst)
	c.usePlan(opts.Plan)
	c.warnNonDistributable(g)
	if err := c.copyGraph(ctx, g); err != nil {
		return nil, err
	}
	if err := c.tagNodes(ctx, g); err != nil {
		return nil, err
	}
	if err := c.pushImageLocations(ctx, g); err != nil {
		return nil, err
	}
	if err := c.applyTags(ctx, g); err != nil {
		return nil, err
	}
	return c.res, nil
}

// newCopier prepares the copy of g into blobs.
func newCopier(src Source, g *Graph, blobs content.Storage, opts CopyOptions) *copier {
	c := &copier{
		src:   src,
		blobs: blobs,
		opts:  opts,
		limit: newLimiter(opts.Concurrency),
		res:   &Result{Graph: g, DestRepo: opts.DestRepo},
		route: &router{
			repos:  newRepoCache(src),
			owners: make(map[digest.Digest][]string),
			wrap:   opts.WrapReader,
			large:  newOrderedGate(opts.Concurrency),
		},
		byDigest: make(map[digest.Digest]*Node),
		foreign:  make(map[digest.Digest][]ocispec.Descriptor),
		pruned:   prunedChildren(g),
	}
	c.source = c.route
	if len(g.extra) > 0 {
		c.source = extraBlobs{ReadOnlyStorage: c.source, blobs: g.extra, wrap: opts.WrapReader}
	}
	if len(g.manifests) > 0 {
		// The manifests Discover read come from memory, verified then:
		// the source is not asked for them (nor the store read) again.
		// WrapReader still sees their bytes, once, when they are pushed.
		c.source = extraBlobs{ReadOnlyStorage: c.source, blobs: g.manifests, wrap: opts.WrapReader}
	}
	for _, n := range g.Nodes {
		c.byDigest[n.Desc.Digest] = n
		c.route.own(n.Desc.Digest, n.Repo)
	}
	// Uploads cut by the destination restart from the source (the store).
	c.blobs = withUploadRetries(blobs, c.source.Fetch)
	if up := uploadsOf(c.blobs); up != nil {
		up.known = [2]map[digest.Digest][]byte{g.manifests, g.extra}
	}
	return c
}

// knownManifest returns the verified bytes of the manifest or index desc
// that Discover kept (read, or written by RewriteIndexes), or nil.
func (c *copier) knownManifest(desc ocispec.Descriptor) []byte {
	if up := uploadsOf(c.blobs); up != nil {
		return up.knownBody(desc)
	}
	return nil
}

// successors lists what the manifest or index desc refers to, as oras-go's
// content.Successors does, from the verified bytes Discover kept when it
// has them (no fetch, no hash), otherwise fetched through fetcher (oras-go's
// cache in front of the source).
func (c *copier) successors(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	body := c.knownManifest(desc)
	if body == nil {
		return content.Successors(ctx, fetcher, desc)
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		var m struct {
			Subject *ocispec.Descriptor  `json:"subject"`
			Config  ocispec.Descriptor   `json:"config"`
			Layers  []ocispec.Descriptor `json:"layers"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		out := make([]ocispec.Descriptor, 0, 2+len(m.Layers))
		if m.Subject != nil && desc.MediaType == ocispec.MediaTypeImageManifest {
			out = append(out, *m.Subject) // oras-go reads no subject in a Docker manifest
		}
		out = append(out, m.Config)
		return append(out, m.Layers...), nil
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		var idx struct {
			Subject   *ocispec.Descriptor  `json:"subject"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, err
		}
		if idx.Subject == nil || desc.MediaType != ocispec.MediaTypeImageIndex {
			return idx.Manifests, nil
		}
		return append([]ocispec.Descriptor{*idx.Subject}, idx.Manifests...), nil
	}
	return content.Successors(ctx, fetcher, desc)
}

// warnNonDistributable names, through OnWarning, the non-distributable
// layers that the copy leaves out.
func (c *copier) warnNonDistributable(g *Graph) {
	opts := c.opts
	if !opts.IncludeNonDistributable && opts.OnWarning != nil {
		for _, n := range g.Nodes {
			if len(n.NonDistributable) == 0 {
				continue
			}
			layers := make([]string, len(n.NonDistributable))
			for i, l := range n.NonDistributable {
				layers[i] = l.Digest.String()
			}
			opts.OnWarning(fmt.Sprintf("skipping non-distributable layers of %s (%s): %s (use --include-non-distributable-layers to copy them)",
				n.Ref, n.Desc.Digest, strings.Join(layers, ", ")))
		}
	}
}

// copier holds the state of one CopyToRepo or Gather call.
type copier struct {
	src      Source
	blobs    content.Storage               // where content goes
	dst      oras.Target                   // where tags go (CopyToRepo only)
	seen     func(desc ocispec.Descriptor) // called for every descriptor at blobs (may be nil)
	opts     CopyOptions
	limit    limiter
	res      *Result
	route    *router
	source   content.ReadOnlyStorage                  // route, with the indexes Discover rewrote and the manifests it read
	pruned   map[digest.Digest]map[digest.Digest]bool // index -> children left out (read-only)
	byDigest map[digest.Digest]*Node                  // read-only during the copy
	gather   bool                                     // Gather: the destination is the local store

	mu      sync.Mutex
	foreign map[digest.Digest][]ocispec.Descriptor // manifest -> its foreign layers
}

// copyGraph runs one CopyGraph from a virtual root whose successors are all
// nodes. The virtual root is never fetched nor pushed.
func (c *copier) copyGraph(ctx context.Context, g *Graph) error {
	if len(g.Nodes) == 0 {
		return nil
	}
	nodes := make([]ocispec.Descriptor, len(g.Nodes))
	var ids strings.Builder
	for i, n := range g.Nodes {
		nodes[i] = n.Desc
		ids.WriteString(n.Desc.Digest.String())
	}
	root := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageIndex,
		Digest:    digest.FromString("ferry virtual root\n" + ids.String()),
	}
	if up := uploadsOf(c.blobs); up != nil {
		up.virtual = root.Digest // oras-go asks whether dst has it
		// Gather's destination is the local store: nothing to restart,
		// and nothing to tag afterwards.
		up.local = c.gather
	}
	// Most nodes are small: oras-go runs many at once, and the router
	// holds the large blobs to Concurrency (see router.large).
	gopts := oras.CopyGraphOptions{
		Concurrency: fanout(c.opts.Concurrency),
		FindSuccessors: func(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			if desc.Digest == root.Digest {
				return nodes, nil
			}
			succ, err := c.successors(ctx, fetcher, desc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.describe(desc), err)
			}
			succ = withoutPruned(c.pruned, desc.Digest, succ)
			if c.gather {
				// In digest order, the order of a layout tar: the tar
				// fills (and is hashed) from its start while the rest
				// downloads.
				succ = slices.SortedStableFunc(slices.Values(succ), func(a, b ocispec.Descriptor) int {
					return strings.Compare(string(a.Digest), string(b.Digest))
				})
			}
			c.route.adopt(desc.Digest, succ)
			if c.opts.IncludeNonDistributable {
				if nd := appendNonDistributable(nil, succ); len(nd) > 0 {
					c.mu.Lock()
					c.foreign[desc.Digest] = nd
					c.mu.Unlock()
				}
			}
			return succ, nil
		},
		PreCopy: func(ctx context.Context, desc ocispec.Descriptor) error {
			if desc.Digest == root.Digest {
				return oras.SkipNode
			}
			return c.copyForeign(ctx, desc)
		},
		PostCopy: func(ctx context.Context, desc ocispec.Descriptor) error {
			if c.seen != nil {
				c.seen(desc)
			}
			atomic.AddInt64(&c.res.BytesPushed, desc.Size)
			if c.opts.OnBlob != nil {
				c.opts.OnBlob(desc, BlobCopied)
			}
			if n := c.byDigest[desc.Digest]; n != nil && c.opts.OnCopy != nil {
				c.opts.OnCopy(n, false)
			}
			return nil
		},
		OnCopySkipped: func(ctx context.Context, desc ocispec.Descriptor) error {
			if c.seen != nil && desc.Digest != root.Digest {
				c.seen(desc)
			}
			if c.opts.OnBlob != nil && desc.Digest != root.Digest {
				c.opts.OnBlob(desc, BlobPresent)
			}
			if n := c.byDigest[desc.Digest]; n != nil {
				atomic.AddInt64(&c.res.NodesSkipped, 1)
				if c.opts.OnCopy != nil {
					c.opts.OnCopy(n, true)
				}
			}
			return nil
		},
		OnMounted: func(ctx context.Context, desc ocispec.Descriptor) error {
			atomic.AddInt64(&c.res.BlobsMounted, 1)
			if c.opts.OnBlob != nil {
				c.opts.OnBlob(desc, BlobMounted)
			}
			return nil
		},
	}
	if c.opts.SameRegistry != nil {
		gopts.MountFrom = func(ctx context.Context, desc ocispec.Descriptor) ([]string, error) {
			var from []string
			for _, repo := range c.route.ownersOf(desc.Digest) {
				if c.opts.SameRegistry(repo) {
					from = append(from, mountPath(repo))
				}
			}
			return from, nil
		}
	}
	if err := oras.CopyGraph(ctx, c.source, c.blobs, root, gopts); err != nil {
		// oras-go's CopyError prefixes `failed to perform "Push" on
		// destination`; the cause it wraps is what the user needs first.
		var ce *oras.CopyError
		if errors.As(err, &ce) && ce.Err != nil {
			if ce.Origin == oras.CopyErrorOriginSource {
				err = fmt.Errorf("read source: %w", ce.Err)
			} else {
				err = ce.Err
			}
		}
		if c.gather {
			return fmt.Errorf("fetch into the local store: %w", err)
		}
		return fmt.Errorf("copy to %s: %w", c.destName(), err)
	}
	return nil
}

// mountPath is the repository path a registry knows repo by (no host).
func mountPath(repo string) string {
	if hasHost(repo) {
		_, path, _ := strings.Cut(repo, "/")
		return path
	}
	return repo
}

// describe names a descriptor for errors: the node's ref when it is a node.
func (c *copier) describe(desc ocispec.Descriptor) string {
	if n := c.byDigest[desc.Digest]; n != nil {
		return n.Ref + " (" + desc.Digest.String() + ")"
	}
	return desc.Digest.String()
}

func (c *copier) destName() string {
	if c.opts.DestRepo != "" {
		return c.opts.DestRepo
	}
	return "destination"
}

// copyForeign uploads the non-distributable layers of a manifest before the
// manifest itself (oras-go's CopyGraph always leaves them out).
func (c *copier) copyForeign(ctx context.Context, desc ocispec.Descriptor) error {
	c.mu.Lock()
	layers := c.foreign[desc.Digest]
	c.mu.Unlock()
	for _, l := range layers {
		if c.seen != nil {
			c.seen(l)
		}
		exists, err := c.blobs.Exists(ctx, l)
		if err != nil {
			return fmt.Errorf("non-distributable layer %s of %s: %w", l.Digest, c.describe(desc), err)
		}
		if exists {
			if c.opts.OnBlob != nil {
				c.opts.OnBlob(l, BlobPresent)
			}
			continue
		}
		rc, err := c.source.Fetch(ctx, l)
		if err != nil {
			return fmt.Errorf("non-distributable layer %s of %s: %w", l.Digest, c.describe(desc), err)
		}
		err = c.blobs.Push(ctx, l, rc)
		rc.Close()
		if err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return fmt.Errorf("non-distributable layer %s of %s: %w", l.Digest, c.describe(desc), err)
		}
		atomic.AddInt64(&c.res.BytesPushed, l.Size)
		if c.opts.OnBlob != nil {
			c.opts.OnBlob(l, BlobCopied)
		}
	}
	return nil
}

// ImagesLock returns an ImagesLock with one entry per root, in order:
// DestRepo@digest with the root's annotations. It is what --lock-output
// writes when no bundle root was copied.
func (r *Result) ImagesLock() (*lockfile.ImagesLock, error) {
	if r.DestRepo == "" {
		return nil, fmt.Errorf("images lock: %w: CopyOptions.DestRepo is empty", ErrInvalidReference)
	}
	lock := &lockfile.ImagesLock{}
	for i, n := range r.Graph.Roots {
		var ann map[string]string
		if i < len(r.Graph.Specs) && len(r.Graph.Specs[i].Annotations) > 0 {
			ann = make(map[string]string, len(r.Graph.Specs[i].Annotations))
			for k, v := range r.Graph.Specs[i].Annotations {
				ann[k] = v
			}
		}
		lock.Images = append(lock.Images, lockfile.ImageRef{Image: r.DestRepo + "@" + n.Desc.Digest.String(), Annotations: ann})
	}
	return lock, nil
}

// BundleLock returns the BundleLock of a copy whose only root was given as
// a bundle (RootBundle): DestRepo@digest and the root's tag. Otherwise it
// returns ErrNoBundleRoot, and ImagesLock is the lock to write.
func (r *Result) BundleLock() (*lockfile.BundleLock, error) {
	if len(r.Graph.Roots) != 1 || len(r.Graph.Specs) != 1 || r.Graph.Specs[0].Kind != RootBundle {
		return nil, fmt.Errorf("bundle lock: %w", ErrNoBundleRoot)
	}
	if r.DestRepo == "" {
		return nil, fmt.Errorf("bundle lock: %w: CopyOptions.DestRepo is empty", ErrInvalidReference)
	}
	return &lockfile.BundleLock{Bundle: lockfile.BundleRef{
		Image: r.DestRepo + "@" + r.Graph.Roots[0].Desc.Digest.String(),
		Tag:   rootTag(r.Graph.Specs[0]),
	}}, nil
}

// router is a read-only storage over many source repositories: each digest
// is read from the repositories of the nodes it belongs to, in the order
// they were met (a blob shared by several repositories is tried in each
// until one has it). It verifies what it streams.
type router struct {
	repos *repoCache
	wrap  func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser // may be nil
	// large, when not nil, bounds the blobs over largeBlobBytes open at
	// once: a slot is held from Fetch until the reader is closed, and a
	// freed slot goes to the smallest digest waiting.
	large *orderedGate

	mu     sync.Mutex
	owners map[digest.Digest][]string
}

// own records that d can be read from repo.
func (r *router) own(d digest.Digest, repo string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addOwner(d, repo)
}

func (r *router) addOwner(d digest.Digest, repo string) {
	if repo != "" && !slices.Contains(r.owners[d], repo) {
		r.owners[d] = append(r.owners[d], repo)
	}
}

// adopt records that the successors of parent can be read from parent's
// repositories.
func (r *router) adopt(parent digest.Digest, succ []ocispec.Descriptor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, repo := range r.owners[parent] {
		for _, s := range succ {
			r.addOwner(s.Digest, repo)
		}
	}
}

// ownersOf returns the repositories d can be read from.
func (r *router) ownersOf(d digest.Digest) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.owners[d])
}

// Fetch opens the content from the first of its repositories that has it;
// the reader fails at the end when size or digest do not match. The bytes
// are hashed once: by the repository when it verifies what it serves (the
// store, a layout; see contentVerifier), here otherwise. A large blob waits
// for a slot of r.large, held until the reader is closed.
func (r *router) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if r.large == nil || desc.Size <= largeBlobBytes {
		return r.fetch(ctx, desc)
	}
	if err := r.large.acquire(ctx, desc.Digest); err != nil {
		return nil, err
	}
	rc, err := r.fetch(ctx, desc)
	if err != nil {
		r.large.release()
		return nil, err
	}
	return &releasingReadCloser{ReadCloser: rc, release: sync.OnceFunc(r.large.release)}, nil
}

// releasingReadCloser calls release (once) when it is closed.
type releasingReadCloser struct {
	io.ReadCloser
	release func()
}

func (rc *releasingReadCloser) Close() error {
	defer rc.release()
	return rc.ReadCloser.Close()
}

// fetch is Fetch without the limit on large blobs.
func (r *router) fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	repos := r.ownersOf(desc.Digest)
	if len(repos) == 0 {
		return nil, fmt.Errorf("%s: no source repository known: %w", desc.Digest, errdef.ErrNotFound)
	}
	var errs []error
	for _, repo := range repos {
		t, err := r.repos.get(ctx, repo)
		if err != nil {
			return nil, err
		}
		rc, err := t.Fetch(ctx, desc)
		if err == nil {
			out := verified(t, desc, rc)
			if r.wrap != nil {
				out = r.wrap(desc, out)
			}
			return out, nil
		}
		errs = append(errs, fmt.Errorf("fetch %s from %s: %w", desc.Digest, repo, err))
		if !isAbsent(err) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// Exists reports whether one of the content's repositories has it.
func (r *router) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	for _, repo := range r.ownersOf(desc.Digest) {
		t, err := r.repos.get(ctx, repo)
		if err != nil {
			return false, err
		}
		ok, err := t.Exists(ctx, desc)
		if err != nil && !isAbsent(err) {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

var _ content.ReadOnlyStorage = (*router)(nil)
