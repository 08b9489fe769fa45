package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
)

// DiscoverOptions tunes Discover. The zero value is imgpkg's default.
type DiscoverOptions struct {
	// CosignSignatures also looks up the tags sha256-<hex>.sig, .att and
	// .sbom of every node in the node's repository and adds what it finds
	// as Signatures. Default off.
	CosignSignatures bool
	// Referrers also lists the OCI 1.1 referrers of every node and, for an
	// index, of each of its child manifests, in the node's repository, and
	// adds each as a node (Referrer set) to the Referrers of the node;
	// referrers of referrers and of signatures too, each digest once. The
	// repository must implement oras-go's registry.ReferrerLister (a remote
	// repository does: it uses the referrers API and falls back to the
	// sha256-<hex> tag schema on registries without it); repositories that
	// do not, or whose Referrers returns errdef.ErrUnsupported or a 401,
	// 403 or 404 answer, are skipped silently, as are listed referrers that
	// are gone. Referrers that are neither image manifests nor indexes (the
	// withdrawn OCI artifact manifest) are left out, and a referrer is never
	// followed as a bundle. Default off, as imgpkg copies no referrers.
	Referrers bool
	// Platforms, when not empty, keeps only the children of each index
	// (roots and images of bundles; signatures and referrers are kept
	// whole) whose platform is one of them: the same OS and architecture,
	// and the same variant when one is given, after containerd's
	// normalisation (linux/arm64 matches linux/arm64/v8, x86_64 is amd64).
	// A child without a platform is kept; a Docker buildx attestation
	// manifest is kept with the image it describes. An index nested in an
	// index is filtered the same way, and left out when none of its images
	// is kept. Children left out are not read, nor are their referrers
	// looked for; they are listed in Node.LeftOut and the copy leaves them
	// out. An index with platform-specific children none of which is asked
	// for fails with ErrNoPlatformMatch, naming the platforms it has.
	// Default: every child is kept.
	Platforms []ocispec.Platform
	// RewriteIndexes replaces every root index that leaves children out by
	// a new index listing only the children kept (their descriptors
	// unchanged; nested indexes rewritten in turn), with the original's
	// annotations plus AnnotationOriginalIndexDigest. Node.Desc then
	// describes the new index, which is served from memory to the copy, and
	// Node.Rewrite the original; the root's RootSpec annotations in
	// Graph.Specs get AnnotationOriginalIndexDigest, so the ImagesLock of
	// the copy records it. The signatures and referrers of the original
	// index are left out (they name its digest). A graph with a followed
	// bundle fails with ErrRewriteBundle. Default off: indexes keep their
	// digest and are copied sparse.
	RewriteIndexes bool
	// Absent lists child manifests and indexes the source lacks on purpose
	// (a layout written by a copy with a platform filter records them): an
	// index child listed here is left out (Node.LeftOut, Absent set)
	// without being read. Default none.
	Absent []ocispec.Descriptor
	// Concurrency sets the registry requests in flight: manifest reads
	// are small, so up to 4 times Concurrency of them run at once. <= 0
	// means 5.
	Concurrency int
	// OnImage, when not nil, is called once for every node after it was read
	// (before a bundle's images are), for progress. Calls are serialized.
	OnImage func(n *Node)
}

