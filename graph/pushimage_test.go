package graph

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/bundle"
)

// TestPushImageManifestByTag: on a registry, a tagged image's manifest is
// pushed once, by its tag (no HEAD, no push by digest, no read back); it is
// then found by digest and by tag. Elsewhere, or without a tag, the
// manifest is pushed by digest (and tagged after). Pushing again sends no
// blob.
func TestPushImageManifestByTag(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yml"), []byte("kind: app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := bundle.Build(ctx, []string{dir}, bundle.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	m := img.ManifestDesc.Digest

	t.Run("registry, tagged", func(t *testing.T) {
		dst := newRegistryTarget()
		if err := PushImage(ctx, dst, img, "v1"); err != nil {
			t.Fatal(err)
		}
		l := dst.log()
		if !slices.Equal(l.refPuts, []string{"v1"}) || len(l.manPushes) != 0 || len(l.asked) != 0 || len(l.tags) != 0 || l.fetched != 0 {
			t.Errorf("manifest: by tag %v, by digest %v, asked %v, Tag %v, read %d; want one push by tag v1 only",
				l.refPuts, l.manPushes, l.asked, l.tags, l.fetched)
		}
		if got := resolveTag(t, dst, "v1"); got.Digest != m {
			t.Errorf("v1 -> %s, want %s", got.Digest, m)
		}
		for _, d := range []digest.Digest{img.ConfigDesc.Digest, img.LayerDesc.Digest} {
			if n := dst.pushes[d]; n != 1 {
				t.Errorf("%s pushed %d times, want once", d, n)
			}
		}
		if ok, _ := dst.countingTarget.Exists(ctx, img.ManifestDesc); !ok {
			t.Error("manifest not found by digest after its push by tag")
		}
		before := dst.totalPushes()
		if err := PushImage(ctx, dst, img, "v1"); err != nil {
			t.Fatal(err)
		}
		if n := dst.totalPushes() - before; n != 0 {
			t.Errorf("second push sent %d blobs", n)
		}
	})
	t.Run("registry, no tag", func(t *testing.T) {
		dst := newRegistryTarget()
		if err := PushImage(ctx, dst, img, ""); err != nil {
			t.Fatal(err)
		}
		if l := dst.log(); len(l.refPuts) != 0 || !slices.Equal(l.manPushes, []digest.Digest{m}) {
			t.Errorf("by tag %v, by digest %v; want one push by digest", l.refPuts, l.manPushes)
		}
	})
	t.Run("not a registry", func(t *testing.T) {
		dst := newCountingTarget()
		if err := PushImage(ctx, dst, img, "v1"); err != nil {
			t.Fatal(err)
		}
		if dst.pushes[m] != 1 || !slices.Equal(dst.tags, []string{"v1"}) {
			t.Errorf("manifest pushed %d times, tags %v; want once, then v1", dst.pushes[m], dst.tags)
		}
		if got := resolveTag(t, dst, "v1"); got.Digest != m {
			t.Errorf("v1 -> %s, want %s", got.Digest, m)
		}
	})
}
