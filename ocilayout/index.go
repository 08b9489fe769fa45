package ocilayout

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Annotations ferry writes on the roots listed in index.json. See the package
// documentation for what each one holds.
const (
	// AnnotationRefName is the OCI reference name of a root: its tag when
	// one is known, otherwise "sha256-<hex>.imgpkg".
	AnnotationRefName = ocispec.AnnotationRefName
	// AnnotationContainerdName is the image name containerd gives the root
	// on "ctr images import": the reference as written by the user.
	AnnotationContainerdName = "io.containerd.image.name"
	// AnnotationFerryOriginalRef is the reference the root was first met
	// under (images.yml entry or command line), as written.
	AnnotationFerryOriginalRef = "dev.ferry-oci.original-ref"
	// AnnotationFerryTag is a tag to apply to the root at the destination
	// (a user tag, or the original tag of a signature). Absent when none.
	AnnotationFerryTag = "dev.ferry-oci.tag"
	// AnnotationFerryBundle is "true" on roots that are imgpkg bundles.
	AnnotationFerryBundle = "dev.ferry-oci.bundle"
	// AnnotationFerryRootBundle is "true" on the bundle that was asked for
	// as a bundle (-b or a BundleLock): lock output is a BundleLock for it.
	AnnotationFerryRootBundle = "dev.ferry-oci.root-bundle"
	// AnnotationFerryRequests is a JSON array of [Request]: where the root
	// was asked for on the command line or in a --lock file.
	AnnotationFerryRequests = "dev.ferry-oci.requests"
	// AnnotationFerrySkippedLayers is a JSON array of the descriptors of
	// non-distributable layers of the root's graph that were left out of
	// the layout.
	AnnotationFerrySkippedLayers = "dev.ferry-oci.skipped-layers"
	// AnnotationFerryLeftOutChildren is a JSON array of [LeftOutChild]:
	// the children of the root index (or of an index nested in it) that a
	// platform filter left out of the layout. The index keeps its digest
	// and still lists them.
	AnnotationFerryLeftOutChildren = "dev.ferry-oci.left-out-children"
)

// ferryPrefix starts every annotation ferry owns.
const ferryPrefix = "dev.ferry-oci."

// tagPattern is the OCI distribution spec's tag grammar.
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// Request says where a root was asked for.
type Request struct {
	// Position is the root's place in the list of roots given to the copy
	// (-b or -i is 0; the entries of a --lock ImagesLock count from 0). An
	// ImagesLock written for the copy lists requests in this order.
	Position int `json:"position"`
	// Ref is the reference as written (command line or lock file).
	Ref string `json:"ref"`
	// Annotations are those of the ImagesLock entry; nil when none.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Root is one entry of index.json: a bundle, image, index or signature the
// layout was written for, with what ferry needs to relocate it later without
// contacting a registry. The zero value is not useful; Desc must be set.
type Root struct {
	// Desc describes the root manifest or index (media type, digest, size;
	// platform and artifact type are kept). Its annotations are copied into
	// index.json, then ferry's annotations are set over them.
	Desc ocispec.Descriptor
	// Tag is applied at the destination and is the entry's ref name. Empty
	// means none: the ref name is then "sha256-<hex>.imgpkg".
	Tag string
	// OriginalRef is the reference the root was first met under.
	OriginalRef string
	// Bundle marks an imgpkg bundle.
	Bundle bool
	// RootBundle marks the bundle asked for as a bundle (-b, BundleLock).
	RootBundle bool
	// Requests says where the root was asked for; empty for roots found
	// only through a bundle's images.yml.
	Requests []Request
	// SkippedLayers are non-distributable layers of the root's graph that
	// the layout does not hold.
	SkippedLayers []ocispec.Descriptor
	// LeftOutChildren are the children of the root index, or of indexes
	// nested in it, that the layout does not hold because a platform filter
	// left them out (copy --platform without --rewrite-index).
	LeftOutChildren []LeftOutChild
}

// LeftOutChild is an index child a layout leaves out: one entry of
// AnnotationFerryLeftOutChildren.
type LeftOutChild struct {
	// Parent is the digest of the index that lists the child: the root or
	// an index nested in it. Empty when unknown (layouts written before the
	// annotation existed).
	Parent digest.Digest `json:"parent,omitempty"`
	// Desc is the child as its parent lists it (media type, digest, size,
	// platform).
	Desc ocispec.Descriptor `json:"descriptor"`
}

// RefName returns the root's index.json ref name: Tag, or "<alg>-<hex>.imgpkg"
// (imgpkg's tag for untagged images) when Tag is empty.
func (r Root) RefName() string {
	if r.Tag != "" {
		return r.Tag
	}
	return DigestTag(r.Desc.Digest)
}

// DigestTag returns imgpkg's tag for a digest: "sha256-<hex>.imgpkg".
func DigestTag(d digest.Digest) string {
	return strings.Replace(d.String(), ":", "-", 1) + ".imgpkg"
}

// Descriptor returns the index.json entry for the root: Desc with ferry's
// annotations set. It fails with ErrInvalidRoot when Tag is not a valid tag
// or the digest is invalid.
func (r Root) Descriptor() (ocispec.Descriptor, error) {
	if err := r.Desc.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("root %q: digest: %w: %w", r.Desc.Digest, ErrInvalidRoot, err)
	}
	if r.Tag != "" && !tagPattern.MatchString(r.Tag) {
		return ocispec.Descriptor{}, fmt.Errorf("root %s: tag %q: %w: not a valid tag", r.Desc.Digest, r.Tag, ErrInvalidRoot)
	}
	d := r.Desc
	ann := make(map[string]string, len(d.Annotations)+8)
	for k, v := range d.Annotations {
		if !strings.HasPrefix(k, ferryPrefix) { // stale ferry annotations are rewritten below
			ann[k] = v
		}
	}
	ann[AnnotationRefName] = r.RefName()
	if r.OriginalRef != "" {
		ann[AnnotationContainerdName] = r.OriginalRef
		ann[AnnotationFerryOriginalRef] = r.OriginalRef
	}
	if r.Tag != "" {
		ann[AnnotationFerryTag] = r.Tag
	}
	if r.Bundle {
		ann[AnnotationFerryBundle] = "true"
	}
	if r.RootBundle {
		ann[AnnotationFerryRootBundle] = "true"
	}
	if len(r.Requests) > 0 {
		b, err := json.Marshal(r.Requests)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("root %s: requests: %w", r.Desc.Digest, err)
		}
		ann[AnnotationFerryRequests] = string(b)
	}
	if len(r.SkippedLayers) > 0 {
		b, err := json.Marshal(r.SkippedLayers)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("root %s: skipped layers: %w", r.Desc.Digest, err)
		}
		ann[AnnotationFerrySkippedLayers] = string(b)
	}
	if len(r.LeftOutChildren) > 0 {
		b, err := json.Marshal(r.LeftOutChildren)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("root %s: left-out children: %w", r.Desc.Digest, err)
		}
		ann[AnnotationFerryLeftOutChildren] = string(b)
	}
	d.Annotations = ann
	return d, nil
}

