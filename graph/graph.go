// Package graph models what ferry moves: a set of root references (bundles,
// images, indexes) and everything reachable from them, as one artifact graph.
//
// [Discover] resolves the roots through a [Source], reads every bundle's
// `.imgpkg/images.yml`, locates each image (the bundle's own repository
// first, then the location written in images.yml), recurses into nested
// bundles, marks non-distributable layers and optionally finds cosign
// signatures and OCI 1.1 referrers. [CopyToRepo] copies the whole graph into
// one repository with oras-go's CopyGraph, applying the imgpkg tag
// conventions, and [Pull] extracts a bundle or image into a directory.
//
// The package never prints: progress leaves through the hooks of the options
// structs. It does no registry configuration either; a [Source] hands it
// ready-to-use repositories.
package graph

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/lockfile"
)

// Source gives read access to repositories by name ("host/path", no tag or
// digest). A registry client, a caching store in front of it, an OCI layout
// and the tests' memory stores all satisfy it.
//
// The returned targets must resolve tags and digest references ("sha256:...")
// to descriptors, as oras-go's remote.Repository does, and should return
// errors matching errdef.ErrNotFound for missing content. Implementations
// must be safe for concurrent use: Discover and CopyToRepo call them from
// several goroutines.
type Source interface {
	Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error)
}

// Sentinel errors. Errors returned by this package wrap one of them (or an
// error of oras-go or of the Source) together with the reference or digest at
// fault; test with [errors.Is].
var (
	// ErrNotBundle means a reference given as a bundle (-b) is not a bundle.
	ErrNotBundle = errors.New("not a bundle")
	// ErrIsBundle means a reference given as an image (-i) is a bundle.
	ErrIsBundle = errors.New("is a bundle")
	// ErrIsIndex means an image index was given where an image is needed (pull).
	ErrIsIndex = errors.New("is an image index")
	// ErrBundleLayers means a bundle does not have exactly one layer.
	ErrBundleLayers = errors.New("bundle must have exactly one layer")
	// ErrImageNotFound means an image listed in a bundle's images.yml was
	// found neither in the bundle's repository nor at its own location.
	ErrImageNotFound = errors.New("image not found")
	// ErrInvalidReference means a reference could not be split into a
	// repository and a tag or digest.
	ErrInvalidReference = errors.New("invalid reference")
	// ErrDigestMismatch means content or a resolved descriptor did not match
	// the digest it was asked for.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrUnsupportedMediaType means a root or bundle image is neither an
	// image manifest nor an image index.
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrTooLarge means a manifest or config is larger than this package
	// reads into memory (4 MiB).
	ErrTooLarge = errors.New("too large")
	// ErrNoBundleRoot means a BundleLock was asked for a copy whose roots are
	// not exactly one bundle given as a bundle (-b or a BundleLock).
	ErrNoBundleRoot = errors.New("no bundle root")
)

// RootKind says what a root reference is expected to be.
type RootKind int

const (
	// RootAny accepts bundles, images and indexes (roots read from an
	// ImagesLock). It is the zero value.
	RootAny RootKind = iota
	// RootBundle requires a bundle (-b, or a BundleLock).
	RootBundle
	// RootImage requires an image or index that is not a bundle (-i), unless
	// RootSpec.AllowBundle is set.
	RootImage
)

// String returns "any", "bundle" or "image".
func (k RootKind) String() string {
	switch k {
	case RootBundle:
		return "bundle"
	case RootImage:
		return "image"
	default:
		return "any"
	}
}

// RootSpec is one root of a graph as the user gave it.
type RootSpec struct {
	// Ref is REPO:TAG or REPO@DIGEST (REPO:TAG@DIGEST is read as REPO@DIGEST
	// with the tag kept). REPO is "host/path"; no Docker Hub defaulting is
	// done here.
	Ref string
	// Kind is what Ref must be; the zero value accepts anything.
	Kind RootKind
	// AllowBundle lets a RootImage be a bundle, which is then treated as a
	// plain image: its images.yml is not followed (imgpkg's
	// --image-is-bundle-check=false).
	AllowBundle bool
	// Tag is applied at the destination after everything was copied. Empty
	// means the tag written in Ref, if any.
	Tag string
	// Annotations are carried to the ImagesLock written for this root
	// (roots read from an ImagesLock keep theirs).
	Annotations map[string]string
}

