// Package relocate_test runs `ferry copy --to-repo` and `ferry pull` between
// registries started in process: the air-gapped workflow's Option 1 and
// Step 3, with every relocation rule of COMPAT.md checked at the registry.
package relocate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const apiVersion = "imgpkg.carvel.dev/v1alpha1"

// Lock file shapes as imgpkg writes them; decoding rejects unknown fields.
type (
	imageEntry struct {
		Image       string            `yaml:"image"`
		Annotations map[string]string `yaml:"annotations,omitempty"`
	}
	imagesLock struct {
		APIVersion string       `yaml:"apiVersion"`
		Kind       string       `yaml:"kind"`
		Images     []imageEntry `yaml:"images"`
	}
	bundleLock struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Bundle     struct {
			Image string `yaml:"image"`
			Tag   string `yaml:"tag"`
		} `yaml:"bundle"`
	}
	imageLocation struct {
		Image    string `yaml:"image"`
		IsBundle bool   `yaml:"isBundle"`
	}
	imageLocations struct {
		APIVersion string          `yaml:"apiVersion"`
		Kind       string          `yaml:"kind"`
		Images     []imageLocation `yaml:"images"`
	}
)

// decodeYAML decodes a written lock file strictly: it must start with
// "---", have no unknown fields and the given kind.
func decodeYAML[T any](t *testing.T, name string, data []byte, kind string) T {
	t.Helper()
	var v T
	if !bytes.HasPrefix(data, []byte("---\n")) {
		t.Errorf("%s does not start with ---:\n%s", name, data)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, data)
	}
	var head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if head.APIVersion != apiVersion || head.Kind != kind {
		t.Errorf("%s: apiVersion %q kind %q, want %q %q", name, head.APIVersion, head.Kind, apiVersion, kind)
	}
	return v
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantTags checks that repo's tags are exactly want (tag -> digest) and that
// each resolves to its digest.
func wantTags(ctx context.Context, t *testing.T, repo *remote.Repository, want map[string]digest.Digest) {
	t.Helper()
	got := harness.Tags(ctx, t, repo)
	if w := slices.Sorted(maps.Keys(want)); !slices.Equal(got, w) {
		t.Errorf("tags of %s:\n got %q\nwant %q", repo.Reference, got, w)
	}
	for tag, d := range want {
		if d == "" {
			continue
		}
		desc, err := repo.Resolve(ctx, tag)
		if err != nil {
			t.Errorf("resolve %s:%s: %v", repo.Reference, tag, err)
			continue
		}
		if desc.Digest != d {
			t.Errorf("%s:%s -> %s, want %s", repo.Reference, tag, desc.Digest, d)
		}
	}
}

// resolve returns the digest of reference in repo.
func resolve(ctx context.Context, t *testing.T, repo *remote.Repository, reference string) digest.Digest {
	t.Helper()
	desc, err := repo.Resolve(ctx, reference)
	if err != nil {
		t.Fatalf("resolve %s:%s: %v", repo.Reference, reference, err)
	}
	return desc.Digest
}

// graphOf is harness.Graph: every descriptor reachable from the manifest d
// in repo, d first, each once.
func graphOf(ctx context.Context, t *testing.T, repo *remote.Repository, d digest.Digest) []ocispec.Descriptor {
	t.Helper()
	return harness.Graph(ctx, t, repo, d)
}

// isNonDistributable reports whether a layer is a Docker foreign layer or
// an OCI non-distributable layer.
func isNonDistributable(desc ocispec.Descriptor) bool {
	return strings.Contains(desc.MediaType, ".foreign.") || strings.Contains(desc.MediaType, ".nondistributable.")
}

// wantAllAt checks that everything reachable from d in src (manifests,
// index children, configs, layers) exists in dst, except non-distributable
// layers when skipForeign. It returns the descriptors checked.
func wantAllAt(ctx context.Context, t *testing.T, src, dst *remote.Repository, d digest.Digest, skipForeign bool) []ocispec.Descriptor {
	t.Helper()
	all := graphOf(ctx, t, src, d)
	for _, desc := range all {
		if skipForeign && isNonDistributable(desc) {
			continue
		}
		ok, err := dst.Exists(ctx, desc)
		if err != nil {
			t.Errorf("exists %s in %s: %v", desc.Digest, dst.Reference, err)
			continue
		}
		if !ok {
			t.Errorf("%s (%s, from %s@%s) missing in %s", desc.Digest, desc.MediaType, src.Reference, d, dst.Reference)
		}
	}
	return all
}

// isManifest reports whether desc is a manifest or an index (not a blob).
func isManifest(desc ocispec.Descriptor) bool {
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		harness.MediaTypeDockerManifest, harness.MediaTypeDockerManifestList:
		return true
	}
	return false
}

// exists reports whether desc exists in repo.
func exists(ctx context.Context, t *testing.T, repo *remote.Repository, desc ocispec.Descriptor) bool {
	t.Helper()
	ok, err := repo.Exists(ctx, desc)
	if err != nil && !errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("exists %s in %s: %v", desc.Digest, repo.Reference, err)
	}
	return ok
}

