package tarball_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestTarNonDistributableLayers checks foreign layers through a tarball: left
// out of --to-tar with a warning naming image and layer, and recorded so
// that tar verify passes and tar inspect lists them; an import of that tar
// pushes the manifests and names the layers, with the source registry gone;
// with --include-non-distributable-layers the layer is inside the tar and
// reaches the destination.
func TestTarNonDistributableLayers(t *testing.T) {
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(91)
	win := b.Image(ctx, t, src.Ref("nd/windows"), harness.ImageSpec{NonDistributable: true, Docker: true, Layers: []int{800}})
	plain := b.Image(ctx, t, src.Ref("nd/plain"), harness.ImageSpec{Layers: []int{300}})
	winRef, plainRef := harness.DigestRef(src.Ref("nd/windows"), win.Digest), harness.DigestRef(src.Ref("nd/plain"), plain.Digest)
	bundle := b.Bundle(ctx, t, src.Ref("nd/bundle"), harness.BundleSpec{Images: []string{winRef, plainRef}, Tag: "v1"})

	var wm ocispec.Manifest
	_, raw := b.FetchManifest(ctx, t, src.Ref("nd/windows"), win.Digest.String())
	if err := json.Unmarshal(raw, &wm); err != nil {
		t.Fatal(err)
	}
	foreign := wm.Layers[0]
	if !isForeign(foreign) {
		t.Fatalf("fixture: first layer of %s is %s, not a foreign layer", winRef, foreign.MediaType)
	}

	work := t.TempDir()
	store := []string{"FERRY_STORE=" + filepath.Join(work, "store")}
	skipped := filepath.Join(work, "skipped.tar")
	included := filepath.Join(work, "included.tar")

	res := harness.RunOK(t, store, "copy", "-b", src.Ref("nd/bundle")+":v1", "--to-tar", skipped)
	if !stderrLine(res, "Warning:", "non-distributable", winRef, foreign.Digest.String()) {
		t.Errorf("--to-tar: no warning naming %s and its layer %s:\n%s", winRef, foreign.Digest, res.Stderr)
	}
	if stderrLine(res, "non-distributable", plainRef) {
		t.Errorf("--to-tar: a warning names the plain image:\n%s", res.Stderr)
	}
	names, _ := tarEntries(t, skipped)
	if slices.Contains(names, blobEntry(foreign.Digest)) {
		t.Errorf("the foreign layer %s is inside %s", foreign.Digest, skipped)
	}
	if !slices.Contains(names, blobEntry(win.Digest)) {
		t.Errorf("the manifest %s of %s is not inside the tar", win.Digest, winRef)
	}

	res = harness.RunOK(t, nil, "tar", "verify", skipped)
	if !strings.Contains(res.Stdout, ": OK: ") || !strings.Contains(res.Stdout, "1 non-distributable layers left out") {
		t.Errorf("tar verify stdout %q", res.Stdout)
	}
	res = harness.RunOK(t, nil, "tar", "inspect", skipped)
	if !strings.Contains(res.Stdout, "Non-distributable layers left out (1;") {
		t.Errorf("tar inspect does not list one skipped layer:\n%s", res.Stdout)
	}
	var found bool
	for l := range strings.SplitSeq(res.Stdout, "\n") {
		found = found || (strings.HasPrefix(l, foreign.Digest.String()) && strings.Contains(l, foreign.MediaType) && strings.Contains(l, winRef))
	}
	if !found {
		t.Errorf("tar inspect has no line naming the layer %s, its media type and %s:\n%s", foreign.Digest, winRef, res.Stdout)
	}

	res = harness.RunOK(t, store, "copy", "-b", src.Ref("nd/bundle")+":v1", "--to-tar", included, "--include-non-distributable-layers")
	if stderrLine(res, "non-distributable", foreign.Digest.String()) {
		t.Errorf("--include-non-distributable-layers: a warning names the layer:\n%s", res.Stderr)
	}
	if names, _ := tarEntries(t, included); !slices.Contains(names, blobEntry(foreign.Digest)) {
		t.Errorf("the foreign layer %s is not inside %s", foreign.Digest, included)
	}
	res = harness.RunOK(t, nil, "tar", "inspect", "--json", included)
	var rep struct {
		SkippedLayers []json.RawMessage `json:"skippedLayers"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil || len(rep.SkippedLayers) != 0 {
		t.Errorf("tar inspect --json of %s: %v, skipped %s", included, err, rep.SkippedLayers)
	}
	harness.RunOK(t, nil, "tar", "verify", included)

	// The other side of the gap: no source registry.
	src.Stop()
	res = harness.RunOK(t, nil, "copy", "--tar", skipped, "--to-repo", dst.Ref("nd/skipped"))
	if !stderrLine(res, "Warning:", "non-distributable", winRef, foreign.Digest.String()) {
		t.Errorf("--tar: no warning naming %s and its layer %s:\n%s", winRef, foreign.Digest, res.Stderr)
	}
	repo := dst.Repository(t, "nd/skipped")
	wantTag(ctx, t, repo, "v1", bundle.Digest)
	wantTag(ctx, t, repo, harness.ImgpkgTag(win.Digest), win.Digest)
	for _, d := range graphAt(ctx, t, repo, win.Digest) {
		if d.Digest == foreign.Digest && has(ctx, t, repo, d) {
			t.Errorf("the foreign layer %s was pushed", foreign.Digest)
		}
	}
	graphAt(ctx, t, repo, plain.Digest)

	res = harness.RunOK(t, nil, "copy", "--tar", included, "--to-repo", dst.Ref("nd/included"), "--include-non-distributable-layers")
	repo = dst.Repository(t, "nd/included")
	wantTag(ctx, t, repo, "v1", bundle.Digest)
	if !has(ctx, t, repo, foreign) {
		t.Errorf("the foreign layer %s did not reach the destination from %s", foreign.Digest, included)
	}
	if stderrLine(res, "non-distributable", foreign.Digest.String()) {
		t.Errorf("--tar --include-non-distributable-layers: a warning names the layer:\n%s", res.Stderr)
	}
}
