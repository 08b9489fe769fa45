// Package platform_test runs `ferry copy --platform` (and --rewrite-index)
// against registries started in process: sparse indexes into a registry
// that accepts them and one that refuses them, through a tarball, rewritten
// indexes with their lock output, the dry run and the usage errors.
package platform_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// annotationOriginal is where a rewritten index and its lock entry record
// the original digest.
const annotationOriginal = "dev.ferry-oci.original-index-digest"

// world is a source registry with, in team/multi, an index (tag v1) of
// linux/amd64, linux/arm64/v8 and linux/arm/v7 images, in team/app a plain
// image and in team/bundle a bundle (tag v1) listing both; a destination
// that accepts sparse indexes and one that refuses them (distribution's
// default).
type world struct {
	src, sparse, strict *harness.Registry
	b                   *harness.Builder
	index, app, bundle  ocispec.Descriptor
	children            []ocispec.Descriptor // of the index, in its order
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := t.Context()
	w := &world{
		src:    harness.StartRegistry(t, harness.RegistryOptions{}),
		sparse: harness.StartRegistry(t, harness.RegistryOptions{SparseIndexes: true}),
		strict: harness.StartRegistry(t, harness.RegistryOptions{}),
	}
	w.b = w.src.Builder(11)
	w.index = w.b.Index(ctx, t, w.src.Ref("team/multi"), harness.IndexSpec{
		Platforms: []ocispec.Platform{
			{OS: "linux", Architecture: "amd64"},
			{OS: "linux", Architecture: "arm64", Variant: "v8"},
			{OS: "linux", Architecture: "arm", Variant: "v7"},
		},
		Layers:      []int{3000},
		Annotations: map[string]string{"org.opencontainers.image.title": "multi"},
		Tag:         "v1",
	})
	w.children = w.indexOf(t, w.src.Ref("team/multi"), w.index.Digest).Manifests
	w.app = w.b.Image(ctx, t, w.src.Ref("team/app"), harness.ImageSpec{Layers: []int{2000}})
	w.bundle = w.b.Bundle(ctx, t, w.src.Ref("team/bundle"), harness.BundleSpec{
		Images: []string{at(w.src.Ref("team/multi"), w.index.Digest), at(w.src.Ref("team/app"), w.app.Digest)},
		Tag:    "v1",
	})
	return w
}

func at(repoRef string, d digest.Digest) string { return repoRef + "@" + d.String() }

