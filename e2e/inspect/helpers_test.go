// Package inspect_test runs the commands that look at a registry without
// copying anything: `ferry describe`, `ferry tag list` and `ferry tag
// resolve`, against registries started in process, and checks what they
// print against what the registry holds.
package inspect_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// fixture is an outer bundle (tagged v1, signed) listing image A (with a
// signature and an attestation), a nested bundle that lists image B, and a
// two-platform index.
type fixture struct {
	reg                                 *harness.Registry
	a, aSig, aAtt, b, idx, inner, outer ocispec.Descriptor
	outerSig                            ocispec.Descriptor
	aRepo, bRepo, idxRepo, innerRepo    string
	outerRepo                           string
	aRef, bRef, idxRef, innerRef        string
	children                            []ocispec.Descriptor // of the index, platforms included
}

func pushFixture(ctx context.Context, t *testing.T, reg *harness.Registry) *fixture {
	t.Helper()
	f := &fixture{reg: reg}
	b := reg.Builder(77)
	f.aRepo, f.bRepo, f.idxRepo = reg.Ref("apps/a"), reg.Ref("apps/b"), reg.Ref("apps/multi")
	f.innerRepo, f.outerRepo = reg.Ref("bundles/inner"), reg.Ref("bundles/outer")
	f.a = b.Image(ctx, t, f.aRepo, harness.ImageSpec{Layers: []int{700, 300}})
	f.aSig = b.SignatureTag(ctx, t, f.aRepo, f.a.Digest)
	f.aAtt = b.CosignTag(ctx, t, f.aRepo, f.a.Digest, "att")
	f.b = b.Image(ctx, t, f.bRepo, harness.ImageSpec{Layers: []int{500}, Docker: true})
	f.idx = b.Index(ctx, t, f.idxRepo, harness.IndexSpec{})
	f.aRef, f.bRef, f.idxRef = harness.DigestRef(f.aRepo, f.a.Digest), harness.DigestRef(f.bRepo, f.b.Digest), harness.DigestRef(f.idxRepo, f.idx.Digest)
	f.inner = b.Bundle(ctx, t, f.innerRepo, harness.BundleSpec{Images: []string{f.bRef}})
	f.innerRef = harness.DigestRef(f.innerRepo, f.inner.Digest)
	f.outer = b.Bundle(ctx, t, f.outerRepo, harness.BundleSpec{Images: []string{f.aRef, f.innerRef, f.idxRef}, Tag: "v1"})
	f.outerSig = b.SignatureTag(ctx, t, f.outerRepo, f.outer.Digest)

	_, raw := b.FetchManifest(ctx, t, f.idxRepo, f.idx.Digest.String())
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	f.children = idx.Manifests
	return f
}

// cosignTag is sha256-<hex>.<suffix>.
func cosignTag(d digest.Digest, suffix string) string { return "sha256-" + d.Encoded() + "." + suffix }

// repository opens a repository of a registry started by the harness.
func repository(t *testing.T, reg *harness.Registry, repoRef string) *remote.Repository {
	t.Helper()
	return reg.Repository(t, strings.TrimPrefix(repoRef, reg.Host+"/"))
}

// blobsOf adds to blobs every descriptor reachable from the manifest d in
// repo (harness.Graph: d itself, index children, configs, layers) with its
// size.
func blobsOf(ctx context.Context, t *testing.T, repo *remote.Repository, d digest.Digest, blobs map[digest.Digest]int64) {
	t.Helper()
	for _, desc := range harness.Graph(ctx, t, repo, d) {
		blobs[desc.Digest] = desc.Size
	}
}

// sizeOf is the bytes of the manifest d and everything it references, each
// blob once: what describe reports as an image's size.
func sizeOf(ctx context.Context, t *testing.T, reg *harness.Registry, repoRef string, d digest.Digest) int64 {
	t.Helper()
	blobs := map[digest.Digest]int64{}
	blobsOf(ctx, t, repository(t, reg, repoRef), d, blobs)
	return sum(blobs)
}

func sum(blobs map[digest.Digest]int64) int64 {
	var s int64
	for _, v := range blobs {
		s += v
	}
	return s
}

// lines splits output into its lines, without the final newline.
func lines(out string) []string {
	out = strings.TrimSuffix(out, "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// wantFailure checks a run that must fail with one "ferry: Error:" line
// containing each of wants, and nothing on stdout.
func wantFailure(t *testing.T, res harness.Result, wants ...string) {
	t.Helper()
	if res.ExitCode != 1 || res.Stdout != "" || !strings.HasPrefix(res.Stderr, "ferry: Error: ") {
		t.Errorf("want exit 1, no stdout and a ferry: Error: line; got %s", res)
	}
	for _, w := range wants {
		if !strings.Contains(res.Stderr, w) {
			t.Errorf("stderr %q lacks %q", res.Stderr, w)
		}
	}
}
