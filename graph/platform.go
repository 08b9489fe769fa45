package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Errors of the platform filter (DiscoverOptions.Platforms).
var (
	// ErrInvalidPlatform means a platform string is not os/arch[/variant].
	ErrInvalidPlatform = errors.New("invalid platform")
	// ErrNoPlatformMatch means the platform filter keeps no child of an
	// index that has platform-specific children.
	ErrNoPlatformMatch = errors.New("no child of the index matches the platforms asked for")
	// ErrRewriteBundle means indexes were to be rewritten
	// (DiscoverOptions.RewriteIndexes) in a graph holding a bundle, whose
	// images.yml pins the digest of every index it lists.
	ErrRewriteBundle = errors.New("indexes cannot be rewritten below a bundle")
	// ErrSparseIndexRefused means the destination refused an index whose
	// left-out children it does not hold. See [SparseIndexError].
	ErrSparseIndexRefused = errors.New("the registry refused an index whose children are left out")
)

// AnnotationOriginalIndexDigest is set by DiscoverOptions.RewriteIndexes on
// a rewritten index (and on the RootSpec annotations of the root, so that
// an ImagesLock written for the copy records it): the digest of the index
// it replaces.
const AnnotationOriginalIndexDigest = "dev.ferry-oci.original-index-digest"

// Docker buildx's annotations on the attestation manifests of an index.
const (
	annotationDockerReferenceType   = "vnd.docker.reference.type"
	annotationDockerReferenceDigest = "vnd.docker.reference.digest"
	dockerAttestationManifest       = "attestation-manifest"
)

// ParsePlatform parses "os/arch" or "os/arch/variant" (as in
// "linux/amd64", "linux/arm64/v8"). The parts are lower-cased; each must be
// non-empty and made of letters, digits, '.', '_' and '-'. Other strings
// fail with ErrInvalidPlatform naming them. Normalisation (x86_64 is amd64,
// arm64/v8 is arm64, ...) happens when matching, so the result prints back
// as written.
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, fmt.Errorf("%q: %w: want os/arch[/variant], for example linux/amd64 or linux/arm64/v8", s, ErrInvalidPlatform)
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
			return ocispec.Platform{}, fmt.Errorf("%q: %w: want os/arch[/variant], for example linux/amd64 or linux/arm64/v8", s, ErrInvalidPlatform)
		}
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// FormatPlatform returns "os/arch" or "os/arch/variant".
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// normalizeOS and normalizeArch follow containerd's platforms package:
// lower case, macos is darwin, x86_64 is amd64, aarch64 is arm64, arm64/v8
// is arm64, a plain arm is arm/v7, armhf is arm/v7 and armel arm/v6.
func normalizeOS(os string) string {
	os = strings.ToLower(os)
	if os == "macos" {
		return "darwin"
	}
	return os
}

func normalizeArch(arch, variant string) (string, string) {
	arch, variant = strings.ToLower(arch), strings.ToLower(variant)
	switch arch {
	case "i386":
		return "386", ""
	case "x86_64", "x86-64", "amd64":
		if variant == "v1" {
			variant = ""
		}
		return "amd64", variant
	case "aarch64", "arm64":
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		case "9", "9.0", "v9.0":
			variant = "v9"
		}
		return "arm64", variant
	case "armhf":
		return "arm", "v7"
	case "armel":
		return "arm", "v6"
	case "arm":
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
		return "arm", variant
	}
	return arch, variant
}

// platformMatches reports whether p is one of want: the same OS and
// architecture after normalisation, and the same variant when the wanted
// platform names one (linux/arm64 matches linux/arm64/v8; linux/arm/v7
// matches linux/arm but not linux/arm/v6). OS version and features are not
// compared.
func platformMatches(want []ocispec.Platform, p ocispec.Platform) bool {
	os := normalizeOS(p.OS)
	arch, variant := normalizeArch(p.Architecture, p.Variant)
	for _, w := range want {
		wArch, wVariant := normalizeArch(w.Architecture, w.Variant)
		if normalizeOS(w.OS) != os || wArch != arch {
			continue
		}
		if w.Variant == "" || wVariant == variant {
			return true
		}
	}
	return false
}

// isAttestation reports whether an index child is a Docker buildx
// attestation manifest, and of which child.
func isAttestation(desc ocispec.Descriptor) (subject digest.Digest, ok bool) {
	if desc.Annotations[annotationDockerReferenceType] != dockerAttestationManifest {
		return "", false
	}
	return digest.Digest(desc.Annotations[annotationDockerReferenceDigest]), true
}

