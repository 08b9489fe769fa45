package store

import (
	"context"
	"fmt"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
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
//
// Whether a registry has the referrers API is learnt once per registry
// host and store, from the first listing that succeeds, and given to the
// other repositories of that host: oras-go would otherwise ask every new
// repository (one request each, answered 404 by registries without the
// API, such as distribution's) before it falls back to the tag schema.
func (c *CachedTarget) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func(referrers []ocispec.Descriptor) error) error {
	lister, ok := c.remote.(registry.ReferrerLister)
	if !ok {
		return fmt.Errorf("referrers of %s: the remote cannot list referrers: %w", desc.Digest, errdef.ErrUnsupported)
	}
	repo, ok := c.remote.(*remote.Repository)
	if !ok {
		return lister.Referrers(ctx, desc, artifactType, fn)
	}
	hc := c.s.referrersCapability(repo.Reference.Registry)
	hc.mu.Lock()
	if hc.known {
		hc.mu.Unlock()
		// Set before oras-go's first call on this repository; an error
		// only says that it knows already.
		_ = repo.SetReferrersCapability(hc.capable)
		return lister.Referrers(ctx, desc, artifactType, fn)
	}
	// The first listing on this host: the others wait for what it learns
	// (one round trip) rather than each asking.
	defer hc.mu.Unlock()
	if err := lister.Referrers(ctx, desc, artifactType, fn); err != nil {
		return err
	}
	// A listing that succeeded has set the repository's capability;
	// setting "unsupported" fails exactly when it is "supported".
	hc.known, hc.capable = true, repo.SetReferrersCapability(false) != nil
	return nil
}

// hostReferrers is what the store learnt about one registry host's
// referrers API.
type hostReferrers struct {
	mu      sync.Mutex
	known   bool
	capable bool
}

// referrersCapability returns the record of host, creating it.
func (s *Store) referrersCapability(host string) *hostReferrers {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if s.refCaps == nil {
		s.refCaps = make(map[string]*hostReferrers)
	}
	hc, ok := s.refCaps[host]
	if !ok {
		hc = &hostReferrers{}
		s.refCaps[host] = hc
	}
	return hc
}