// manifestOf fetches and decodes the image manifest d of repo.
func manifestOf(ctx context.Context, t *testing.T, repo *remote.Repository, d digest.Digest) ocispec.Manifest {
	t.Helper()
	desc, err := repo.Resolve(ctx, d.String())
	if err != nil {
		t.Fatalf("resolve %s@%s: %v", repo.Reference, d, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(harness.FetchAll(ctx, t, repo, desc), &m); err != nil {
		t.Fatalf("manifest %s: %v", d, err)
	}
	return m
}

// readImageLocations resolves the ImageLocations cache image of bundle in
// repo and returns its image-locations.yml, checking that the image has a
// single layer holding only that file.
func readImageLocations(ctx context.Context, t *testing.T, repo *remote.Repository, bundle digest.Digest) imageLocations {
	t.Helper()
	d := resolve(ctx, t, repo, harness.ImageLocationsTag(bundle))
	m := manifestOf(ctx, t, repo, d)
	if len(m.Layers) != 1 {
		t.Fatalf("ImageLocations image %s has %d layers, want 1", d, len(m.Layers))
	}
	files := harness.LayerFiles(t, harness.FetchAll(ctx, t, repo, m.Layers[0]))
	if len(files) != 1 || files["image-locations.yml"] == nil {
		t.Fatalf("ImageLocations layer holds %q, want only image-locations.yml", slices.Sorted(maps.Keys(files)))
	}
	return decodeYAML[imageLocations](t, "image-locations.yml", files["image-locations.yml"], "ImageLocations")
}

// wantLocations checks an ImageLocations file against the original
// references (ref -> isBundle): every one, sorted by reference.
func wantLocations(t *testing.T, got imageLocations, want map[string]bool) {
	t.Helper()
	var w []imageLocation
	for _, ref := range slices.Sorted(maps.Keys(want)) {
		w = append(w, imageLocation{Image: ref, IsBundle: want[ref]})
	}
	if !slices.Equal(got.Images, w) {
		t.Errorf("image-locations.yml images:\n got %+v\nwant %+v", got.Images, w)
	}
}

// stderrLines returns the lines of stderr.
func stderrLines(res harness.Result) []string {
	return strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
}

// wantLine checks that stderr has a line equal to line.
func wantLine(t *testing.T, res harness.Result, line string) {
	t.Helper()
	if !slices.Contains(stderrLines(res), line) {
		t.Errorf("stderr has no line %q:\n%s", line, res.Stderr)
	}
}

// wantSucceeded checks that the last stderr line is "Succeeded".
func wantSucceeded(t *testing.T, res harness.Result) {
	t.Helper()
	lines := stderrLines(res)
	if lines[len(lines)-1] != "Succeeded" {
		t.Errorf("last stderr line %q, want Succeeded:\n%s", lines[len(lines)-1], res.Stderr)
	}
}

// wantImagesLock checks a lock's images, in order, with their annotations.
func wantImagesLock(t *testing.T, name string, got imagesLock, want []imageEntry) {
	t.Helper()
	if len(got.Images) != len(want) {
		t.Fatalf("%s: %d images, want %d:\n got %+v\nwant %+v", name, len(got.Images), len(want), got.Images, want)
	}
	for i := range want {
		if got.Images[i].Image != want[i].Image || !maps.Equal(got.Images[i].Annotations, want[i].Annotations) {
			t.Errorf("%s: images[%d] = %+v, want %+v", name, i, got.Images[i], want[i])
		}
	}
}

// uploads summarizes the upload requests a proxy saw: blob digests mounted
// (POST ...?mount=D answered 201), and bytes sent per blob digest by PUT
// (the digest is in the PUT's query) or PATCH (attributed to nothing).
type uploads struct {
	mounted    map[digest.Digest]bool
	mountTried map[digest.Digest]bool
	putBytes   map[digest.Digest]int64
	puts       int
	patchBytes int64
}

func uploadsOf(t *testing.T, s harness.Stats) uploads {
	t.Helper()
	u := uploads{mounted: map[digest.Digest]bool{}, mountTried: map[digest.Digest]bool{}, putBytes: map[digest.Digest]int64{}}
	for _, rec := range s.Log {
		if rec.Class != harness.ClassUpload {
			continue
		}
		q, err := url.ParseQuery(rec.Query)
		if err != nil {
			t.Fatalf("query %q: %v", rec.Query, err)
		}
		switch rec.Method {
		case http.MethodPost:
			if m := q.Get("mount"); m != "" {
				u.mountTried[digest.Digest(m)] = true
				if rec.Status == http.StatusCreated {
					u.mounted[digest.Digest(m)] = true
				}
			}
		case http.MethodPut:
			u.puts++
			u.putBytes[digest.Digest(q.Get("digest"))] += rec.UploadBytes
		case http.MethodPatch:
			u.patchBytes += rec.UploadBytes
		}
	}
	return u
}

// requestSummary formats a proxy's request counts, sorted, for logs.
func requestSummary(s harness.Stats) string {
	keys := slices.SortedFunc(maps.Keys(s.Requests), func(a, b harness.RequestKey) int {
		if c := strings.Compare(string(a.Class), string(b.Class)); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	var b strings.Builder
	total := 0
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %s=%d", k.Method, k.Class, s.Requests[k])
		total += s.Requests[k]
	}
	return fmt.Sprintf("%d requests:%s; blob bytes served %d, uploaded %d", total, b.String(), s.BlobBytesServed, s.BlobBytesUploaded)
}

// at is harness.DigestRef, kept for measure_test.go.
func at(repoRef string, d digest.Digest) string { return harness.DigestRef(repoRef, d) }

// anonymousRepo is harness.AnonymousRepository, kept for measure_test.go.
func anonymousRepo(t *testing.T, repoRef string) *remote.Repository {
	t.Helper()
	return harness.AnonymousRepository(t, repoRef)
}