// LeftOutChild is a child of an index that a copy leaves out.
type LeftOutChild struct {
	// Parent is the digest of the index that lists the child (the node's
	// own, as the source has it, or that of an index nested in it).
	Parent digest.Digest
	// Desc is the child as Parent lists it (platform and annotations kept).
	Desc ocispec.Descriptor
	// Attestation is true for a Docker buildx attestation manifest, left
	// out with the image it describes.
	Attestation bool
	// Absent is true when the source lacks the child on purpose
	// (DiscoverOptions.Absent) rather than the platform filter leaving it
	// out.
	Absent bool
}

// IndexRewrite records how DiscoverOptions.RewriteIndexes replaced an
// index node.
type IndexRewrite struct {
	// Original describes the index as the source has it; Node.Desc
	// describes the new one.
	Original ocispec.Descriptor
	// Detached are the signatures and referrers of the original index: they
	// name its digest, so they are not copied with the new one.
	Detached []*Node
}

// indexWalk is what classify learns from an index and the indexes nested in
// it.
type indexWalk struct {
	nd       []ocispec.Descriptor     // non-distributable layers of what is kept
	children []ocispec.Descriptor     // kept child manifests and indexes, nested ones included (plain)
	leftOut  []LeftOutChild           // children left out, nested ones included
	bodies   map[digest.Digest][]byte // the index and every nested index kept
	// platforms are those of the platform-specific children met (formatted,
	// each once); platformed counts them, matched those kept.
	platforms           []string
	platformed, matched int
}

func (w *indexWalk) merge(o *indexWalk) {
	w.nd = appendNonDistributable(w.nd, o.nd)
	w.children = append(w.children, o.children...)
	w.leftOut = append(w.leftOut, o.leftOut...)
	for k, v := range o.bodies {
		w.bodies[k] = v
	}
	w.addPlatforms(o.platforms...)
	w.platformed += o.platformed
	w.matched += o.matched
}

func (w *indexWalk) addPlatforms(ps ...string) {
	for _, p := range ps {
		if !slices.Contains(w.platforms, p) {
			w.platforms = append(w.platforms, p)
		}
	}
}

// selectChildren decides which children of the index dg (listed in kids)
// are kept: those the source lacks on purpose are left out; with filter,
// images and indexes whose platform is not asked for are left out, with the
// attestation manifests of the images left out. Children without a
// platform are kept.
func (d *discoverer) selectChildren(dg digest.Digest, kids []ocispec.Descriptor, filter bool, w *indexWalk) []ocispec.Descriptor {
	keep := make([]bool, len(kids))
	kept := map[digest.Digest]bool{}
	for i, c := range kids {
		if d.absent[c.Digest] {
			w.leftOut = append(w.leftOut, LeftOutChild{Parent: dg, Desc: c, Absent: true})
			continue
		}
		if _, att := isAttestation(c); att && filter {
			continue // decided below, once the images are
		}
		if !filter || c.Platform == nil {
			keep[i], kept[c.Digest] = true, true
			continue
		}
		match := platformMatches(d.opts.Platforms, *c.Platform)
		if match && isIndex(c.MediaType) {
			// A nested index counts by the images it keeps.
			keep[i], kept[c.Digest] = true, true
			continue
		}
		w.platformed++
		w.addPlatforms(FormatPlatform(*c.Platform))
		if match {
			w.matched++
			keep[i], kept[c.Digest] = true, true
			continue
		}
		w.leftOut = append(w.leftOut, LeftOutChild{Parent: dg, Desc: c})
	}
	var out []ocispec.Descriptor
	for i, c := range kids {
		if subject, att := isAttestation(c); att && filter && !d.absent[c.Digest] {
			// An attestation of an image this index does not list is kept:
			// there is nothing to judge it by.
			listed := slices.ContainsFunc(kids, func(o ocispec.Descriptor) bool { return o.Digest == subject })
			if listed && !kept[subject] {
				w.leftOut = append(w.leftOut, LeftOutChild{Parent: dg, Desc: c, Attestation: true})
				continue
			}
			keep[i] = true
		}
		if keep[i] {
			out = append(out, c)
		}
	}
	return out
}

