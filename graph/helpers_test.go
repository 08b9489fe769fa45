package graph

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
)

// testSource is a map of repository name to oras-go memory store. Unknown
// repositories are created empty, as a registry answers 404 for them.
// Repositories listed in status answer every read with that HTTP status.
type testSource struct {
	mu     sync.Mutex
	repos  map[string]*regStore
	status map[string]int
	asked  map[string]int // Repository calls per name
}

func newTestSource() *testSource {
	return &testSource{repos: map[string]*regStore{}, status: map[string]int{}, asked: map[string]int{}}
}

func (s *testSource) store(repo string) *regStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.repos[repo]
	if !ok {
		st = &regStore{Store: memory.New()}
		s.repos[repo] = st
	}
	return st
}

// regStore is a memory store that, like a registry, resolves the digest of
// every manifest pushed to it.
type regStore struct{ *memory.Store }

func (r *regStore) Push(ctx context.Context, desc ocispec.Descriptor, rd io.Reader) error {
	if err := r.Store.Push(ctx, desc, rd); err != nil {
		return err
	}
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		return r.Store.Tag(ctx, desc, desc.Digest.String())
	}
	return nil
}

func (s *testSource) Repository(_ context.Context, repo string) (oras.ReadOnlyTarget, error) {
	s.mu.Lock()
	s.asked[repo]++
	code := s.status[repo]
	s.mu.Unlock()
	if code != 0 {
		return statusTarget{code: code}, nil
	}
	return s.store(repo), nil
}

// statusTarget answers everything with an HTTP error, as a registry that
// denies access does.
type statusTarget struct{ code int }

func (t statusTarget) err() error {
	return &errcode.ErrorResponse{Method: http.MethodGet, StatusCode: t.code}
}

func (t statusTarget) Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
	return nil, t.err()
}

func (t statusTarget) Exists(context.Context, ocispec.Descriptor) (bool, error) {
	return false, t.err()
}

func (t statusTarget) Resolve(context.Context, string) (ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, t.err()
}

// pushBlob stores data in st.
func pushBlob(t *testing.T, st oras.Target, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(mediaType, data)
	ctx := context.Background()
	if ok, _ := st.Exists(ctx, desc); ok {
		return desc
	}
	if err := st.Push(ctx, desc, bytes.NewReader(data)); err != nil {
		t.Fatalf("push %s: %v", desc.Digest, err)
	}
	return desc
}

// pushManifest stores a manifest or index and makes it resolvable by its
// digest (what a registry does) and by the given tags.
func pushManifest(t *testing.T, st oras.Target, mediaType string, v any, tags ...string) ocispec.Descriptor {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	desc := pushBlob(t, st, mediaType, data)
	for _, tag := range append([]string{desc.Digest.String()}, tags...) {
		if err := st.Tag(context.Background(), desc, tag); err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
	}
	return desc
}

// imageSpec describes a test image.
type imageSpec struct {
	layers  [][]byte             // distributable layer contents (random bytes are fine)
	foreign []ocispec.Descriptor // extra layers of foreign media type, already pushed
	labels  map[string]string
	docker  bool // Docker schema2 media types
	tags    []string
}

// pushImage stores a config, the layers and the manifest of spec in st.
func pushImage(t *testing.T, st oras.Target, spec imageSpec) ocispec.Descriptor {
	t.Helper()
	cfgType, layerType, manType := ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageManifest
	if spec.docker {
		cfgType, layerType, manType = mediaTypeDockerConfig, "application/vnd.docker.image.rootfs.diff.tar.gzip", mediaTypeDockerManifest
	}
	cfg := map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Labels": spec.labels}}
	cfgData, _ := json.Marshal(cfg)
	m := ocispec.Manifest{MediaType: manType, Config: pushBlob(t, st, cfgType, cfgData)}
	m.SchemaVersion = 2
	for _, l := range spec.layers {
		m.Layers = append(m.Layers, pushBlob(t, st, layerType, l))
	}
	m.Layers = append(m.Layers, spec.foreign...)
	return pushManifest(t, st, manType, m, spec.tags...)
}

