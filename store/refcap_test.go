package store

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// referrersServer answers the referrers API (or 404 without it) and the
// sha256-<hex> tag schema (always 404: no referrers), counting requests.
type referrersServer struct {
	api bool

	mu       sync.Mutex
	apiCalls int // GET /v2/<repo>/referrers/<digest>
	tagCalls int // GET/HEAD of a sha256-<hex> tag
}

func (s *referrersServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.URL.Path == "/v2/":
	case strings.Contains(r.URL.Path, "/referrers/"):
		s.apiCalls++
		if !s.api {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		w.Write([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	case strings.Contains(r.URL.Path, "/manifests/sha256-"):
		s.tagCalls++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	default:
		http.NotFound(w, r)
	}
}

// TestReferrersCapabilityPerHost: the store learns from the first listing
// on a registry whether it has the referrers API, and the next
// repositories of that host do not ask again.
func TestReferrersCapabilityPerHost(t *testing.T) {
	ctx := context.Background()
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("subject"), Size: 7}
	tests := []struct {
		name         string
		api          bool
		wantAPICalls int
		wantTagCalls int
	}{
		{"registry without the API", false, 1, 4},
		{"registry with the API", true, 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := &referrersServer{api: tt.api}
			srv := httptest.NewServer(rs)
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			s := openStore(t, t.TempDir())
			for _, name := range []string{"a", "b", "c", "d"} {
				repo, err := remote.NewRepository(host + "/team/" + name)
				if err != nil {
					t.Fatal(err)
				}
				repo.PlainHTTP = true
				n := 0
				if err := s.Cache(repo).Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error { n += len(page); return nil }); err != nil {
					t.Fatalf("repository %s: %v", name, err)
				}
				if n != 0 {
					t.Errorf("repository %s: %d referrers, want none", name, n)
				}
			}
			if rs.apiCalls != tt.wantAPICalls || rs.tagCalls != tt.wantTagCalls {
				t.Errorf("%d referrers API requests and %d tag-schema requests for 4 repositories; want %d and %d",
					rs.apiCalls, rs.tagCalls, tt.wantAPICalls, tt.wantTagCalls)
			}
		})
	}
}
