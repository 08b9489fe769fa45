//go:build interop

package interop_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// The roots of the exported fixture, by role.
const (
	roleBundle = "bundle"       // an imgpkg bundle, Docker-typed as imgpkg pushes it
	roleOCI    = "oci-image"    // an OCI-typed image
	roleDocker = "docker-image" // a Docker schema2 image
	roleIndex  = "oci-index"    // an OCI index of two platforms
)

var roles = []string{roleBundle, roleOCI, roleDocker, roleIndex}

// ociTyped tells the roles whose manifests have OCI media types.
var ociTyped = map[string]bool{roleOCI: true, roleIndex: true}

// ociLayerSize is the size of the file in the OCI image's only layer.
const ociLayerSize = 3000

// exported is a bundle written by ferry as a tar and as a directory.
type exported struct {
	roots   map[string]ocispec.Descriptor // by role
	refName map[string]string             // org.opencontainers.image.ref.name, by role
	ctrName map[string]string             // io.containerd.image.name, by role
	tar     string                        // copy -b --to-tar
	tarDir  string                        // the tar, extracted
	dir     string                        // copy -b --to-oci-layout
	single  string                        // copy -i (the OCI image) --to-oci-layout
	index   ocispec.Index                 // index.json of dir
	rawIdx  []byte                        // its bytes
}