// rewriteIndex returns a new index in place of the index dg: its body with
// "manifests" listing only the children kept (their descriptors unchanged,
// except nested indexes rewritten in turn, whose digest and size change)
// and the annotation AnnotationOriginalIndexDigest added; every other field
// is kept. It returns dg's own descriptor unchanged (and false) when
// nothing below dg is left out. New bodies are added to out by digest.
func rewriteIndex(desc ocispec.Descriptor, bodies map[digest.Digest][]byte, drop map[digest.Digest]map[digest.Digest]bool, out map[digest.Digest][]byte) (ocispec.Descriptor, bool, error) {
	body, ok := bodies[desc.Digest]
	if !ok {
		return desc, false, nil // not an index met by the walk (or not kept)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return desc, false, fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	var manifests []json.RawMessage
	if err := json.Unmarshal(fields["manifests"], &manifests); err != nil {
		return desc, false, fmt.Errorf("index %s: manifests: %w", desc.Digest, err)
	}
	changed := false
	kept := make([]json.RawMessage, 0, len(manifests))
	for _, raw := range manifests {
		var c ocispec.Descriptor
		if err := json.Unmarshal(raw, &c); err != nil {
			return desc, false, fmt.Errorf("index %s: manifests: %w", desc.Digest, err)
		}
		if drop[desc.Digest][c.Digest] {
			changed = true
			continue
		}
		if isIndex(c.MediaType) {
			nc, ch, err := rewriteIndex(plain(c), bodies, drop, out)
			if err != nil {
				return desc, false, err
			}
			if ch {
				changed = true
				var m map[string]json.RawMessage
				if err := json.Unmarshal(raw, &m); err != nil {
					return desc, false, fmt.Errorf("index %s: manifests: %w", desc.Digest, err)
				}
				m["digest"], _ = json.Marshal(nc.Digest)
				m["size"], _ = json.Marshal(nc.Size)
				if raw, err = json.Marshal(m); err != nil {
					return desc, false, err
				}
			}
		}
		kept = append(kept, raw)
	}
	if !changed {
		return desc, false, nil
	}
	var ann map[string]string
	if a, ok := fields["annotations"]; ok {
		if err := json.Unmarshal(a, &ann); err != nil {
			return desc, false, fmt.Errorf("index %s: annotations: %w", desc.Digest, err)
		}
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationOriginalIndexDigest] = desc.Digest.String()
	var err error
	if fields["manifests"], err = json.Marshal(kept); err != nil {
		return desc, false, err
	}
	if fields["annotations"], err = json.Marshal(ann); err != nil {
		return desc, false, err
	}
	newBody, err := json.Marshal(fields)
	if err != nil {
		return desc, false, err
	}
	nd := ocispec.Descriptor{MediaType: desc.MediaType, Digest: digest.FromBytes(newBody), Size: int64(len(newBody))}
	out[nd.Digest] = newBody
	return nd, true, nil
}

// dropSet lists, by index digest, the children left out.
func dropSet(leftOut []LeftOutChild) map[digest.Digest]map[digest.Digest]bool {
	drop := map[digest.Digest]map[digest.Digest]bool{}
	for _, c := range leftOut {
		if drop[c.Parent] == nil {
			drop[c.Parent] = map[digest.Digest]bool{}
		}
		drop[c.Parent][c.Desc.Digest] = true
	}
	return drop
}

// rewriteRoots replaces every root index that leaves children out with a
// new index listing only the children kept (DiscoverOptions.RewriteIndexes).
// It refuses a graph with a followed bundle: its images.yml pins the digests.
func rewriteRoots(g *Graph) error {
	for i, n := range g.Roots {
		if n.Lock != nil {
			return fmt.Errorf("%s (%s): %w: the bundle's .imgpkg/images.yml pins each index it lists by digest, so it would no longer match a rewritten index", g.Specs[i].Ref, n.Desc.Digest, ErrRewriteBundle)
		}
	}
	done := map[*Node]bool{}
	for i, n := range g.Roots {
		if !n.Index || n.Signature || n.Referrer || len(n.LeftOut) == 0 {
			continue
		}
		if !done[n] {
			done[n] = true
			if err := rewriteNode(g, n); err != nil {
				return err
			}
		}
		if n.Rewrite == nil {
			continue
		}
		ann := make(map[string]string, len(g.Specs[i].Annotations)+1)
		for k, v := range g.Specs[i].Annotations {
			ann[k] = v
		}
		ann[AnnotationOriginalIndexDigest] = n.Rewrite.Original.Digest.String()
		g.Specs[i].Annotations = ann
	}
	return nil
}

// rewriteNode replaces the index node n by a new index and detaches the
// signatures and referrers that name the original digest.
func rewriteNode(g *Graph, n *Node) error {
	if g.extra == nil {
		g.extra = map[digest.Digest][]byte{}
	}
	nd, changed, err := rewriteIndex(plain(n.Desc), n.indexBodies, dropSet(n.LeftOut), g.extra)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Ref, err)
	}
	if !changed {
		return nil
	}
	rw := &IndexRewrite{Original: n.Desc}
	rw.Detached = append(rw.Detached, n.Signatures...)
	n.Signatures = nil
	var refs []*Node
	for _, r := range n.Referrers {
		if r.Subject == rw.Original.Digest {
			rw.Detached = append(rw.Detached, r)
			continue
		}
		refs = append(refs, r)
	}
	n.Referrers = refs
	nd.ArtifactType = n.Desc.ArtifactType
	n.Desc = nd
	n.Rewrite = rw
	return nil
}

