package main

import (
	"context"
	"strings"

	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/internal/registry"
	"github.com/ferry-oci/ferry/store"
)

// registrySource serves graph repositories from live registries, through the
// local content store when there is one: content by digest comes from the
// store or is ingested into it; tags are always resolved at the registry.
type registrySource struct {
	client *registry.Client
	store  *store.Store // nil with --no-store
}

var _ graph.Source = registrySource{}

func (s registrySource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	r, err := s.client.Repository(ctx, repo)
	if err != nil || s.store == nil {
		return r, err
	}
	return s.store.Cache(r), nil
}

// registryHost returns the registry part of a "host/path" repository name.
func registryHost(repo string) string {
	host, _, _ := strings.Cut(repo, "/")
	return host
}
