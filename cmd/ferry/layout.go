package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

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
