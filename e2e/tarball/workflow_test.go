// Package tarball_test runs the air-gapped workflow's Option 2 end to end:
// a bundle goes from a source registry into an OCI image-layout tarball, the
// source registry is stopped, and the tarball is imported into a destination
// registry from which the bundle is pulled.
package tarball_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// tarEntries lists the names of a tar's entries and reads index.json.
func tarEntries(t *testing.T, path string) ([]string, ocispec.Index) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var index ocispec.Index
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		names = append(names, h.Name)
		if h.Name == "index.json" {
			if err := json.NewDecoder(tr).Decode(&index); err != nil {
				t.Fatalf("index.json: %v", err)
			}
		}
	}
	return names, index
}

func TestAirGapThroughTarball(t *testing.T) {
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})

	b := src.Builder(21)
	base := bytes.Repeat([]byte("shared base of the tarball images\n"), 200)
	app := b.Image(ctx, t, src.Ref("team/app"), harness.ImageSpec{Layers: []int{4000, 900}, SharedBase: base})
	multi := b.Index(ctx, t, src.Ref("team/multi"), harness.IndexSpec{Layers: []int{700}})
	refs := []string{harness.DigestRef(src.Ref("team/app"), app.Digest), harness.DigestRef(src.Ref("team/multi"), multi.Digest)}
	ann := map[string]map[string]string{
		refs[0]: {harness.KbldIDAnnotation: "docker.io/example/app"},
		refs[1]: {harness.KbldIDAnnotation: "docker.io/example/multi"},
	}
	bundle := b.Bundle(ctx, t, src.Ref("team/bundle"), harness.BundleSpec{Images: refs, Annotations: ann, Tag: "v1"})

	work := t.TempDir()
	tarPath := filepath.Join(work, "bundle.tar")
	store := []string{"FERRY_STORE=" + filepath.Join(work, "store")}

	// Step 2, Option 2, on the side that sees the source registry.
	res := harness.RunOK(t, store, "copy", "-b", src.Ref("team/bundle")+":v1", "--to-tar", tarPath)
	if !strings.Contains(res.Stderr, "copy | exporting 3 images...") || !strings.Contains(res.Stderr, "Succeeded") {
		t.Errorf("stderr of --to-tar:\n%s", res.Stderr)
	}
	sum := strings.Fields(res.Stdout)
	tarBytes, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 2 || sum[0] != digest.FromBytes(tarBytes).Encoded() || sum[1] != tarPath {
		t.Errorf("stdout %q, want the tar's sha256 and its path", res.Stdout)
	}
	names, index := tarEntries(t, tarPath)
	if len(names) < 4 || names[0] != "oci-layout" || names[1] != "index.json" {
		t.Errorf("tar entries start %q, want oci-layout then index.json", names[:min(4, len(names))])
	}
	byDigest := map[digest.Digest]ocispec.Descriptor{}
	for _, m := range index.Manifests {
		byDigest[m.Digest] = m
	}
	root, ok := byDigest[bundle.Digest]
	if !ok || root.Annotations[ocispec.AnnotationRefName] != "v1" || root.Annotations["dev.ferry-oci.root-bundle"] != "true" {
		t.Errorf("index.json entry of the bundle: %+v", root)
	}
	for i, d := range []digest.Digest{app.Digest, multi.Digest} {
		e, ok := byDigest[d]
		if !ok {
			t.Errorf("index.json lacks %s", refs[i])
			continue
		}
		if e.Annotations["io.containerd.image.name"] != refs[i] || e.Annotations[ocispec.AnnotationRefName] != "sha256-"+d.Encoded()+".imgpkg" {
			t.Errorf("index.json entry of %s: %v", refs[i], e.Annotations)
		}
	}

	// The same graph gives a byte-identical tar, even from a warm store.
	again := filepath.Join(work, "again.tar")
	harness.RunOK(t, store, "copy", "-b", src.Ref("team/bundle")+":v1", "--to-tar", again)
	if b2, _ := os.ReadFile(again); !bytes.Equal(b2, tarBytes) {
		t.Error("a second --to-tar of the same bundle gave different bytes")
	}

	// The tarball crosses the gap: the source is gone from here on, and the
	// other side has its own, empty store.
	src.Stop()
	otherSide := []string{"FERRY_STORE=" + filepath.Join(work, "other-store")}
	dstRepoRef := dst.Ref("apps/bundle")
	lockPath := filepath.Join(work, "lock.yml")
	res = harness.RunOK(t, otherSide, "copy", "--tar", tarPath, "--to-repo", dstRepoRef, "--lock-output", lockPath)
	if !strings.Contains(res.Stderr, "copy | importing 3 images...") || !strings.Contains(res.Stderr, "copy | imported 3 images") {
		t.Errorf("stderr of --tar:\n%s", res.Stderr)
	}
	lock, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lock), "kind: BundleLock") || !strings.Contains(string(lock), harness.DigestRef(dstRepoRef, bundle.Digest)) || !strings.Contains(string(lock), "tag: v1") {
		t.Errorf("lock output:\n%s", lock)
	}
	repo, err := remote.NewRepository(dstRepoRef)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	for tag, want := range map[string]digest.Digest{
		"v1": bundle.Digest, "sha256-" + bundle.Digest.Encoded() + ".imgpkg": bundle.Digest,
		"sha256-" + app.Digest.Encoded() + ".imgpkg": app.Digest, "sha256-" + multi.Digest.Encoded() + ".imgpkg": multi.Digest,
	} {
		desc, err := repo.Resolve(ctx, tag)
		if err != nil || desc.Digest != want {
			t.Errorf("%s:%s -> %v %v, want %s", dstRepoRef, tag, desc.Digest, err, want)
		}
	}
	if _, err := repo.Resolve(ctx, "sha256-"+bundle.Digest.Encoded()+".image-locations.imgpkg"); err != nil {
		t.Errorf("ImageLocations image: %v", err)
	}

	// Step 3: pull from the destination; images.yml points there.
	out := filepath.Join(work, "pulled")
	res = harness.RunOK(t, otherSide, "pull", "-b", dstRepoRef+":v1", "-o", out)
	if !strings.Contains(res.Stderr, "is hosting every image") {
		t.Errorf("pull stderr:\n%s", res.Stderr)
	}
	yml, err := os.ReadFile(filepath.Join(out, ".imgpkg", "images.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range []digest.Digest{app.Digest, multi.Digest} {
		if !strings.Contains(string(yml), harness.DigestRef(dstRepoRef, d)) {
			t.Errorf("images.yml does not point %s at the destination:\n%s", refs[i], yml)
		}
	}
	if !strings.Contains(string(yml), "docker.io/example/app") {
		t.Errorf("images.yml lost its annotations:\n%s", yml)
	}
}
