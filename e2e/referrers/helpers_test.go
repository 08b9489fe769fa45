// Package referrers_test checks that `ferry copy` carries OCI 1.1 referrers
// (signatures, SBOMs, attestations attached through a manifest's `subject`)
// and cosign's sha256-<hex>.sig/.att/.sbom tags along with the images:
//
//   - the referrers API path, on go-containerregistry's in-process registry
//     started with referrers support (distribution has no referrers API);
//   - the fallback tag schema (an index tagged sha256-<hex> listing the
//     referrers), on the CNCF distribution registry;
//   - through an OCI layout tar (--to-tar, then --tar --to-repo);
//   - --referrers=false, which copies none.
package referrers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Artifact types used by the fixtures.
const (
	typeSBOM      = "application/vnd.example.sbom"
	typeSignature = "application/vnd.example.signature"
)

// ggcrRegistry is go-containerregistry's in-process registry with the OCI
// referrers API, served on 127.0.0.1 over plain HTTP. It keeps everything in
// memory and is stopped when the test ends.
//
// go-containerregistry does not answer a manifest push with the OCI-Subject
// header that the distribution spec asks of registries that process
// `subject`; oras-go then also maintains the sha256-<hex> tag index there.
// With subjectHeader the test server adds the header, as registries such as
// zot, Harbor or the big cloud registries send it.
type ggcrRegistry struct {
	Host string
}

func startGGCR(t *testing.T, subjectHeader bool) *ggcrRegistry {
	t.Helper()
	var h http.Handler = registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	if subjectHeader {
		h = withSubjectHeader(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &ggcrRegistry{Host: strings.TrimPrefix(srv.URL, "http://")}
}

// withSubjectHeader answers a successful manifest PUT whose manifest has a
// subject with the OCI-Subject header.
func withSubjectHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Subject *ocispec.Descriptor `json:"subject"`
		}
		if json.Unmarshal(body, &m) == nil && m.Subject != nil {
			w = &subjectWriter{ResponseWriter: w, subject: m.Subject.Digest.String()}
		}
		next.ServeHTTP(w, r)
	})
}

type subjectWriter struct {
	http.ResponseWriter
	subject string
}

func (w *subjectWriter) WriteHeader(code int) {
	if code == http.StatusCreated {
		w.Header().Set("OCI-Subject", w.subject)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (r *ggcrRegistry) Ref(repo string) string { return r.Host + "/" + repo }

// registryUnderTest is what the tests need of either registry.
type registryUnderTest interface {
	Ref(repo string) string
}

// builder returns a fixture builder for a plain-HTTP registry on loopback.
func builder(seed uint64) *harness.Builder {
	return &harness.Builder{Client: &http.Client{Transport: &http.Transport{Proxy: nil}}, PlainHTTP: true, Seed: seed}
}

// pushArtifact pushes an artifact manifest with subject to repoRef: an
// empty config and one layer holding note. With an empty artifactType the
// field is left out and the config gets the media type typeSignature
// instead (the older way of typing an artifact). Returns its descriptor.
// oras-go's push keeps the registry's referrers up to date: nothing to do
// with the API, the sha256-<hex> tag index without it.
func pushArtifact(ctx context.Context, t *testing.T, repoRef, artifactType string, subject ocispec.Descriptor, note string) ocispec.Descriptor {
	t.Helper()
	r := harness.AnonymousRepository(t, repoRef)
	cfgType, cfgBody := ocispec.MediaTypeEmptyJSON, []byte("{}")
	if artifactType == "" {
		cfgType, cfgBody = typeSignature, []byte(`{"note":"`+note+`"}`)
	}
	cfg := pushBytes(ctx, t, r, cfgType, cfgBody)
	layer := pushBytes(ctx, t, r, "application/vnd.example.note", []byte(note))
	s := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &s,
		Annotations:  map[string]string{"org.example.note": note},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return pushBytes(ctx, t, r, ocispec.MediaTypeImageManifest, raw)
}

func pushBytes(ctx context.Context, t *testing.T, r *remote.Repository, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(mediaType, b)
	if err := r.Push(ctx, desc, strings.NewReader(string(b))); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		t.Fatalf("push %s to %s: %v", desc.Digest, r.Reference, err)
	}
	return desc
}

// referrers lists the referrers of subject in r (the API, or oras-go's
// fallback to the tag schema), sorted by digest.
func referrers(ctx context.Context, t *testing.T, r *remote.Repository, subject ocispec.Descriptor) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	err := r.Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error {
		for _, d := range page {
			out = append(out, d.Digest)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("referrers of %s in %s: %v", subject.Digest, r.Reference, err)
	}
	slices.Sort(out)
	return out
}

// referrersByAPI asks the registry's referrers API directly (no fallback)
// and returns the descriptors it lists.
func referrersByAPI(ctx context.Context, t *testing.T, repoRef string, subject digest.Digest) []ocispec.Descriptor {
	t.Helper()
	host, name, _ := strings.Cut(repoRef, "/")
	resp, err := http.Get("http://" + host + "/v2/" + name + "/referrers/" + subject.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET referrers of %s in %s: %s", subject, repoRef, resp.Status)
	}
	var idx ocispec.Index
	if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
		t.Fatal(err)
	}
	return idx.Manifests
}

// exists reports whether r has the manifest desc.
func exists(ctx context.Context, t *testing.T, r *remote.Repository, desc ocispec.Descriptor) bool {
	t.Helper()
	_, err := r.Resolve(ctx, desc.Digest.String())
	if err == nil {
		return true
	}
	var resp *errcode.ErrorResponse
	if errors.Is(err, errdef.ErrNotFound) || (errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound) {
		return false
	}
	t.Fatalf("resolve %s in %s: %v", desc.Digest, r.Reference, err)
	return false
}

// digestTag is "sha256-<hex><suffix>".
func digestTag(d digest.Digest, suffix string) string {
	return d.Algorithm().String() + "-" + d.Encoded() + suffix
}

// wantDigests fails unless got and want hold the same digests.
func wantDigests(t *testing.T, what string, got []digest.Digest, want ...digest.Digest) {
	t.Helper()
	w := slices.Clone(want)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Errorf("%s = %v, want %v", what, got, w)
	}
}
