package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// listingStore is a memory store that lists referrers from its predecessor
// graph, as a registry with the referrers API does.
type listingStore struct {
	*memory.Store
	calls int
}

func (l *listingStore) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func([]ocispec.Descriptor) error) error {
	l.calls++
	refs, err := registry.Referrers(ctx, l.Store, desc, artifactType)
	if err != nil {
		return err
	}
	return fn(refs)
}

// pushJSON pushes v as a blob of mediaType into st.
func pushJSON(t *testing.T, st oras.Target, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	desc := content.NewDescriptorFromBytes(mediaType, data)
	if err := st.Push(context.Background(), desc, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return desc
}

func TestCachedTargetReferrers(t *testing.T) {
	ctx := context.Background()
	remote := &listingStore{Store: memory.New()}
	cfg := pushJSON(t, remote, ocispec.MediaTypeImageConfig, map[string]string{"os": "linux"})
	image := pushJSON(t, remote, ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{}})
	empty := pushJSON(t, remote, ocispec.MediaTypeEmptyJSON, map[string]string{})
	var sboms []digest.Digest
	for _, at := range []string{"application/vnd.example.sbom", "application/vnd.example.sig"} {
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: at, Config: empty, Layers: []ocispec.Descriptor{empty}, Subject: &image}
		d := pushJSON(t, remote, ocispec.MediaTypeImageManifest, m)
		if at == "application/vnd.example.sbom" {
			sboms = append(sboms, d.Digest)
		}
	}
	s := openStore(t, t.TempDir())

	tests := []struct {
		name         string
		artifactType string
		want         int
	}{
		{"all", "", 2},
		{"filtered by artifact type", "application/vnd.example.sbom", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []ocispec.Descriptor
			err := s.Cache(remote).Referrers(ctx, image, tc.artifactType, func(page []ocispec.Descriptor) error {
				got = append(got, page...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d referrers, want %d: %v", len(got), tc.want, got)
			}
			if tc.artifactType != "" && !slices.Contains(sboms, got[0].Digest) {
				t.Errorf("filtered referrer %s, want one of %v", got[0].Digest, sboms)
			}
		})
	}
	if remote.calls != len(tests) {
		t.Errorf("remote listed referrers %d times, want %d (never cached)", remote.calls, len(tests))
	}

	t.Run("remote without referrers", func(t *testing.T) {
		err := s.Cache(memory.New()).Referrers(ctx, image, "", func([]ocispec.Descriptor) error {
			t.Error("fn called")
			return nil
		})
		if !errors.Is(err, errdef.ErrUnsupported) {
			t.Fatalf("err = %v, want errdef.ErrUnsupported", err)
		}
	})
}
