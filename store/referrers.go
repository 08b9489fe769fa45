package store

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

var _ registry.ReferrerLister = (*CachedTarget)(nil)

// Referrers lists the OCI 1.1 referrers of desc at the remote, never from
// the store: like tags, the set of referrers of a manifest changes over
// time. When the remote implements oras-go's registry.ReferrerLister (a
// remote repository does, with its fallback to the sha256-<hex> tag schema),
// the call is passed through with its artifactType filter and fn; otherwise
// it returns an error wrapping errdef.ErrUnsupported. The referrers' content
// is then fetched by digest through the cache like any other content. Safe
// for concurrent use if the remote is.
func (c *CachedTarget) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func(referrers []ocispec.Descriptor) error) error {
	lister, ok := c.remote.(registry.ReferrerLister)
	if !ok {
		return fmt.Errorf("referrers of %s: the remote cannot list referrers: %w", desc.Digest, errdef.ErrUnsupported)
	}
	return lister.Referrers(ctx, desc, artifactType, fn)
}
