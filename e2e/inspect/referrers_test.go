package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// plainRepo opens repoRef anonymously over plain HTTP on loopback.
func plainRepo(t *testing.T, repoRef string) *remote.Repository {
	t.Helper()
	r, err := remote.NewRepository(repoRef)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	return r
}

// pushReferrer pushes an artifact of artifactType whose subject is subject.
// oras-go keeps the referrers up to date: through the registry's referrers
// API, or the sha256-<hex> tag index on a registry without it.
func pushReferrer(ctx context.Context, t *testing.T, repoRef, artifactType string, subject ocispec.Descriptor, note string) ocispec.Descriptor {
	t.Helper()
	r := plainRepo(t, repoRef)
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		desc := content.NewDescriptorFromBytes(mediaType, data)
		if err := r.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			t.Fatalf("push %s to %s: %v", desc.Digest, repoRef, err)
		}
		return desc
	}
	s := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       push(ocispec.MediaTypeEmptyJSON, []byte("{}")),
		Layers:       []ocispec.Descriptor{push("text/plain", []byte(note))},
		Subject:      &s,
		Annotations:  map[string]string{"org.example.note": note},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return push(ocispec.MediaTypeImageManifest, raw)
}

// TestDescribeReferrers shows the OCI 1.1 referrers of an image and of a
// child of an index: through the referrers API (go-containerregistry's
// registry) and through the tag schema (distribution, which has no API).
func TestDescribeReferrers(t *testing.T) {
	t.Parallel()
	hosts := map[string]func(t *testing.T) string{
		"referrers API": func(t *testing.T) string {
			srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
			t.Cleanup(srv.Close)
			return strings.TrimPrefix(srv.URL, "http://")
		},
		"tag schema": func(t *testing.T) string {
			return harness.StartRegistry(t, harness.RegistryOptions{}).Host
		},
	}
	for name, start := range hosts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			repoRef := start(t) + "/apps/signed"
			b := &harness.Builder{Client: &http.Client{Transport: &http.Transport{Proxy: nil}}, PlainHTTP: true, Seed: 31}
			a := b.Image(ctx, t, repoRef, harness.ImageSpec{})
			idx := b.Index(ctx, t, repoRef, harness.IndexSpec{})
			_, raw := b.FetchManifest(ctx, t, repoRef, idx.Digest.String())
			var index ocispec.Index
			if err := json.Unmarshal(raw, &index); err != nil {
				t.Fatal(err)
			}
			arm := index.Manifests[1]
			sbom := pushReferrer(ctx, t, repoRef, "application/spdx+json", a, "sbom of a")
			att := pushReferrer(ctx, t, repoRef, "application/vnd.example.attestation", arm, "attestation of arm64")
			bundle := b.Bundle(ctx, t, repoRef, harness.BundleSpec{Images: []string{harness.DigestRef(repoRef, a.Digest), harness.DigestRef(repoRef, idx.Digest)}, Tag: "v1"})

			res := harness.RunOK(t, nil, "describe", "-b", repoRef+":v1")
			tree := lines(res.Stdout)[3:]
			want := []string{
				"bundle " + harness.DigestRef(repoRef, bundle.Digest) + "  ",
				"├── image " + harness.DigestRef(repoRef, a.Digest) + "  ",
				"│   └── referrer " + harness.DigestRef(repoRef, sbom.Digest) + " (application/spdx+json)  ",
				"└── index " + harness.DigestRef(repoRef, idx.Digest) + "  ",
				"    ├── linux/amd64 " + index.Manifests[0].Digest.String() + "  ",
				"    ├── linux/arm64 " + arm.Digest.String() + "  ",
				"    └── referrer " + harness.DigestRef(repoRef, att.Digest) + " (application/vnd.example.attestation, of " + arm.Digest.String() + ")  ",
			}
			if len(tree) != len(want) {
				t.Fatalf("tree has %d lines, want %d:\n%s", len(tree), len(want), res.Stdout)
			}
			for i := range want {
				if !strings.HasPrefix(tree[i], want[i]) {
					t.Errorf("line %d:\n got %q\nwant prefix %q", i, tree[i], want[i])
				}
			}

			res = harness.RunOK(t, nil, "describe", "-b", repoRef+":v1", "-o", "yaml")
			var doc struct {
				Content struct {
					Images map[string]struct {
						ImageType    string            `yaml:"imageType"`
						ArtifactType string            `yaml:"artifactType"`
						Subject      string            `yaml:"subject"`
						Size         int64             `yaml:"size"`
						Annotations  map[string]string `yaml:"annotations"`
					} `yaml:"images"`
				} `yaml:"content"`
			}
			if err := yaml.Unmarshal([]byte(res.Stdout), &doc); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				desc         ocispec.Descriptor
				artifactType string
				subject      string
				note         string
			}{
				{sbom, "application/spdx+json", a.Digest.String(), "sbom of a"},
				{att, "application/vnd.example.attestation", arm.Digest.String(), "attestation of arm64"},
			} {
				r, ok := doc.Content.Images[c.desc.Digest.String()]
				if !ok || r.ImageType != "Referrer" || r.ArtifactType != c.artifactType || r.Subject != c.subject ||
					r.Annotations["org.example.note"] != c.note || r.Size != c.desc.Size+2+int64(len(c.note)) {
					t.Errorf("referrer %s: %+v", c.desc.Digest, r)
				}
			}

			res = harness.RunOK(t, nil, "describe", "-b", repoRef+":v1", "--referrers=false")
			if strings.Contains(res.Stdout, "referrer") || len(lines(res.Stdout)) != len(want)+3-2 {
				t.Errorf("--referrers=false:\n%s", res.Stdout)
			}
		})
	}
}