// pushIndex stores an index of the given manifests.
func pushIndex(t *testing.T, st oras.Target, children []ocispec.Descriptor, tags ...string) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: children}
	idx.SchemaVersion = 2
	return pushManifest(t, st, ocispec.MediaTypeImageIndex, idx, tags...)
}

// tarGz builds a gzip tar of files (name -> content), directories implied.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		for i := range len(n) {
			if n[i] == '/' && !dirs[n[:i+1]] {
				dirs[n[:i+1]] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n[:i+1], Mode: 0o700}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o600, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imagesYML marshals an ImagesLock of refs (with a kbld annotation on each).
func imagesYML(t *testing.T, refs ...string) string {
	t.Helper()
	lock := &lockfile.ImagesLock{}
	for _, r := range refs {
		lock.Images = append(lock.Images, lockfile.ImageRef{Image: r, Annotations: map[string]string{"kbld.carvel.dev/id": "id-of-" + r[len(r)-6:]}})
	}
	data, err := lock.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// pushBundle stores a bundle (Docker types, one layer, as imgpkg pushes
// them) whose images.yml lists refs, plus a config.yml file.
func pushBundle(t *testing.T, st oras.Target, note string, refs []string, tags ...string) ocispec.Descriptor {
	t.Helper()
	layer := tarGz(t, map[string]string{
		".imgpkg/images.yml": imagesYML(t, refs...),
		"config/app.yml":     "note: " + note + "\n",
	})
	return pushImage(t, st, imageSpec{layers: [][]byte{layer}, labels: map[string]string{bundle.BundleLabel: "true"}, docker: true, tags: tags})
}

// ref joins a repository and a digest.
func ref(repo string, d ocispec.Descriptor) string {
	return repo + "@" + d.Digest.String()
}

// countingTarget wraps a destination and counts pushes and tags; failPush
// makes the push of one digest fail.
type countingTarget struct {
	*memory.Store
	mu       sync.Mutex
	pushes   map[digest.Digest]int
	tags     []string
	failPush digest.Digest
}

func newCountingTarget() *countingTarget {
	return &countingTarget{Store: memory.New(), pushes: map[digest.Digest]int{}}
}

var errInjected = &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusInternalServerError}

func (c *countingTarget) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	c.mu.Lock()
	c.pushes[desc.Digest]++
	fail := desc.Digest == c.failPush
	c.mu.Unlock()
	if fail {
		return errInjected
	}
	return c.Store.Push(ctx, desc, r)
}

func (c *countingTarget) Tag(ctx context.Context, desc ocispec.Descriptor, ref string) error {
	c.mu.Lock()
	c.tags = append(c.tags, ref)
	c.mu.Unlock()
	return c.Store.Tag(ctx, desc, ref)
}

func (c *countingTarget) totalPushes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.pushes {
		n += v
	}
	return n
}

// mountingTarget is a countingTarget that also mounts blobs from the
// repositories of a testSource on host "src.io".
type mountingTarget struct {
	*countingTarget
	src    *testSource
	host   string
	mounts []string
}

func (m *mountingTarget) Mount(ctx context.Context, desc ocispec.Descriptor, fromRepo string, getContent func() (io.ReadCloser, error)) error {
	m.mu.Lock()
	m.mounts = append(m.mounts, fromRepo)
	m.mu.Unlock()
	from := m.src.store(m.host + "/" + fromRepo)
	rc, err := from.Fetch(ctx, desc)
	if err != nil {
		rc, err = getContent() // the mount failed: upload
		if err != nil {
			return err
		}
	}
	defer rc.Close()
	return m.Store.Push(ctx, desc, rc)
}

// resolveTag resolves a tag in st, failing the test when it is missing.
func resolveTag(t *testing.T, st oras.ReadOnlyTarget, tag string) ocispec.Descriptor {
	t.Helper()
	d, err := st.Resolve(context.Background(), tag)
	if err != nil {
		t.Fatalf("tag %s: %v", tag, err)
	}
	return d
}