// Node is one manifest or index of the graph: a bundle, an image, an index, a
// signature or a referrer. Children of indexes, configs and layers are not
// nodes; oras-go copies them as successors of their node.
//
// Discover fills nodes in; after it returns they are read-only and safe for
// concurrent reads.
type Node struct {
	// Desc describes the manifest or index (media type, digest, size).
	Desc ocispec.Descriptor
	// Ref is the reference as first met: written in images.yml, given on the
	// command line, or REPO:TAG for signatures.
	Ref string
	// Repo is the repository ("host/path") the node was found in and is read
	// from; for a bundle's image it is the bundle's repository when the image
	// is there.
	Repo string
	// Bundle is true for an image whose config has the label
	// dev.carvel.imgpkg.bundle (an index is never a bundle).
	Bundle bool
	// Index is true for an image index or a Docker manifest list.
	Index bool
	// Signature is true for a cosign signature, attestation or SBOM found by
	// its sha256-<hex>.sig/.att/.sbom tag.
	Signature bool
	// Lock is the bundle's images.yml, nil for other nodes (and for bundles
	// treated as plain images).
	Lock *lockfile.ImagesLock
	// Images are the nodes of Lock.Images, in the same order; a digest listed
	// twice points to the same node.
	Images []*Node
	// Signatures are the signature nodes of this node.
	Signatures []*Node
	// Referrer is true for a manifest or index found only as an OCI 1.1
	// referrer of another node (DiscoverOptions.Referrers): its subject is
	// that node or one of that index's child manifests. A node that is also
	// a root or an image of a bundle is not a Referrer. Referrers are copied
	// by digest only: no sha256-<hex>.imgpkg tag, and they are not listed in
	// a bundle's ImageLocations. Desc.ArtifactType holds the referrer's
	// artifact type (its artifactType field, else its config's media type)
	// and Desc.Annotations the manifest's annotations.
	Referrer bool
	// Subject is the digest of the manifest a node refers to (its `subject`
	// field) when the node was found as a referrer; empty otherwise.
	Subject digest.Digest
	// Referrers are the referrer nodes of this node and, for an index, of
	// its child manifests, sorted by digest (DiscoverOptions.Referrers).
	Referrers []*Node
	// NonDistributable lists the non-distributable (foreign) layers of the
	// node and, for an index, of its children; each digest once.
	NonDistributable []ocispec.Descriptor
	// Root is true when the node is one of the roots.
	Root bool
	// Tags are applied at the destination after everything was copied: user
	// tags of roots, and the original tag of signatures.
	Tags []string
	// LeftOut lists the children of an index (nested indexes' children
	// included) that the copy leaves out: those whose platform
	// DiscoverOptions.Platforms does not ask for, with their attestation
	// manifests, and those listed in DiscoverOptions.Absent. Everything only
	// they reach (their referrers too) is left out. Unless Rewrite is set,
	// the index itself is copied unchanged (same digest): a sparse index.
	// Empty for other nodes.
	LeftOut []LeftOutChild
	// Rewrite is set when DiscoverOptions.RewriteIndexes replaced this
	// index by a new one listing only the children kept: Desc then
	// describes the new index and Rewrite.Original the one at the source.
	Rewrite *IndexRewrite

	layers      []ocispec.Descriptor     // layers of an image manifest
	children    []ocispec.Descriptor     // kept child manifests and indexes of an index, nested ones included (for referrers)
	indexBodies map[digest.Digest][]byte // an index leaving children out, and the indexes nested in it, by digest
	ready       chan struct{}            // closed once Desc, Bundle, Index and NonDistributable are set
	err         error                    // set before ready is closed when the node could not be read
}

// Location returns Repo@Digest, where the node is read from.
func (n *Node) Location() string {
	return n.Repo + "@" + n.Desc.Digest.String()
}

// Graph is the result of Discover.
type Graph struct {
	// Roots are the root nodes, one per RootSpec in the same order (two specs
	// naming one digest share the node).
	Roots []*Node
	// Specs are the RootSpecs the graph was discovered from.
	Specs []RootSpec
	// Nodes holds every node once, in a deterministic depth-first order:
	// each node, then its signatures, its referrers, then its images.
	Nodes []*Node

	extra     map[digest.Digest][]byte // indexes written by DiscoverOptions.RewriteIndexes
	manifests map[digest.Digest][]byte // manifests and indexes Discover read (verified), within a budget; read-only
}

// Bundles returns the bundle nodes (followed bundles only, Lock != nil) in
// the order of Nodes.
func (g *Graph) Bundles() []*Node {
	var out []*Node
	for _, n := range g.Nodes {
		if n.Lock != nil {
			out = append(out, n)
		}
	}
	return out
}