// Discover resolves the roots in src and returns the graph of everything
// they reach. Tags are resolved at the registry.
//
// A manifest whose config has the label dev.carvel.imgpkg.bundle is a
// bundle: its single layer is read for .imgpkg/images.yml and every image
// listed there is looked up first at <bundle repo>@<digest> (not found, 401
// and 403 count as absent), then at the location written in images.yml.
// Nested bundles are followed. A digest met twice is one node. Indexes are
// nodes; their children are not, but their non-distributable layers are
// recorded on the index node. Requests run concurrently, bounded by
// 4 × opts.Concurrency.
//
// The graph keeps the bytes of the manifests and indexes read (nodes and
// index children, up to 16 MiB in all), so that [Gather] need not fetch
// them again.
//
// With opts.Platforms, each index keeps only the children of those
// platforms (Node.LeftOut lists the others); with opts.RewriteIndexes,
// root indexes are replaced by new ones listing only the children kept
// (Node.Rewrite).
//
// Errors name the reference at fault: ErrNotBundle or ErrIsBundle (with a
// hint to use -i or -b) when a root is not of its Kind, ErrBundleLayers,
// ErrImageNotFound, ErrNoPlatformMatch, ErrRewriteBundle, or the Source's
// error. Discover is safe for concurrent use if src is.
func Discover(ctx context.Context, src Source, roots []RootSpec, opts DiscoverOptions) (*Graph, error) {
	d := &discoverer{
		src:    src,
		opts:   opts,
		limit:  newLimiter(fanout(opts.Concurrency)),
		nodes:  make(map[digest.Digest]*Node),
		repos:  newRepoCache(src),
		absent: make(map[digest.Digest]bool, len(opts.Absent)),
	}
	for _, a := range opts.Absent {
		d.absent[a.Digest] = true
	}
	g := &Graph{Roots: make([]*Node, len(roots)), Specs: slices.Clone(roots)}
	err := forEach(ctx, len(roots), func(ctx context.Context, i int) error {
		n, err := d.root(ctx, roots[i])
		g.Roots[i] = n
		return err
	})
	if err != nil {
		return nil, err
	}
	for i, n := range g.Roots {
		n.Root = true
		if tag := rootTag(roots[i]); tag != "" && !slices.Contains(n.Tags, tag) {
			n.Tags = append(n.Tags, tag)
		}
	}
	unmarkListed(g.Roots)
	if opts.RewriteIndexes {
		if err := rewriteRoots(g); err != nil {
			return nil, err
		}
	}
	g.Nodes = depthFirst(g.Roots)
	g.manifests = d.bodies
	return g, nil
}

// maxKeptManifestBodies bounds the manifest bytes Discover keeps in the
// graph for the copy (Graph.manifests): beyond it, manifests are read from
// the source again.
const maxKeptManifestBodies = 16 << 20

// keep holds body, the verified content of the manifest or index dg, for
// the copy, while the budget lasts.
func (d *discoverer) keep(dg digest.Digest, body []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.bodies[dg]; ok || d.kept+int64(len(body)) > maxKeptManifestBodies {
		return
	}
	if d.bodies == nil {
		d.bodies = make(map[digest.Digest][]byte)
	}
	d.bodies[dg] = body
	d.kept += int64(len(body))
}

// rootTag is the tag to apply for a root: its Tag, else the tag in its Ref.
func rootTag(spec RootSpec) string {
	if spec.Tag != "" {
		return spec.Tag
	}
	_, _, tag, err := splitRef(spec.Ref)
	if err != nil {
		return ""
	}
	return tag
}