// NewIndex builds index.json for roots, one entry per ref name, in the order
// of first appearance. Roots with the same ref name and digest are merged
// (requests, skipped layers and left-out children joined, flags OR-ed, the first OriginalRef
// kept); the same ref name for two digests fails with ErrConflictingRef.
func NewIndex(roots []Root) (ocispec.Index, error) {
	var merged []Root
	byName := make(map[string]int, len(roots))
	for _, r := range roots {
		name := r.RefName()
		i, ok := byName[name]
		if !ok {
			byName[name] = len(merged)
			r.Requests = slices.Clone(r.Requests)
			r.SkippedLayers = slices.Clone(r.SkippedLayers)
			r.LeftOutChildren = slices.Clone(r.LeftOutChildren)
			merged = append(merged, r)
			continue
		}
		m := &merged[i]
		if m.Desc.Digest != r.Desc.Digest {
			return ocispec.Index{}, fmt.Errorf("ref name %q: %w: %s and %s", name, ErrConflictingRef, m.Desc.Digest, r.Desc.Digest)
		}
		if m.OriginalRef == "" {
			m.OriginalRef = r.OriginalRef
		}
		m.Bundle = m.Bundle || r.Bundle
		m.RootBundle = m.RootBundle || r.RootBundle
		m.Requests = append(m.Requests, r.Requests...)
		for _, l := range r.SkippedLayers {
			if !slices.ContainsFunc(m.SkippedLayers, func(o ocispec.Descriptor) bool { return o.Digest == l.Digest }) {
				m.SkippedLayers = append(m.SkippedLayers, l)
			}
		}
		for _, c := range r.LeftOutChildren {
			if !slices.ContainsFunc(m.LeftOutChildren, func(o LeftOutChild) bool { return o.Parent == c.Parent && o.Desc.Digest == c.Desc.Digest }) {
				m.LeftOutChildren = append(m.LeftOutChildren, c)
			}
		}
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: make([]ocispec.Descriptor, 0, len(merged))}
	idx.SchemaVersion = 2
	for _, r := range merged {
		sort.SliceStable(r.Requests, func(i, j int) bool { return r.Requests[i].Position < r.Requests[j].Position })
		d, err := r.Descriptor()
		if err != nil {
			return ocispec.Index{}, err
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	return idx, nil
}

// RootFromDescriptor reads a Root back from an index.json entry. For entries
// written by other tools (no dev.ferry-oci.* annotation), Tag is the ref name
// when it is a valid tag (or the tag part of a full reference) and
// OriginalRef is io.containerd.image.name, or the ref name when that is a
// full reference. A malformed ferry annotation fails with ErrMalformedIndex.
// Manifests and indexes listed in AnnotationFerrySkippedLayers (where
// layouts written before AnnotationFerryLeftOutChildren recorded index
// children left out) are read into LeftOutChildren, without a parent.
func RootFromDescriptor(d ocispec.Descriptor) (Root, error) {
	r := Root{Desc: d}
	ann := d.Annotations
	ferry := false
	for k := range ann {
		if strings.HasPrefix(k, ferryPrefix) {
			ferry = true
			break
		}
	}
	if !ferry {
		name := ann[AnnotationRefName]
		r.OriginalRef = ann[AnnotationContainerdName]
		switch {
		case tagPattern.MatchString(name):
			r.Tag = name
		case name != "":
			if r.OriginalRef == "" {
				r.OriginalRef = name
			}
			r.Tag = tagOf(name)
		}
		if r.Tag == DigestTag(d.Digest) {
			r.Tag = ""
		}
		return r, nil
	}
	r.Tag = ann[AnnotationFerryTag]
	r.OriginalRef = ann[AnnotationFerryOriginalRef]
	r.Bundle = ann[AnnotationFerryBundle] == "true"
	r.RootBundle = ann[AnnotationFerryRootBundle] == "true"
	if s, ok := ann[AnnotationFerryRequests]; ok {
		if err := json.Unmarshal([]byte(s), &r.Requests); err != nil {
			return Root{}, fmt.Errorf("root %s: annotation %s: %w: %w", d.Digest, AnnotationFerryRequests, ErrMalformedIndex, err)
		}
	}
	if s, ok := ann[AnnotationFerrySkippedLayers]; ok {
		if err := json.Unmarshal([]byte(s), &r.SkippedLayers); err != nil {
			return Root{}, fmt.Errorf("root %s: annotation %s: %w: %w", d.Digest, AnnotationFerrySkippedLayers, ErrMalformedIndex, err)
		}
		layers := r.SkippedLayers[:0]
		for _, l := range r.SkippedLayers {
			if isManifestType(l.MediaType) {
				r.LeftOutChildren = append(r.LeftOutChildren, LeftOutChild{Desc: l})
				continue
			}
			layers = append(layers, l)
		}
		r.SkippedLayers = layers
		if len(r.SkippedLayers) == 0 {
			r.SkippedLayers = nil
		}
	}
	if s, ok := ann[AnnotationFerryLeftOutChildren]; ok {
		var children []LeftOutChild
		if err := json.Unmarshal([]byte(s), &children); err != nil {
			return Root{}, fmt.Errorf("root %s: annotation %s: %w: %w", d.Digest, AnnotationFerryLeftOutChildren, ErrMalformedIndex, err)
		}
		for i, c := range children {
			if err := c.Desc.Digest.Validate(); err != nil {
				return Root{}, fmt.Errorf("root %s: annotation %s: entry %d: %w: digest: %w", d.Digest, AnnotationFerryLeftOutChildren, i, ErrMalformedIndex, err)
			}
			if c.Parent != "" {
				if err := c.Parent.Validate(); err != nil {
					return Root{}, fmt.Errorf("root %s: annotation %s: entry %d: %w: parent: %w", d.Digest, AnnotationFerryLeftOutChildren, i, ErrMalformedIndex, err)
				}
			}
		}
		r.LeftOutChildren = append(r.LeftOutChildren, children...)
	}
	if r.Tag != "" && !tagPattern.MatchString(r.Tag) {
		return Root{}, fmt.Errorf("root %s: annotation %s: %w: %q is not a valid tag", d.Digest, AnnotationFerryTag, ErrMalformedIndex, r.Tag)
	}
	return r, nil
}

// RootsOf reads every entry of index with RootFromDescriptor, in order.
func RootsOf(index ocispec.Index) ([]Root, error) {
	out := make([]Root, 0, len(index.Manifests))
	for _, d := range index.Manifests {
		r, err := RootFromDescriptor(d)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// tagOf returns the tag of a full reference "host/repo:tag", or "" when it
// has none (or is a digest reference).
func tagOf(ref string) string {
	if strings.Contains(ref, "@") {
		return ""
	}
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ""
	}
	if t := ref[i+1:]; tagPattern.MatchString(t) {
		return t
	}
	return ""
}

// skippedLayers returns the digests a layout records as left out on
// purpose: those listed in every root's AnnotationFerrySkippedLayers
// (non-distributable layers) and AnnotationFerryLeftOutChildren (index
// children a platform filter left out). Malformed annotations are ignored
// here (the readers check them at open).
func skippedLayers(index ocispec.Index) map[digest.Digest]bool {
	out := make(map[digest.Digest]bool)
	for _, d := range index.Manifests {
		if s, ok := d.Annotations[AnnotationFerrySkippedLayers]; ok {
			var layers []ocispec.Descriptor
			if json.Unmarshal([]byte(s), &layers) == nil {
				for _, l := range layers {
					out[l.Digest] = true
				}
			}
		}
		if s, ok := d.Annotations[AnnotationFerryLeftOutChildren]; ok {
			var children []LeftOutChild
			if json.Unmarshal([]byte(s), &children) == nil {
				for _, c := range children {
					out[c.Desc.Digest] = true
				}
			}
		}
	}
	return out
}
