package main

import (
	"context"
	"strings"

	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/internal/registry"
)

// registrySource serves graph repositories from live registries.
type registrySource struct{ client *registry.Client }

var _ graph.Source = registrySource{}

func (s registrySource) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	return s.client.Repository(ctx, repo)
}

// registryHost returns the registry part of a "host/path" repository name.
func registryHost(repo string) string {
	host, _, _ := strings.Cut(repo, "/")
	return host
}
