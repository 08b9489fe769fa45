//go:build interop

package interop_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestFerryImportsLayoutsOfOtherTools has oras, regctl and skopeo write
// layouts of images from a registry, and ferry copy them into another
// registry: digests must not change, and each layout's ref name becomes a tag.
func TestFerryImportsLayoutsOfOtherTools(t *testing.T) {
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(47)
	images := map[string]digest.Digest{ // repository in src (tag v1) -> digest
		"tools/app":    b.Image(ctx, t, src.Ref("tools/app"), harness.ImageSpec{Layers: []int{2500}, Tag: "v1"}).Digest,
		"tools/legacy": b.Image(ctx, t, src.Ref("tools/legacy"), harness.ImageSpec{Layers: []int{1800}, Docker: true, Tag: "v1"}).Digest,
		"tools/multi":  b.Index(ctx, t, src.Ref("tools/multi"), harness.IndexSpec{Layers: []int{1200}, Tag: "v1"}).Digest,
	}

	// imported checks that ferry imported layout into repo of dst with
	// every image of want by digest and tag.
	imported := func(t *testing.T, flag, layout, repo string, want map[string]digest.Digest) {
		t.Helper()
		harness.RunOK(t, nil, "copy", flag, layout, "--to-repo", dst.Ref(repo))
		for tag, d := range want {
			if got := resolve(t, dst, repo, d.String()); got != d {
				t.Errorf("%s: %s resolves to %s", dst.Ref(repo), d, got)
			}
			if got := resolve(t, dst, repo, tag); got != d {
				t.Errorf("%s:%s is %s, want %s", dst.Ref(repo), tag, got, d)
			}
			// An index comes with every child (the registry also refuses an
			// index whose children are missing; this says which).
			desc, raw := dst.Builder(0).FetchManifest(ctx, t, dst.Ref(repo), d.String())
			if desc.MediaType != ocispec.MediaTypeImageIndex {
				continue
			}
			var idx ocispec.Index
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatalf("index %s: %v", d, err)
			}
			for _, child := range idx.Manifests {
				if got := resolve(t, dst, repo, child.Digest.String()); got != child.Digest {
					t.Errorf("%s: child %s of %s resolves to %s", dst.Ref(repo), child.Digest, d, got)
				}
			}
		}
	}

	t.Run("oras directory", func(t *testing.T) {
		oras := tool(t, "oras")
		env := toolEnv(t)
		dir := filepath.Join(t.TempDir(), "layout")
		want := map[string]digest.Digest{}
		for repo, d := range images {
			tag := filepath.Base(repo)
			mustRun(t, env, oras, "cp", "--no-tty", "--from-plain-http", src.Ref(repo)+":v1", "--to-oci-layout", dir+":"+tag)
			want[tag] = d
		}
		imported(t, "--oci-layout", dir, "from-oras", want)
	})

	t.Run("regctl tar", func(t *testing.T) {
		regctl := tool(t, "regctl")
		env := toolEnv(t)
		host := "--host=reg=" + src.Host + ",tls=disabled"
		for repo, d := range images {
			file := filepath.Join(t.TempDir(), "export.tar")
			mustRun(t, env, regctl, host, "image", "export", src.Ref(repo)+":v1", file)
			imported(t, "--tar", file, "from-regctl/"+filepath.Base(repo), map[string]digest.Digest{"v1": d})
		}
	})

	t.Run("skopeo tar", func(t *testing.T) {
		skopeo := tool(t, "skopeo")
		env := toolEnv(t)
		// skopeo writes Docker-typed manifests into a layout unchanged too,
		// though it cannot read them back (see TestToolsReadFerryLayouts).
		for repo, d := range images {
			file := filepath.Join(t.TempDir(), "archive.tar")
			tag := filepath.Base(repo)
			mustRun(t, env, skopeo, "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
				"docker://"+src.Ref(repo)+":v1", "oci-archive:"+file+":"+tag)
			imported(t, "--tar", file, "from-skopeo", map[string]digest.Digest{tag: d})
		}
	})
}
