package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// referrers lists the OCI 1.1 referrers of n (and of the child manifests of
// an index) in n's repository and adds them to n.Referrers, discovering each
// (and its own referrers) once. Only the goroutine that created n calls it.
func (d *discoverer) referrers(ctx context.Context, n *Node) error {
	t, err := d.repository(ctx, n.Repo)
	if err != nil {
		return err
	}
	lister, ok := t.(registry.ReferrerLister)
	if !ok {
		return nil
	}
	subjects := append([]ocispec.Descriptor{plain(n.Desc)}, n.children...)
	found := make([][]*Node, len(subjects))
	err = forEach(ctx, len(subjects), func(ctx context.Context, i int) error {
		descs, err := d.listReferrers(ctx, lister, subjects[i])
		if err != nil {
			return fmt.Errorf("referrers of %s (%s): %w", n.Ref, subjects[i].Digest, err)
		}
		nodes := make([]*Node, len(descs))
		err = forEach(ctx, len(descs), func(ctx context.Context, j int) error {
			r, err := d.referrer(ctx, n, t, descs[j])
			nodes[j] = r
			return err
		})
		found[i] = nodes
		return err
	})
	if err != nil {
		return err
	}
	for _, nodes := range found {
		for _, r := range nodes {
			if r != nil && r != n && !slices.Contains(n.Referrers, r) {
				n.Referrers = append(n.Referrers, r)
			}
		}
	}
	slices.SortFunc(n.Referrers, func(a, b *Node) int { return strings.Compare(string(a.Desc.Digest), string(b.Desc.Digest)) })
	return nil
}

// listReferrers asks lister for the referrers of subject, under the
// concurrency limit. A lister that does not support referrers, or a
// repository that answers 401, 403 or 404, gives none. The result holds
// image manifests and indexes only, each digest once.
func (d *discoverer) listReferrers(ctx context.Context, lister registry.ReferrerLister, subject ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	if err := d.limit.acquire(ctx); err != nil {
		return nil, err
	}
	defer d.limit.release()
	var out []ocispec.Descriptor
	err := lister.Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error {
		for _, r := range page {
			if r.Digest.Validate() != nil || r.Digest == subject.Digest {
				continue
			}
			if !isImageManifest(r.MediaType) && !isIndex(r.MediaType) {
				continue // e.g. the withdrawn application/vnd.oci.artifact.manifest.v1+json
			}
			if !slices.ContainsFunc(out, func(o ocispec.Descriptor) bool { return o.Digest == r.Digest }) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errdef.ErrUnsupported) || isAbsent(err) {
			return nil, nil
		}
		return nil, err
	}
	return out, nil
}

// referrer discovers the referrer desc of subject n, read from n's
// repository t, and its own referrers. A referrer listed but no longer
// there (a stale entry of a fallback tag index) is skipped: it returns nil.
func (d *discoverer) referrer(ctx context.Context, n *Node, t oras.ReadOnlyTarget, desc ocispec.Descriptor) (*Node, error) {
	d.mu.Lock()
	_, known := d.nodes[desc.Digest]
	d.mu.Unlock()
	var (
		got  ocispec.Descriptor
		body []byte
	)
	if !known {
		var err error
		got, body, err = d.fetch(ctx, t, desc.Digest.String())
		if err != nil {
			if isAbsent(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("referrer %s of %s: %w", desc.Digest, n.Ref, err)
		}
	}
	ref := n.Repo + "@" + desc.Digest.String()
	r, isNew, err := d.obtain(ctx, desc.Digest, ref, func(ctx context.Context, r *Node) error {
		r.Repo = n.Repo
		r.Referrer = true
		if body == nil { // another goroutine met the digest since we looked
			var err error
			if got, body, err = d.fetch(ctx, t, desc.Digest.String()); err != nil {
				return fmt.Errorf("referrer %s of %s: %w", desc.Digest, n.Ref, err)
			}
		}
		if err := d.classify(ctx, r, t, got, body); err != nil {
			return err
		}
		return describeReferrer(r, body)
	})
	if err != nil {
		return nil, err
	}
	if err := d.settle(ctx, r, isNew, true); err != nil {
		return nil, err
	}
	return r, nil
}

// referrerFields are the fields of a manifest or index that make it a
// referrer.
type referrerFields struct {
	ArtifactType string              `json:"artifactType"`
	Config       *ocispec.Descriptor `json:"config"`
	Subject      *ocispec.Descriptor `json:"subject"`
	Annotations  map[string]string   `json:"annotations"`
}

// describeReferrer records on a referrer node its subject, its artifact type
// (artifactType, else the config's media type, as the referrers API reports
// it) and its annotations.
func describeReferrer(r *Node, body []byte) error {
	var f referrerFields
	if err := json.Unmarshal(body, &f); err != nil {
		return fmt.Errorf("referrer %s: %w", r.Desc.Digest, err)
	}
	if f.Subject != nil {
		r.Subject = f.Subject.Digest
	}
	r.Desc.ArtifactType = f.ArtifactType
	if r.Desc.ArtifactType == "" && f.Config != nil {
		r.Desc.ArtifactType = f.Config.MediaType
	}
	r.Desc.Annotations = f.Annotations // not those of an index.json entry it was resolved through
	return nil
}

// unmarkListed clears Referrer on every node reached from roots through
// bundles' images: a node that is a root or listed in an images.yml is
// copied as such (tagged), whichever way discovery met it first.
func unmarkListed(roots []*Node) {
	seen := make(map[*Node]bool)
	var visit func(n *Node)
	visit = func(n *Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		n.Referrer = false
		for _, c := range n.Images {
			visit(c)
		}
	}
	for _, r := range roots {
		visit(r)
	}
}