func (w *world) indexOf(t *testing.T, repoRef string, d digest.Digest) ocispec.Index {
	t.Helper()
	_, raw := w.b.FetchManifest(t.Context(), t, repoRef, d.String())
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// imageBytes is the size of an image manifest, its config and its layers.
func (w *world) imageBytes(t *testing.T, d ocispec.Descriptor) int64 {
	t.Helper()
	_, raw := w.b.FetchManifest(t.Context(), t, w.src.Ref("team/multi"), d.Digest.String())
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	n := d.Size + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// has reports whether the registry's repository holds the manifest d.
func has(t *testing.T, r *harness.Registry, repo string, d ocispec.Descriptor) bool {
	t.Helper()
	ok, err := r.Repository(t, repo).Exists(t.Context(), d)
	if err != nil {
		t.Fatalf("exists %s in %s: %v", d.Digest, repo, err)
	}
	return ok
}

// resolve resolves a tag, "" when the registry does not have it.
func resolve(t *testing.T, r *harness.Registry, repo, tag string) digest.Digest {
	t.Helper()
	d, err := r.Repository(t, repo).Resolve(t.Context(), tag)
	var resp *errcode.ErrorResponse
	if errors.Is(err, errdef.ErrNotFound) || (errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("resolve %s:%s: %v", repo, tag, err)
	}
	return d.Digest
}

// errorLine is the "ferry: Error:" line of stderr.
func errorLine(t *testing.T, res harness.Result) string {
	t.Helper()
	if res.ExitCode != 1 {
		t.Errorf("exit %d, want 1", res.ExitCode)
	}
	for l := range strings.Lines(res.Stderr) {
		if strings.HasPrefix(l, "ferry: Error:") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("no \"ferry: Error:\" line:\n%s", res.Stderr)
	return ""
}

func wantAll(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}

// checkSparse checks that repo holds the index with its digest and only the
// amd64 child.
func (w *world) checkSparse(t *testing.T, r *harness.Registry, repo string) {
	t.Helper()
	for i, c := range w.children {
		if got, want := has(t, r, repo, c), i == 0; got != want {
			t.Errorf("%s holds %s (%s): %v, want %v", repo, c.Digest, c.Platform.Architecture, got, want)
		}
	}
	if !has(t, r, repo, w.index) {
		t.Errorf("%s lacks the index %s", repo, w.index.Digest)
	}
	if got := resolve(t, r, repo, "sha256-"+w.index.Digest.Encoded()+".imgpkg"); got != w.index.Digest {
		t.Errorf("the index's imgpkg tag -> %q, want %s", got, w.index.Digest)
	}
}

func TestSparseCopyIntoRegistry(t *testing.T) {
	w := newWorld(t)
	lock := filepath.Join(t.TempDir(), "bundle.lock.yml")
	res := harness.RunOK(t, nil, "copy", "-b", w.src.Ref("team/bundle")+":v1", "--to-repo", w.sparse.Ref("apps/b"),
		"--platform", "linux/amd64", "--lock-output", lock)
	wantAll(t, "stderr", res.Stderr,
		"copy | index "+at(w.src.Ref("team/multi"), w.index.Digest)+" keeps its digest; left out: linux/arm64/v8, linux/arm/v7",
		"Succeeded")
	w.checkSparse(t, w.sparse, "apps/b")
	if got := resolve(t, w.sparse, "apps/b", "v1"); got != w.bundle.Digest {
		t.Errorf("v1 -> %q, want the bundle %s unchanged", got, w.bundle.Digest)
	}
	wantAll(t, "lock output", string(readFile(t, lock)), "image: "+at(w.sparse.Ref("apps/b"), w.bundle.Digest))

	// Again: nothing left to send, the same sparse index.
	res = harness.RunOK(t, nil, "copy", "-b", w.src.Ref("team/bundle")+":v1", "--to-repo", w.sparse.Ref("apps/b"), "--platform", "linux/amd64")
	wantAll(t, "stderr", res.Stderr, "(already present)")
	w.checkSparse(t, w.sparse, "apps/b")
}

func TestSparseCopyRefused(t *testing.T) {
	w := newWorld(t)
	res := harness.Run(t, nil, "copy", "-b", w.src.Ref("team/bundle")+":v1", "--to-repo", w.strict.Ref("apps/b"), "--platform", "linux/amd64")
	line := errorLine(t, res)
	wantAll(t, "error", line,
		"index "+at(w.src.Ref("team/multi"), w.index.Digest)+": the registry refused",
		"the registry refused an index whose children are left out",
		"manifest blob unknown",
		"validation.manifests.indexes.platforms: none",
		"--rewrite-index is not possible here: the bundle's images.yml pins the index digest")
	if got := resolve(t, w.strict, "apps/b", "v1"); got != "" {
		t.Errorf("v1 applied after a failed copy: %s", got)
	}

	// For an image, the error offers --rewrite-index; that copy then works.
	res = harness.Run(t, nil, "copy", "-i", w.src.Ref("team/multi")+":v1", "--to-repo", w.strict.Ref("apps/i"), "--platform", "linux/amd64")
	wantAll(t, "error", errorLine(t, res), "validation.manifests.indexes.platforms: none", "or copy with --rewrite-index")
	harness.RunOK(t, nil, "copy", "-i", w.src.Ref("team/multi")+":v1", "--to-repo", w.strict.Ref("apps/i"), "--platform", "linux/amd64", "--rewrite-index")
}

func TestSparseThroughTar(t *testing.T) {
	w := newWorld(t)
	tarPath := filepath.Join(t.TempDir(), "b.tar")
	harness.RunOK(t, nil, "copy", "-b", w.src.Ref("team/bundle")+":v1", "--to-tar", tarPath, "--platform", "linux/amd64")
	res := harness.RunOK(t, nil, "tar", "verify", tarPath)
	wantAll(t, "tar verify", res.Stdout, "(2 index children left out by a platform filter, as recorded)")
	if strings.Contains(res.Stdout, "non-distributable") {
		t.Errorf("tar verify counts the children left out as non-distributable layers: %s", res.Stdout)
	}
	w.checkInspectSparse(t, tarPath)
	w.src.Stop() // the tar holds all that is needed

	again := filepath.Join(t.TempDir(), "again.tar")
	harness.RunOK(t, nil, "copy", "--tar", tarPath, "--to-tar", again)
	res = harness.RunOK(t, nil, "tar", "verify", again)
	wantAll(t, "tar verify of a copy of the tar", res.Stdout, "(2 index children left out by a platform filter, as recorded)")

	res = harness.RunOK(t, nil, "copy", "--tar", tarPath, "--to-repo", w.sparse.Ref("apps/b"))
	wantAll(t, "stderr", res.Stderr, "left out: linux/arm64/v8 (not in the source), linux/arm/v7 (not in the source)")
	w.checkSparse(t, w.sparse, "apps/b")
	if got := resolve(t, w.sparse, "apps/b", "v1"); got != w.bundle.Digest {
		t.Errorf("v1 -> %q, want the bundle %s", got, w.bundle.Digest)
	}

	res = harness.Run(t, nil, "copy", "--tar", tarPath, "--to-repo", w.strict.Ref("apps/b"))
	wantAll(t, "error", errorLine(t, res), w.index.Digest.String(), "validation.manifests.indexes.platforms: none")
}

// checkInspectSparse checks that tar inspect lists the arm children of the
// index as index children left out by the platform filter, with their
// platforms, sizes and parent index, and not as non-distributable layers.
func (w *world) checkInspectSparse(t *testing.T, tarPath string) {
	t.Helper()
	res := harness.RunOK(t, nil, "tar", "inspect", tarPath)
	wantAll(t, "tar inspect", res.Stdout, "Non-distributable layers left out: none", "\nIndex children left out (platform filter): 2;")
	for i, platform := range map[int]string{1: "linux/arm64/v8", 2: "linux/arm/v7"} {
		c := w.children[i]
		found := false
		for line := range strings.SplitSeq(res.Stdout, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == c.Digest.String() {
				found = f[1] == platform && f[2] == c.MediaType
			}
		}
		if !found {
			t.Errorf("tar inspect has no line for %s (%s, %s):\n%s", c.Digest, platform, c.MediaType, res.Stdout)
		}
	}
	res = harness.RunOK(t, nil, "tar", "inspect", "--json", tarPath)
	var rep struct {
		SkippedLayers   []json.RawMessage `json:"skippedLayers"`
		LeftOutChildren []struct {
			Digest   digest.Digest   `json:"digest"`
			Size     int64           `json:"size"`
			Platform string          `json:"platform"`
			Parents  []digest.Digest `json:"parents"`
		} `json:"leftOutChildren"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.SkippedLayers) != 0 || len(rep.LeftOutChildren) != 2 {
		t.Fatalf("skippedLayers %s, leftOutChildren %+v; want none and the two arm images", rep.SkippedLayers, rep.LeftOutChildren)
	}
	for _, c := range rep.LeftOutChildren {
		i := slices.IndexFunc(w.children, func(d ocispec.Descriptor) bool { return d.Digest == c.Digest })
		if i < 1 || c.Size != w.children[i].Size || c.Platform == "" || !slices.Equal(c.Parents, []digest.Digest{w.index.Digest}) {
			t.Errorf("left-out child %+v, want an arm image of %s", c, w.index.Digest)
		}
	}
}

// lockEntry is an entry of an ImagesLock as ferry writes it.
type lockEntry struct {
	Image       string            `yaml:"image"`
	Annotations map[string]string `yaml:"annotations"`
}

func readLock(t *testing.T, path string) []lockEntry {
	t.Helper()
	var lock struct {
		APIVersion string      `yaml:"apiVersion"`
		Kind       string      `yaml:"kind"`
		Images     []lockEntry `yaml:"images"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(readFile(t, path))))
	dec.KnownFields(true)
	if err := dec.Decode(&lock); err != nil || lock.Kind != "ImagesLock" {
		t.Fatalf("%s: kind %q: %v", path, lock.Kind, err)
	}
	return lock.Images
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkRewritten checks the new index in repo: the amd64 child only, its
// descriptor unchanged, the original's annotations and the original digest.
func (w *world) checkRewritten(t *testing.T, r *harness.Registry, repo string, d digest.Digest, mediaType string) {
	t.Helper()
	b := &harness.Builder{Client: r.Client(), PlainHTTP: true}
	desc, raw := b.FetchManifest(t.Context(), t, r.Ref(repo), d.String())
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != mediaType || idx.MediaType != mediaType {
		t.Errorf("new index media type %q (%q), want %q", desc.MediaType, idx.MediaType, mediaType)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != w.children[0].Digest || idx.Manifests[0].Size != w.children[0].Size ||
		idx.Manifests[0].Platform == nil || idx.Manifests[0].Platform.Architecture != "amd64" {
		t.Errorf("new index lists %+v, want the amd64 descriptor unchanged", idx.Manifests)
	}
	if idx.Annotations[annotationOriginal] != w.index.Digest.String() || idx.Annotations["org.opencontainers.image.title"] != "multi" {
		t.Errorf("new index annotations %v", idx.Annotations)
	}
	if !has(t, r, repo, w.children[0]) || has(t, r, repo, w.children[1]) || has(t, r, repo, w.index) {
		t.Errorf("%s: amd64 %v, arm64 %v, original index %v; want true, false, false", repo,
			has(t, r, repo, w.children[0]), has(t, r, repo, w.children[1]), has(t, r, repo, w.index))
	}
}

func TestRewriteIndexImage(t *testing.T) {
	w := newWorld(t)
	lock := filepath.Join(t.TempDir(), "images.lock.yml")
	src := w.src.Ref("team/multi") + ":v1"
	res := harness.RunOK(t, nil, "copy", "-i", src, "--to-repo", w.strict.Ref("apps/multi"),
		"--platform", "linux/amd64", "--rewrite-index", "--lock-output", lock, "--json")
	var doc struct {
		Roots []struct {
			Digest         string `json:"digest"`
			OriginalDigest string `json:"originalDigest"`
			Destination    string `json:"destination"`
		} `json:"roots"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &doc); err != nil || len(doc.Roots) != 1 {
		t.Fatalf("stdout: %v\n%s", err, res.Stdout)
	}
	newDigest := digest.Digest(doc.Roots[0].Digest)
	if newDigest == w.index.Digest || doc.Roots[0].OriginalDigest != w.index.Digest.String() {
		t.Errorf("root %+v: want a new digest and the original %s", doc.Roots[0], w.index.Digest)
	}
	wantAll(t, "stderr", res.Stderr, "copy | index "+src+"@"+w.index.Digest.String()+" rewritten for platforms linux/amd64: now "+newDigest.String())
	w.checkRewritten(t, w.strict, "apps/multi", newDigest, ocispec.MediaTypeImageIndex)
	if got := resolve(t, w.strict, "apps/multi", "v1"); got != newDigest {
		t.Errorf("v1 -> %q, want the new index %s", got, newDigest)
	}
	if got := resolve(t, w.strict, "apps/multi", "sha256-"+newDigest.Encoded()+".imgpkg"); got != newDigest {
		t.Errorf("imgpkg tag of the new index -> %q", got)
	}
	entries := readLock(t, lock)
	if len(entries) != 1 || entries[0].Image != at(w.strict.Ref("apps/multi"), newDigest) || entries[0].Annotations[annotationOriginal] != w.index.Digest.String() {
		t.Errorf("lock output %+v, want the new digest and the original in %s", entries, annotationOriginal)
	}
}

func TestRewriteIndexImagesLock(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	list := w.b.ManifestList(ctx, t, w.src.Ref("team/list"), harness.IndexSpec{
		Platforms: []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}},
	})
	dir := t.TempDir()
	in := filepath.Join(dir, "images.yml")
	images := []string{at(w.src.Ref("team/list"), list.Digest), at(w.src.Ref("team/app"), w.app.Digest)}
	if err := os.WriteFile(in, harness.ImagesLockYAML(t, images, map[string]map[string]string{
		images[0]: {"kbld.carvel.dev/id": "list"}, images[1]: {"kbld.carvel.dev/id": "app"},
	}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "relocated.yml")
	res := harness.RunOK(t, nil, "copy", "--lock", in, "--to-repo", w.strict.Ref("apps/x"), "--platform", "linux/arm64", "--rewrite-index", "--lock-output", out)
	entries := readLock(t, out)
	if len(entries) != 2 {
		t.Fatalf("lock output %+v", entries)
	}
	newDigest := digest.Digest(strings.TrimPrefix(entries[0].Image, w.strict.Ref("apps/x")+"@"))
	if newDigest == list.Digest || entries[0].Annotations[annotationOriginal] != list.Digest.String() || entries[0].Annotations["kbld.carvel.dev/id"] != "list" {
		t.Errorf("entry 0 = %+v, want a new digest, the original and the kbld id", entries[0])
	}
	if entries[1].Image != at(w.strict.Ref("apps/x"), w.app.Digest) || len(entries[1].Annotations) != 1 {
		t.Errorf("entry 1 = %+v, want the image unchanged", entries[1])
	}
	wantAll(t, "stderr", res.Stderr, images[0]+" rewritten for platforms linux/arm64: now "+newDigest.String())
	b := &harness.Builder{Client: w.strict.Client(), PlainHTTP: true}
	desc, raw := b.FetchManifest(ctx, t, w.strict.Ref("apps/x"), newDigest.String())
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != harness.MediaTypeDockerManifestList || len(idx.Manifests) != 1 || idx.Manifests[0].Platform.Architecture != "arm64" ||
		idx.Annotations[annotationOriginal] != list.Digest.String() {
		t.Errorf("new manifest list (%s): %s", desc.MediaType, raw)
	}
}

func TestRewriteIndexRefusedWithBundles(t *testing.T) {
	w := newWorld(t)
	res := harness.Run(t, nil, "copy", "-b", w.src.Ref("team/bundle")+":v1", "--to-repo", w.strict.Ref("apps/b"), "--platform", "linux/amd64", "--rewrite-index")
	wantAll(t, "error", errorLine(t, res), "--rewrite-index cannot be used with -b", "images.yml pins each index it lists by digest", "copy without --rewrite-index")

	// An ImagesLock listing a bundle: refused too, naming it.
	in := filepath.Join(t.TempDir(), "images.yml")
	bundleRef := at(w.src.Ref("team/bundle"), w.bundle.Digest)
	if err := os.WriteFile(in, harness.ImagesLockYAML(t, []string{bundleRef}, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	res = harness.Run(t, nil, "copy", "--lock", in, "--to-repo", w.strict.Ref("apps/b"), "--platform", "linux/amd64", "--rewrite-index")
	wantAll(t, "error", errorLine(t, res), "--rewrite-index: "+bundleRef, "indexes cannot be rewritten below a bundle", "copy without --rewrite-index")
	if has(t, w.strict, "apps/b", w.bundle) {
		t.Error("the bundle was copied")
	}
}

func TestPlatformDryRun(t *testing.T) {
	w := newWorld(t)
	saved := w.imageBytes(t, w.children[1]) + w.imageBytes(t, w.children[2])
	args := []string{"copy", "-b", w.src.Ref("team/bundle") + ":v1", "--to-repo", w.sparse.Ref("apps/b"), "--platform", "linux/amd64", "--dry-run"}
	res := harness.RunOK(t, nil, args...)
	short := at(w.src.Ref("team/multi"), w.index.Digest)[:len(w.src.Ref("team/multi"))+1+7+12]
	wantAll(t, "dry run", res.Stdout,
		"left out of 1 index: 2 children, "+harness.HumanBytes(saved)+" (--platform linux/amd64)",
		short+"  linux/arm64/v8, linux/arm/v7  "+harness.HumanBytes(saved)+"  (sparse, same digest)")

	res = harness.RunOK(t, nil, append(args, "--json")...)
	var plan struct {
		Total struct {
			PlatformLeftOut int64 `json:"platformLeftOut"`
		} `json:"total"`
		LeftOut []struct {
			Image    string `json:"image"`
			Digest   string `json:"digest"`
			Size     int64  `json:"size"`
			Reason   string `json:"reason"`
			Platform string `json:"platform"`
		} `json:"leftOut"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &plan); err != nil {
		t.Fatalf("%v\n%s", err, res.Stdout)
	}
	if plan.Total.PlatformLeftOut != saved || len(plan.LeftOut) != 2 {
		t.Fatalf("platformLeftOut %d, leftOut %+v; want %d in 2 entries", plan.Total.PlatformLeftOut, plan.LeftOut, saved)
	}
	for i, want := range []string{"linux/arm64/v8", "linux/arm/v7"} {
		lo := plan.LeftOut[i]
		if lo.Platform != want || lo.Reason != "platform" || lo.Digest != w.children[i+1].Digest.String() ||
			lo.Size != w.imageBytes(t, w.children[i+1]) || lo.Image != at(w.src.Ref("team/multi"), w.index.Digest) {
			t.Errorf("leftOut[%d] = %+v", i, lo)
		}
	}
	if got := resolve(t, w.sparse, "apps/b", "v1"); got != "" {
		t.Errorf("a dry run tagged v1: %s", got)
	}
}

func TestPlatformUsageErrors(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"not a platform", []string{"--platform", "amd64"}, []string{`--platform "amd64": invalid platform: want os/arch[/variant]`}},
		{"empty variant", []string{"--platform", "linux/arm64/"}, []string{`--platform "linux/arm64/": invalid platform`}},
		{"no match", []string{"--platform", "linux/s390x"}, []string{
			"index " + w.src.Ref("team/multi") + ":v1 (" + w.index.Digest.String() + ")",
			"no child of the index matches the platforms asked for (linux/s390x)",
			"it has linux/amd64, linux/arm64/v8, linux/arm/v7",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"copy", "-i", w.src.Ref("team/multi") + ":v1", "--to-repo", w.sparse.Ref("apps/u")}, tt.args...)
			wantAll(t, "error", errorLine(t, harness.Run(t, nil, args...)), tt.want...)
			if has(t, w.sparse, "apps/u", w.index) {
				t.Error("the index was copied")
			}
		})
	}
}