// prunedChildren lists, by index digest, the children a copy of g leaves
// out of indexes it copies as they are (sparse indexes).
func prunedChildren(g *Graph) map[digest.Digest]map[digest.Digest]bool {
	var all []LeftOutChild
	for _, n := range g.Nodes {
		if n.Rewrite == nil {
			all = append(all, n.LeftOut...)
		}
	}
	return dropSet(all)
}

// sparseIndexes maps the digest of every index copied without some of its
// children (the node's own and nested ones) to its node.
func sparseIndexes(g *Graph) map[digest.Digest]*Node {
	out := map[digest.Digest]*Node{}
	for _, n := range g.Nodes {
		if n.Rewrite != nil {
			continue
		}
		for _, c := range n.LeftOut {
			out[c.Parent] = n
		}
	}
	return out
}

// withoutPruned returns succ without the children of parent in drop.
func withoutPruned(drop map[digest.Digest]map[digest.Digest]bool, parent digest.Digest, succ []ocispec.Descriptor) []ocispec.Descriptor {
	gone := drop[parent]
	if len(gone) == 0 {
		return succ
	}
	out := make([]ocispec.Descriptor, 0, len(succ))
	for _, s := range succ {
		if !gone[s.Digest] {
			out = append(out, s)
		}
	}
	return out
}

// extraBlobs serves the indexes Discover wrote (RewriteIndexes) from
// memory and everything else from the storage it wraps.
type extraBlobs struct {
	content.ReadOnlyStorage
	blobs map[digest.Digest][]byte
	wrap  func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser // may be nil
}

func (e extraBlobs) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if b, ok := e.blobs[desc.Digest]; ok {
		var rc io.ReadCloser = io.NopCloser(bytes.NewReader(b))
		if e.wrap != nil {
			rc = e.wrap(desc, rc)
		}
		return rc, nil
	}
	return e.ReadOnlyStorage.Fetch(ctx, desc)
}

func (e extraBlobs) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if _, ok := e.blobs[desc.Digest]; ok {
		return true, nil
	}
	return e.ReadOnlyStorage.Exists(ctx, desc)
}

// SparseIndexError says that the destination refused an index the copy
// keeps as it is (same digest) while leaving some of its children out. It
// wraps ErrSparseIndexRefused and the destination's answer.
type SparseIndexError struct {
	// Node is the index node (the refused index is Digest: the node's, or
	// one nested in it).
	Node *Node
	// Digest is the refused index.
	Digest digest.Digest
	// Err is the destination's answer.
	Err error
}

func (e *SparseIndexError) Error() string {
	what := e.Node.Ref
	if !strings.Contains(what, "@") {
		what += "@" + e.Node.Desc.Digest.String()
	}
	if e.Digest != e.Node.Desc.Digest {
		what = fmt.Sprintf("%s (nested in %s)", e.Digest, what)
	}
	return fmt.Sprintf("index %s: %s (a sparse copy keeps the index digest): %v; "+
		"the registry must be configured to accept indexes whose children are missing: for the CNCF distribution registry, "+
		"set validation.manifests.indexes.platforms: none (or list, with validation.manifests.indexes.platformlist naming only the platforms copied)",
		what, ErrSparseIndexRefused, e.Err)
}

func (e *SparseIndexError) Unwrap() []error { return []error{ErrSparseIndexRefused, e.Err} }

// refusedManifest reports whether a registry answer to a manifest push is
// a refusal of its content (400, 404 or 422: MANIFEST_BLOB_UNKNOWN,
// MANIFEST_INVALID, ...) rather than of access or a transient failure.
func refusedManifest(err error) bool {
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) {
		return false
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// sparseGuard names a sparse index refused by the destination.
type sparseGuard struct {
	content.Storage
	sparse map[digest.Digest]*Node
}

func (s sparseGuard) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	err := s.Storage.Push(ctx, desc, r)
	if n := s.sparse[desc.Digest]; n != nil && err != nil && refusedManifest(err) {
		return &SparseIndexError{Node: n, Digest: desc.Digest, Err: err}
	}
	return err
}

// sparseGuardMounter keeps the destination's cross-repository mount
// visible behind sparseGuard.
type sparseGuardMounter struct {
	sparseGuard
	mounter registry.Mounter
}

func (m sparseGuardMounter) Mount(ctx context.Context, desc ocispec.Descriptor, fromRepo string, getContent func() (io.ReadCloser, error)) error {
	return m.mounter.Mount(ctx, desc, fromRepo, getContent)
}

// guardSparse wraps dst so that a refused sparse index of g is named.
func guardSparse(dst content.Storage, g *Graph) content.Storage {
	sparse := sparseIndexes(g)
	if len(sparse) == 0 {
		return dst
	}
	sg := sparseGuard{Storage: dst, sparse: sparse}
	if m, ok := dst.(registry.Mounter); ok {
		return sparseGuardMounter{sparseGuard: sg, mounter: m}
	}
	return sg
}