// depthFirst lists every node once: each node, its signatures, its
// referrers, its images.
func depthFirst(roots []*Node) []*Node {
	seen := make(map[*Node]bool)
	var out []*Node
	var visit func(n *Node)
	visit = func(n *Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
		for _, s := range n.Signatures {
			visit(s)
		}
		for _, r := range n.Referrers {
			visit(r)
		}
		for _, c := range n.Images {
			visit(c)
		}
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

// discoverer holds the state of one Discover call.
type discoverer struct {
	src   Source
	opts  DiscoverOptions
	limit limiter

	repos  *repoCache
	absent map[digest.Digest]bool // read-only: DiscoverOptions.Absent

	mu       sync.Mutex
	nodes    map[digest.Digest]*Node
	expanded map[*Node]bool
	bodies   map[digest.Digest][]byte // manifests read, kept for the copy (see keep)
	kept     int64                    // bytes held in bodies

	hookMu sync.Mutex
}

// repository returns the target for repo, asking the Source once per repo.
func (d *discoverer) repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	return d.repos.get(ctx, repo)
}

// fetch is fetchManifest under the concurrency limit.
func (d *discoverer) fetch(ctx context.Context, t oras.ReadOnlyTarget, reference string) (ocispec.Descriptor, []byte, error) {
	if err := d.limit.acquire(ctx); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer d.limit.release()
	return fetchManifest(ctx, t, reference)
}

// hasBundleLabel is hasBundleLabel under the concurrency limit.
func (d *discoverer) hasBundleLabel(ctx context.Context, t oras.ReadOnlyTarget, config ocispec.Descriptor) (bool, error) {
	if err := d.limit.acquire(ctx); err != nil {
		return false, err
	}
	defer d.limit.release()
	return hasBundleLabel(ctx, t, config)
}

// obtain returns the node of digest dg. The first caller creates it and runs
// load, which must set Repo and classify it; later callers wait until it is
// loaded (loading never waits for other nodes, so this cannot deadlock, and
// since a digest maps to one node, graphs with repeated digests terminate).
func (d *discoverer) obtain(ctx context.Context, dg digest.Digest, ref string, load func(ctx context.Context, n *Node) error) (*Node, bool, error) {
	d.mu.Lock()
	n, ok := d.nodes[dg]
	if !ok {
		n = &Node{Ref: ref, ready: make(chan struct{})}
		n.Desc.Digest = dg
		d.nodes[dg] = n
	}
	d.mu.Unlock()
	if ok {
		select {
		case <-n.ready:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if n.err != nil {
			return nil, false, n.err
		}
		return n, false, nil
	}
	n.err = load(ctx, n)
	close(n.ready)
	if n.err != nil {
		return nil, false, n.err
	}
	if d.opts.OnImage != nil {
		d.hookMu.Lock()
		d.opts.OnImage(n)
		d.hookMu.Unlock()
	}
	return n, true, nil
}

// root resolves one root, checks its kind and discovers what it reaches.
func (d *discoverer) root(ctx context.Context, spec RootSpec) (*Node, error) {
	repo, reference, _, err := splitRef(spec.Ref)
	if err != nil {
		return nil, err
	}
	t, err := d.repository(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Ref, err)
	}
	var (
		n     *Node
		isNew bool
	)
	if dg, perr := digest.Parse(reference); perr == nil {
		n, isNew, err = d.obtain(ctx, dg, spec.Ref, func(ctx context.Context, n *Node) error {
			n.Repo = repo
			desc, body, err := d.fetch(ctx, t, reference)
			if err != nil {
				return fmt.Errorf("%s: %w", spec.Ref, err)
			}
			return d.classify(ctx, n, t, desc, body)
		})
	} else {
		desc, body, ferr := d.fetch(ctx, t, reference)
		if ferr != nil {
			return nil, fmt.Errorf("%s: %w", spec.Ref, ferr)
		}
		n, isNew, err = d.obtain(ctx, desc.Digest, spec.Ref, func(ctx context.Context, n *Node) error {
			n.Repo = repo
			return d.classify(ctx, n, t, desc, body)
		})
	}
	if err != nil {
		return nil, err
	}
	switch {
	case spec.Kind == RootBundle && !n.Bundle:
		what := "an image"
		if n.Index {
			what = "an image index"
		}
		return nil, fmt.Errorf("%s (%s): %w: it is %s (hint: use -i for images)", spec.Ref, n.Desc.Digest, ErrNotBundle, what)
	case spec.Kind == RootImage && n.Bundle && !spec.AllowBundle:
		return nil, fmt.Errorf("%s (%s): %w (hint: use -b for bundles)", spec.Ref, n.Desc.Digest, ErrIsBundle)
	}
	follow := !(spec.Kind == RootImage && spec.AllowBundle)
	if err := d.settle(ctx, n, isNew, follow); err != nil {
		return nil, err
	}
	return n, nil
}

// settle finds the signatures and referrers of a new node and follows a
// bundle's images.
func (d *discoverer) settle(ctx context.Context, n *Node, isNew, follow bool) error {
	if isNew && d.opts.CosignSignatures && !n.Signature && !n.Referrer {
		if err := d.signatures(ctx, n); err != nil {
			return err
		}
	}
	if isNew && d.opts.Referrers {
		if err := d.referrers(ctx, n); err != nil {
			return err
		}
	}
	if !n.Bundle || !follow {
		return nil
	}
	d.mu.Lock()
	if d.expanded == nil {
		d.expanded = make(map[*Node]bool)
	}
	done := d.expanded[n]
	d.expanded[n] = true
	d.mu.Unlock()
	if done {
		return nil
	}
	return d.expand(ctx, n)
}

// expand reads a bundle's images.yml and discovers its images concurrently.
func (d *discoverer) expand(ctx context.Context, b *Node) error {
	t, err := d.repository(ctx, b.Repo)
	if err != nil {
		return err
	}
	lock, err := d.readLock(ctx, b, t)
	if err != nil {
		return err
	}
	images := make([]*Node, len(lock.Images))
	err = forEach(ctx, len(lock.Images), func(ctx context.Context, i int) error {
		ref := lock.Images[i].Image
		imgRepo, dgst, err := lockfile.SplitDigestRef(ref)
		if err != nil {
			return fmt.Errorf("bundle %s: images.yml: %w", b.Ref, err)
		}
		n, isNew, err := d.obtain(ctx, digest.Digest(dgst), ref, func(ctx context.Context, n *Node) error {
			return d.locate(ctx, n, b, imgRepo)
		})
		if err != nil {
			return err
		}
		images[i] = n
		return d.settle(ctx, n, isNew, true)
	})
	if err != nil {
		return err
	}
	b.Lock = lock
	b.Images = images
	return nil
}

// readLock reads images.yml from the bundle's single layer, verifying the
// whole layer against its digest.
func (d *discoverer) readLock(ctx context.Context, b *Node, t oras.ReadOnlyTarget) (*lockfile.ImagesLock, error) {
	if len(b.layers) != 1 {
		return nil, fmt.Errorf("bundle %s (%s) has %d layers: %w", b.Ref, b.Desc.Digest, len(b.layers), ErrBundleLayers)
	}
	layer := b.layers[0]
	if err := d.limit.acquire(ctx); err != nil {
		return nil, err
	}
	defer d.limit.release()
	lock, err := readImagesLock(ctx, t, layer)
	if err != nil {
		return nil, fmt.Errorf("bundle %s (%s): %w", b.Ref, b.Desc.Digest, err)
	}
	return lock, nil
}

// readImagesLock fetches a bundle layer and reads its images.yml, then reads
// the rest of the layer so that its digest is verified.
func readImagesLock(ctx context.Context, t oras.ReadOnlyTarget, layer ocispec.Descriptor) (*lockfile.ImagesLock, error) {
	rc, err := t.Fetch(ctx, layer)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	defer rc.Close()
	vr := verified(t, layer, rc)
	lock, err := bundle.ReadImagesLock(ctx, vr, layer.MediaType)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	return lock, nil
}

// locate finds an image of bundle b: at <bundle repo>@<digest> first, then
// in imgRepo, its location in images.yml.
func (d *discoverer) locate(ctx context.Context, n *Node, b *Node, imgRepo string) error {
	dg := n.Desc.Digest.String()
	if b.Repo != imgRepo {
		t, err := d.repository(ctx, b.Repo)
		if err != nil {
			return err
		}
		desc, body, err := d.fetch(ctx, t, dg)
		if err == nil {
			n.Repo = b.Repo
			return d.classify(ctx, n, t, desc, body)
		}
		if !isAbsent(err) {
			return fmt.Errorf("image %s of bundle %s, looked up at %s@%s: %w", n.Ref, b.Ref, b.Repo, dg, err)
		}
	}
	t, err := d.repository(ctx, imgRepo)
	if err != nil {
		return fmt.Errorf("image %s of bundle %s: %w", n.Ref, b.Ref, err)
	}
	desc, body, err := d.fetch(ctx, t, dg)
	if err != nil {
		if isAbsent(err) {
			return fmt.Errorf("image %s of bundle %s (not in %s either): %w: %w", n.Ref, b.Ref, b.Repo, ErrImageNotFound, err)
		}
		return fmt.Errorf("image %s of bundle %s: %w", n.Ref, b.Ref, err)
	}
	n.Repo = imgRepo
	return d.classify(ctx, n, t, desc, body)
}

// signatures looks up the cosign tags of n in n's repository.
func (d *discoverer) signatures(ctx context.Context, n *Node) error {
	t, err := d.repository(ctx, n.Repo)
	if err != nil {
		return err
	}
	suffixes := []string{".sig", ".att", ".sbom"}
	found := make([]*Node, len(suffixes))
	err = forEach(ctx, len(suffixes), func(ctx context.Context, i int) error {
		tag := digestTag(n.Desc.Digest, suffixes[i])
		desc, body, err := d.fetch(ctx, t, tag)
		if err != nil {
			if isAbsent(err) {
				return nil
			}
			return fmt.Errorf("signature %s:%s of %s: %w", n.Repo, tag, n.Ref, err)
		}
		s, isNew, err := d.obtain(ctx, desc.Digest, n.Repo+":"+tag, func(ctx context.Context, s *Node) error {
			s.Repo = n.Repo
			s.Signature = true
			return d.classify(ctx, s, t, desc, body)
		})
		if err != nil {
			return err
		}
		if isNew && d.opts.Referrers {
			if err := d.referrers(ctx, s); err != nil {
				return err
			}
		}
		d.mu.Lock()
		if !slices.Contains(s.Tags, tag) {
			s.Tags = append(s.Tags, tag)
		}
		d.mu.Unlock()
		found[i] = s
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range found {
		if s != nil {
			n.Signatures = append(n.Signatures, s)
		}
	}
	return nil
}

// classify records desc on n and finds out what n is: index or manifest,
// bundle or not, and its non-distributable layers.
func (d *discoverer) classify(ctx context.Context, n *Node, t oras.ReadOnlyTarget, desc ocispec.Descriptor, body []byte) error {
	n.Desc = desc
	if isIndex(desc.MediaType) || isImageManifest(desc.MediaType) {
		d.keep(desc.Digest, body)
	}
	switch {
	case isIndex(desc.MediaType):
		n.Index = true
		filter := len(d.opts.Platforms) > 0 && !n.Signature && !n.Referrer
		w, err := d.walkIndex(ctx, t, desc.Digest, body, map[digest.Digest]bool{desc.Digest: true}, filter)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", n.Ref, desc.Digest, err)
		}
		if filter && w.platformed > 0 && w.matched == 0 {
			want := make([]string, len(d.opts.Platforms))
			for i, p := range d.opts.Platforms {
				want[i] = FormatPlatform(p)
			}
			return fmt.Errorf("index %s (%s): %w (%s); it has %s", n.Ref, desc.Digest, ErrNoPlatformMatch,
				strings.Join(want, ", "), strings.Join(w.platforms, ", "))
		}
		n.NonDistributable = w.nd
		if d.opts.Referrers {
			n.children = w.children
		}
		if len(w.leftOut) > 0 {
			n.LeftOut = w.leftOut
			n.indexBodies = w.bodies
		}
		return nil
	case isImageManifest(desc.MediaType):
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("%s (%s): manifest: %w", n.Ref, desc.Digest, err)
		}
		n.layers = m.Layers
		n.NonDistributable = appendNonDistributable(nil, m.Layers)
		if n.Signature || n.Referrer {
			return nil // attached to another node, never followed as a bundle
		}
		isBundle, err := d.hasBundleLabel(ctx, t, m.Config)
		if err != nil {
			return fmt.Errorf("%s (%s): config %s: %w", n.Ref, desc.Digest, m.Config.Digest, err)
		}
		n.Bundle = isBundle
		return nil
	default:
		return fmt.Errorf("%s (%s): %w %q", n.Ref, desc.Digest, ErrUnsupportedMediaType, desc.MediaType)
	}
}

// walkIndex fetches the children of the index dg (concurrently) that the
// copy keeps (see selectChildren) and collects their non-distributable
// layers, descending into nested indexes; seen guards against revisiting.
// A nested index none of whose platform-specific images is kept is left
// out as a whole.
func (d *discoverer) walkIndex(ctx context.Context, t oras.ReadOnlyTarget, dg digest.Digest, body []byte, seen map[digest.Digest]bool, filter bool) (*indexWalk, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	w := &indexWalk{bodies: map[digest.Digest][]byte{dg: body}}
	var listed []ocispec.Descriptor
	for _, c := range idx.Manifests {
		if (isImageManifest(c.MediaType) || isIndex(c.MediaType)) && !seen[c.Digest] {
			seen[c.Digest] = true
			listed = append(listed, c)
		}
	}
	kids := d.selectChildren(dg, listed, filter, w)
	results := make([][]ocispec.Descriptor, len(kids))
	bodies := make([][]byte, len(kids))
	err := forEach(ctx, len(kids), func(ctx context.Context, i int) error {
		c := kids[i]
		if err := d.limit.acquire(ctx); err != nil {
			return err
		}
		raw, err := fetchSmall(ctx, t, c)
		d.limit.release()
		if err != nil {
			return fmt.Errorf("child %s: %w", c.Digest, err)
		}
		d.keep(c.Digest, raw)
		if isImageManifest(c.MediaType) {
			var m ocispec.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("child %s: %w", c.Digest, err)
			}
			results[i] = m.Layers
		} else {
			bodies[i] = raw
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, c := range kids {
		if bodies[i] == nil {
			w.children = append(w.children, plain(c))
			w.nd = appendNonDistributable(w.nd, results[i])
			continue
		}
		nested, err := d.walkIndex(ctx, t, c.Digest, bodies[i], seen, filter)
		if err != nil {
			return nil, err
		}
		if filter && nested.platformed > 0 && nested.matched == 0 {
			w.leftOut = append(w.leftOut, LeftOutChild{Parent: dg, Desc: c})
			w.platformed += nested.platformed
			w.addPlatforms(nested.platforms...)
			continue
		}
		w.children = append(w.children, plain(c))
		w.merge(nested)
	}
	return w, nil
}

// appendNonDistributable appends the non-distributable layers of layers not
// yet in out.
func appendNonDistributable(out, layers []ocispec.Descriptor) []ocispec.Descriptor {
	for _, l := range layers {
		if isNonDistributable(l) && !slices.ContainsFunc(out, func(o ocispec.Descriptor) bool { return o.Digest == l.Digest }) {
			out = append(out, l)
		}
	}
	return out
}