// export builds a bundle listing an OCI image, a Docker image and an OCI
// index in a registry and writes it with ferry as a tar and as a directory.
func export(t *testing.T) *exported {
	t.Helper()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(31)
	roots := map[string]ocispec.Descriptor{
		roleOCI:    b.Image(ctx, t, src.Ref("team/app"), harness.ImageSpec{Layers: []int{ociLayerSize}}),
		roleDocker: b.Image(ctx, t, src.Ref("team/legacy"), harness.ImageSpec{Layers: []int{2000}, Docker: true}),
		roleIndex:  b.Index(ctx, t, src.Ref("team/multi"), harness.IndexSpec{Layers: []int{1500}}),
	}
	refs := []string{ // the bundle's images.yml, in this order
		src.Ref("team/app") + "@" + roots[roleOCI].Digest.String(),
		src.Ref("team/legacy") + "@" + roots[roleDocker].Digest.String(),
		src.Ref("team/multi") + "@" + roots[roleIndex].Digest.String(),
	}
	roots[roleBundle] = b.Bundle(ctx, t, src.Ref("team/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})

	work := t.TempDir()
	store := []string{"FERRY_STORE=" + filepath.Join(work, "store")}
	x := &exported{
		roots:  roots,
		tar:    filepath.Join(work, "bundle.tar"),
		dir:    filepath.Join(work, "layout"),
		single: filepath.Join(work, "single"),
	}
	harness.RunOK(t, store, "copy", "-b", src.Ref("team/bundle")+":v1", "--to-tar", x.tar)
	harness.RunOK(t, store, "copy", "-b", src.Ref("team/bundle")+":v1", "--to-oci-layout", x.dir)
	harness.RunOK(t, store, "copy", "-i", refs[0], "--to-oci-layout", x.single)
	x.tarDir = extractTar(t, x.tar)

	x.index, x.rawIdx = readIndex(t, x.dir)
	if tarIdx, _ := readIndex(t, x.tarDir); !slices.EqualFunc(tarIdx.Manifests, x.index.Manifests, sameEntry) {
		t.Fatalf("index.json of the tar and of the directory differ:\n%+v\n%+v", tarIdx.Manifests, x.index.Manifests)
	}
	x.refName, x.ctrName = map[string]string{}, map[string]string{}
	for _, m := range x.index.Manifests {
		for role, d := range roots {
			if m.Digest == d.Digest {
				x.refName[role] = m.Annotations[ocispec.AnnotationRefName]
				x.ctrName[role] = m.Annotations["io.containerd.image.name"]
			}
		}
	}
	for _, role := range roles {
		if x.refName[role] == "" || x.ctrName[role] == "" {
			t.Fatalf("index.json has no named entry for the %s %s: %s", role, roots[role].Digest, x.rawIdx)
		}
	}
	if x.refName[roleBundle] != "v1" {
		t.Errorf("the bundle's ref name is %q, want its tag v1", x.refName[roleBundle])
	}
	return x
}

func sameEntry(a, b ocispec.Descriptor) bool {
	return a.Digest == b.Digest && a.MediaType == b.MediaType && a.Size == b.Size &&
		a.Annotations[ocispec.AnnotationRefName] == b.Annotations[ocispec.AnnotationRefName]
}

// refNames lists the ref names of index.json, sorted.
func (x *exported) refNames() []string {
	var names []string
	for _, m := range x.index.Manifests {
		names = append(names, m.Annotations[ocispec.AnnotationRefName])
	}
	slices.Sort(names)
	return names
}

// TestToolsReadFerryLayouts has other OCI tools read the tar and the
// directory ferry writes, and checks the digests they see or push.
func TestToolsReadFerryLayouts(t *testing.T) {
	x := export(t)
	dst := harness.StartRegistry(t, harness.RegistryOptions{})

	t.Run("umoci", func(t *testing.T) {
		umoci := tool(t, "umoci")
		env := toolEnv(t)
		for what, dir := range map[string]string{"directory": x.dir, "tar": x.tarDir} {
			got := strings.Fields(mustRun(t, env, umoci, "ls", "--layout", dir))
			slices.Sort(got)
			if !slices.Equal(got, x.refNames()) {
				t.Errorf("umoci ls of ferry's %s: %q, want %q", what, got, x.refNames())
			}
		}
		bundle := filepath.Join(t.TempDir(), "bundle")
		mustRun(t, env, umoci, "unpack", "--rootless", "--image", x.dir+":"+x.refName[roleOCI], bundle)
		fi, err := os.Stat(filepath.Join(bundle, "rootfs", "layer0", "data.bin"))
		if err != nil || fi.Size() != ociLayerSize {
			t.Errorf("unpacked layer file: %v %v, want %d bytes", fi, err, ociLayerSize)
		}
		if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
			t.Errorf("umoci wrote no runtime config: %v", err)
		}
	})

	t.Run("oras", func(t *testing.T) {
		oras := tool(t, "oras")
		env := toolEnv(t)
		for _, role := range roles {
			for what, path := range map[string]string{"dir": x.dir, "tar": x.tar} {
				repo := "oras/" + role
				mustRun(t, env, oras, "cp", "--no-tty", "--from-oci-layout", path+":"+x.refName[role], dst.Ref(repo)+":"+what, "--to-plain-http")
				if got := resolve(t, dst, repo, what); got != x.roots[role].Digest {
					t.Errorf("oras cp of the %s from ferry's %s pushed %s, want %s", role, what, got, x.roots[role].Digest)
				}
			}
		}
	})

	t.Run("regctl", func(t *testing.T) {
		regctl := tool(t, "regctl")
		env := toolEnv(t)
		host := "--host=reg=" + dst.Host + ",tls=disabled"
		for _, role := range roles {
			want := x.roots[role].Digest
			ocidir := "ocidir://" + x.dir + ":" + x.refName[role]
			if got := strings.TrimSpace(mustRun(t, env, regctl, "image", "digest", ocidir)); got != want.String() {
				t.Errorf("regctl image digest %s: %s, want %s", ocidir, got, want)
			}
			repo := "regctl/" + role
			mustRun(t, env, regctl, host, "image", "copy", ocidir, dst.Ref(repo)+":dir")
			if got := resolve(t, dst, repo, "dir"); got != want {
				t.Errorf("regctl image copy of the %s from ferry's directory pushed %s, want %s", role, got, want)
			}
			mustRun(t, env, regctl, host, "image", "import", dst.Ref(repo)+":tar", x.tar, "--name", x.refName[role])
			if got := resolve(t, dst, repo, "tar"); got != want {
				t.Errorf("regctl image import of the %s from ferry's tar pushed %s, want %s", role, got, want)
			}
		}
	})

	t.Run("crane", func(t *testing.T) {
		crane := tool(t, "crane")
		env := toolEnv(t)
		// A layout of one image is pushed as that image.
		mustRun(t, env, crane, "push", "--insecure", x.single, dst.Ref("crane/app")+":v1")
		if got := resolve(t, dst, "crane/app", "v1"); got != x.roots[roleOCI].Digest {
			t.Errorf("crane push of ferry's one-image layout pushed %s, want %s", got, x.roots[roleOCI].Digest)
		}
		// A layout of several roots is pushed with --index as an index whose
		// manifest is index.json itself; every root comes along by digest.
		for what, dir := range map[string]string{"dir": x.dir, "tar": x.tarDir} {
			repo := "crane/bundle-" + what
			mustRun(t, env, crane, "push", "--insecure", "--index", dir, dst.Ref(repo)+":all")
			if got, want := resolve(t, dst, repo, "all"), digest.FromBytes(x.rawIdx); got != want {
				t.Errorf("crane push --index of ferry's %s pushed %s, want index.json's digest %s", what, got, want)
			}
			for _, role := range roles {
				if got := resolve(t, dst, repo, x.roots[role].Digest.String()); got != x.roots[role].Digest {
					t.Errorf("crane push --index of ferry's %s: the %s resolves to %s", what, role, got)
				}
			}
		}
	})

	t.Run("containerd", func(t *testing.T) {
		c := startContainerd(t)
		c.run(t, "images", "import", "--all-platforms", "--no-unpack", x.tar)
		listed := map[string]string{} // name -> digest
		for _, line := range strings.Split(c.run(t, "images", "ls"), "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 3 {
				listed[f[0]] = f[2]
			}
		}
		checked := map[string]string{} // name -> status
		for _, line := range strings.Split(c.run(t, "images", "check"), "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 4 {
				checked[f[0]] = f[3]
			}
		}
		for _, role := range roles {
			name := x.ctrName[role]
			if got := listed[name]; got != x.roots[role].Digest.String() {
				t.Errorf("ctr images ls: %q -> %q, want %s", name, got, x.roots[role].Digest)
			}
			if checked[name] != "complete" {
				t.Errorf("ctr images check: %q is %q, want complete", name, checked[name])
			}
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo := tool(t, "skopeo")
		env := toolEnv(t)
		for _, role := range roles {
			want := x.roots[role].Digest
			for _, src := range []string{"oci-archive:" + x.tar + ":" + x.refName[role], "oci:" + x.dir + ":" + x.refName[role]} {
				raw, stderr, err := run(t, env, skopeo, "inspect", "--raw", src)
				if err != nil && !ociTyped[role] {
					t.Logf("known limit: skopeo cannot read the Docker-typed %s in a layout (%s): %s", role, src, strings.TrimSpace(stderr))
					continue
				}
				if err != nil {
					t.Errorf("skopeo inspect --raw %s: %v\n%s", src, err, stderr)
					continue
				}
				if got := digest.FromString(raw); got != want {
					t.Errorf("skopeo inspect --raw %s: manifest %s, want %s", src, got, want)
				}
			}
		}
		// The image's config is read too.
		var info struct {
			Digest       digest.Digest
			Os           string
			Architecture string
		}
		out := mustRun(t, env, skopeo, "inspect", "oci-archive:"+x.tar+":"+x.refName[roleOCI])
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("skopeo inspect: %v", err)
		}
		if info.Digest != x.roots[roleOCI].Digest || info.Os != "linux" || info.Architecture != "amd64" {
			t.Errorf("skopeo inspect of the OCI image: %+v, want %s linux/amd64", info, x.roots[roleOCI].Digest)
		}
		for _, role := range []string{roleOCI, roleIndex} {
			repo := "skopeo/" + role
			mustRun(t, env, skopeo, "--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
				"oci:"+x.dir+":"+x.refName[role], "docker://"+dst.Ref(repo)+":v1")
			if got := resolve(t, dst, repo, "v1"); got != x.roots[role].Digest {
				t.Errorf("skopeo copy of the %s from ferry's directory pushed %s, want %s", role, got, x.roots[role].Digest)
			}
		}
	})
}
