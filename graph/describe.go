package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// DescribeOptions tunes [Describe]. The zero value reads with concurrency 5.
type DescribeOptions struct {
	// Concurrency bounds the registry requests in flight. <= 0 means 5.
	Concurrency int
}

// Manifest is an image manifest or an index as [Describe] reads it: its
// descriptor and what it references.
type Manifest struct {
	// Desc describes the manifest. For a child of an index it is the entry
	// of the index, platform included.
	Desc ocispec.Descriptor
	// Config is the config of an image manifest; zero for an index.
	Config ocispec.Descriptor
	// Layers are the layers of an image manifest, in order (none for an index).
	Layers []ocispec.Descriptor
	// Children are the entries of an index, in its order, each read in turn
	// (nested indexes included). Entries that are neither manifests nor
	// indexes have only Desc.
	Children []*Manifest
	// Size is the number of bytes of the manifest and of everything it
	// references (config, layers, children and theirs), as declared in the
	// descriptors, each blob counted once. Non-distributable layers count.
	Size int64

	blobs map[digest.Digest]int64 // every blob of Size, with its size
}

// IsIndex reports whether m is an image index (or a Docker manifest list).
func (m *Manifest) IsIndex() bool { return isIndex(m.Desc.MediaType) }

// Description is what [Describe] learned about a graph. It is read-only once
// Describe returns and safe for concurrent reads.
type Description struct {
	// Graph is the graph described.
	Graph *Graph

	manifests map[*Node]*Manifest
}

// Manifest returns what n holds: config and layers, or index children, and
// its size. It returns nil for a node that is not in the described graph.
func (d *Description) Manifest(n *Node) *Manifest {
	return d.manifests[n]
}

// Total returns the bytes and the number of distinct blobs of n and
// everything that comes with it: its manifest and what it references, its
// signatures and referrers and, for a followed bundle, all its images and
// theirs, recursively. Each blob is counted once.
func (d *Description) Total(n *Node) (bytes int64, blobs int) {
	return d.total([]*Node{n})
}

// GraphTotal is [Description.Total] over all the roots of the graph: what a
// copy of the whole graph holds.
func (d *Description) GraphTotal() (bytes int64, blobs int) {
	return d.total(d.Graph.Roots)
}

func (d *Description) total(roots []*Node) (int64, int) {
	all := make(map[digest.Digest]int64)
	seen := make(map[*Node]bool)
	var visit func(n *Node)
	visit = func(n *Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		if m := d.manifests[n]; m != nil {
			maps.Copy(all, m.blobs)
		}
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
	var sum int64
	for _, size := range all {
		sum += size
	}
	return sum, len(all)
}

// Describe reads, for every node of g, what [Discover] does not keep: the
// config and layers of each image manifest and the children of each index
// (with their platforms, nested indexes followed), and computes their sizes.
// Manifests are read by digest through src from each node's repository,
// verified, with at most opts.Concurrency requests in flight.
//
// Errors name the node and digest at fault and wrap the Source's error (or
// ErrTooLarge, ErrDigestMismatch). Describe is safe for concurrent use if
// src is; it does not modify g.
func Describe(ctx context.Context, src Source, g *Graph, opts DescribeOptions) (*Description, error) {
	r := &describer{limit: newLimiter(opts.Concurrency), repos: newRepoCache(src)}
	found := make([]*Manifest, len(g.Nodes))
	err := forEach(ctx, len(g.Nodes), func(ctx context.Context, i int) error {
		n := g.Nodes[i]
		t, err := r.repos.get(ctx, n.Repo)
		if err != nil {
			return fmt.Errorf("%s: %w", n.Ref, err)
		}
		m, err := r.read(ctx, t, n.Desc, nil)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", n.Ref, n.Desc.Digest, err)
		}
		found[i] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	d := &Description{Graph: g, manifests: make(map[*Node]*Manifest, len(g.Nodes))}
	for i, n := range g.Nodes {
		d.manifests[n] = found[i]
	}
	return d, nil
}

// describer holds the state of one Describe call.
type describer struct {
	limit limiter
	repos *repoCache
}

// read fetches the manifest or index desc from t and, for an index, its
// children (concurrently). parents guards against an index listing itself.
func (r *describer) read(ctx context.Context, t oras.ReadOnlyTarget, desc ocispec.Descriptor, parents []digest.Digest) (*Manifest, error) {
	m := &Manifest{Desc: desc, blobs: map[digest.Digest]int64{desc.Digest: desc.Size}}
	if err := r.limit.acquire(ctx); err != nil {
		return nil, err
	}
	body, err := fetchSmall(ctx, t, desc)
	r.limit.release()
	if err != nil {
		return nil, err
	}
	mediaType := desc.MediaType
	if !isImageManifest(mediaType) && !isIndex(mediaType) {
		mediaType = sniffMediaType(body, mediaType)
		m.Desc.MediaType = mediaType
	}
	switch {
	case isImageManifest(mediaType):
		var man ocispec.Manifest
		if err := json.Unmarshal(body, &man); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		m.Config, m.Layers = man.Config, man.Layers
		if man.Config.Digest != "" {
			m.blobs[man.Config.Digest] = man.Config.Size
		}
		for _, l := range man.Layers {
			m.blobs[l.Digest] = l.Size
		}
	case isIndex(mediaType):
		var idx ocispec.Index
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		parents = append(parents[:len(parents):len(parents)], desc.Digest)
		m.Children = make([]*Manifest, len(idx.Manifests))
		err := forEach(ctx, len(idx.Manifests), func(ctx context.Context, i int) error {
			c := idx.Manifests[i]
			if (!isImageManifest(c.MediaType) && !isIndex(c.MediaType)) || slices.Contains(parents, c.Digest) {
				m.Children[i] = &Manifest{Desc: c, Size: c.Size, blobs: map[digest.Digest]int64{c.Digest: c.Size}}
				return nil
			}
			child, err := r.read(ctx, t, c, parents)
			if err != nil {
				return fmt.Errorf("child %s: %w", c.Digest, err)
			}
			m.Children[i] = child
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, c := range m.Children {
			maps.Copy(m.blobs, c.blobs)
		}
	default:
		return nil, fmt.Errorf("%s: %w %q", desc.Digest, ErrUnsupportedMediaType, mediaType)
	}
	for _, size := range m.blobs {
		m.Size += size
	}
	return m, nil
}
