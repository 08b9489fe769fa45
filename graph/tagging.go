package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry"
)

// nodeTags lists the tag every node but signatures and referrers gets:
// sha256-<hex>.imgpkg, or its RepoBasedTag when repoBased.
func nodeTags(g *Graph, repoBased bool) []tagJob {
	var jobs []tagJob
	for _, n := range g.Nodes {
		if n.Signature || n.Referrer {
			continue
		}
		tag := ImgpkgTag(n.Desc.Digest)
		if repoBased {
			tag = RepoBasedTag(n.Ref, n.Desc.Digest)
		}
		jobs = append(jobs, tagJob{desc: n.Desc, tag: tag})
	}
	return jobs
}

// tagOnPush arranges, when dst is a registry, for each node's manifest to
// be pushed by its node tag (nodeTags) rather than by digest: one PUT of
// the manifest to /manifests/<tag> stores it (it is then found by digest
// too) and points the tag at it, where a push by digest and a tag would
// take two. The copy pushes a manifest after everything it refers to, so
// the tag never points at an incomplete manifest. Whether dst has a node is
// then asked of its tag: one HEAD answers for the manifest and its tag.
//
// Left to tagNodes, after the whole copy succeeded: the tag of a followed
// bundle (its images are not below its manifest, so a bundle is complete
// only when the copy is), and sparse indexes (pushed by digest without
// some children, so that a refusal is still named, see guardSparse). User
// and signature tags are applyTags', after everything else.
func (c *copier) tagOnPush(g *Graph, dst oras.Target) {
	rp, ok := dst.(registry.ReferencePusher)
	up := uploadsOf(c.blobs)
	if !ok || up == nil {
		return
	}
	ask := askByTag(g, c.opts.RepoBasedTags)
	push := make(map[digest.Digest]bool)
	for d := range ask {
		if n := c.byDigest[d]; n == nil || n.Lock == nil {
			push[d] = true
		}
	}
	up.tagAs, up.pushByTag, up.byTag, up.resolver = ask, push, rp, dst
}

// tagNodes gives every non-signature node its sha256-<hex>.imgpkg or
// repo-based tag, unless the copy already did, pushing the node's manifest
// by that tag or finding the tag at the destination (see tagOnPush).
func (c *copier) tagNodes(ctx context.Context, g *Graph) error {
	up := uploadsOf(c.blobs)
	var jobs []tagJob
	for _, j := range nodeTags(g, c.opts.RepoBasedTags) {
		if up != nil && up.taggedAs(j.desc.Digest) == j.tag {
			continue
		}
		jobs = append(jobs, j)
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

// tagConcurrencyFactor multiplies the copy's concurrency for tags: a tag
// is one small request whose time is mostly the registry's round trip, so
// more of them run at once than blob transfers.
const tagConcurrencyFactor = 4

// tag applies tags concurrently, at most tagConcurrencyFactor times the
// copy's concurrency at once.
func (c *copier) tag(ctx context.Context, jobs []tagJob) error {
	up := uploadsOf(c.blobs)
	n := c.opts.Concurrency
	if n <= 0 {
		n = defaultConcurrency
	}
	limit := newLimiter(n * tagConcurrencyFactor)
	return forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		if err := limit.acquire(ctx); err != nil {
			return err
		}
		defer limit.release()
		return pushTag(ctx, c.dst, up, jobs[i].desc, jobs[i].tag)
	})
}

// pushTag tags desc in dst. When up (may be nil) pushed the manifest in
// this copy, tag cannot point at it yet: it is not asked for first.
// Otherwise it is, and a tag already pointing at desc is left alone, so a
// copy that sends nothing writes nothing. A registry gets the tag as one PUT
// of the manifest's bytes, taken from up (kept from the push, or read from
// the source, usually the local store) rather than fetched from the
// registry again; manifests with a subject, whose push oras-go follows with
// referrers indexing, and destinations that are not registries are tagged
// with their own Tag. Pushing identical bytes again is harmless.
func pushTag(ctx context.Context, dst oras.Target, up *retryingStorage, desc ocispec.Descriptor, tag string) error {
	pushed := false
	if up != nil {
		_, pushed = up.wasPushed(desc.Digest)
	}
	if !pushed {
		if cur, err := dst.Resolve(ctx, tag); err == nil && cur.Digest == desc.Digest {
			return nil
		}
	}
	var body []byte
	if _, ok := dst.(registry.ReferencePusher); ok && up != nil {
		var err error
		if body, err = up.manifest(ctx, desc); err != nil {
			return fmt.Errorf("tag %s as %s: %w", desc.Digest, tag, err)
		}
	}
	return putTag(ctx, dst, desc, body, tag)
}

// putTag points tag at desc: one PUT of body (the manifest's bytes, may be
// nil) when dst is a registry, otherwise (or without bytes, or for a
// manifest with a subject) dst's own Tag.
func putTag(ctx context.Context, dst oras.Target, desc ocispec.Descriptor, body []byte, tag string) error {
	var err error
	if rp, ok := dst.(registry.ReferencePusher); ok && body != nil && !hasSubject(body) {
		err = rp.PushReference(ctx, plain(desc), bytes.NewReader(body), tag)
	} else {
		err = dst.Tag(ctx, plain(desc), tag)
	}
	if err != nil {
		return fmt.Errorf("tag %s as %s: %w", desc.Digest, tag, err)
	}
	return nil
}

// hasSubject reports whether a manifest has a subject field (or cannot be
// read, to be safe).
func hasSubject(body []byte) bool {
	var probe struct {
		Subject json.RawMessage `json:"subject"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return true
	}
	return len(probe.Subject) > 0 && string(probe.Subject) != "null"
}

// plain keeps media type, digest and size.
func plain(desc ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
}
