package graph

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// tagNodes gives every non-signature node its sha256-<hex>.imgpkg or
// repo-based tag.
func (c *copier) tagNodes(ctx context.Context, g *Graph) error {
	var jobs []tagJob
	for _, n := range g.Nodes {
		if n.Signature || n.Referrer {
			continue
		}
		tag := ImgpkgTag(n.Desc.Digest)
		if c.opts.RepoBasedTags {
			tag = RepoBasedTag(n.Ref, n.Desc.Digest)
		}
		jobs = append(jobs, tagJob{desc: n.Desc, tag: tag})
	}
	return c.tag(ctx, jobs)
}

// applyTags applies node Tags (user tags, signature tags).
func (c *copier) applyTags(ctx context.Context, g *Graph) error {
	var jobs []tagJob
	for _, n := range g.Nodes {
		for _, t := range n.Tags {
			jobs = append(jobs, tagJob{desc: n.Desc, tag: t})
		}
	}
	return c.tag(ctx, jobs)
}

type tagJob struct {
	desc ocispec.Descriptor
	tag  string
}

// tag applies tags concurrently under the limit.
func (c *copier) tag(ctx context.Context, jobs []tagJob) error {
	return forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		if err := c.limit.acquire(ctx); err != nil {
			return err
		}
		defer c.limit.release()
		return ensureTag(ctx, c.dst, jobs[i].desc, jobs[i].tag)
	})
}

// ensureTag tags desc unless tag already points at it.
func ensureTag(ctx context.Context, dst oras.Target, desc ocispec.Descriptor, tag string) error {
	if cur, err := dst.Resolve(ctx, tag); err == nil && cur.Digest == desc.Digest {
		return nil
	}
	if err := dst.Tag(ctx, plain(desc), tag); err != nil {
		return fmt.Errorf("tag %s as %s: %w", desc.Digest, tag, err)
	}
	return nil
}

// plain keeps media type, digest and size.
func plain(desc ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
}
