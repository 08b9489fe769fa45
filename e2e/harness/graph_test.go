package harness_test

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestGraph(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	b := reg.Builder(5)
	repoRef := reg.Ref("graph/app")
	base := []byte("the shared base layer")
	a := b.Image(ctx, t, repoRef, harness.ImageSpec{SharedBase: base, Layers: []int{300}})
	c := b.Image(ctx, t, repoRef, harness.ImageSpec{SharedBase: base, Layers: []int{400}})
	ga, gc := b.ImageGraph(ctx, t, repoRef, a), b.ImageGraph(ctx, t, repoRef, c)
	if ga[2].Digest != gc[2].Digest {
		t.Fatalf("fixture: the images do not share their first layer: %v %v", ga, gc)
	}
	repo := harness.AnonymousRepository(t, repoRef)

	// An index listing a twice: every digest once, depth first.
	raw, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{a, c, a},
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := repo.Push(ctx, idx, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	// A referrer of a: its subject is below it, it is not below a.
	ref, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.note",
		oras.PackManifestOptions{Subject: &a})
	if err != nil {
		t.Fatal(err)
	}

	digests := func(descs []ocispec.Descriptor) []digest.Digest {
		out := make([]digest.Digest, len(descs))
		for i, d := range descs {
			out[i] = d.Digest
		}
		return out
	}
	var refManifest ocispec.Manifest
	if err := json.Unmarshal(harness.FetchAll(ctx, t, repo, ref), &refManifest); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		root digest.Digest
		want []digest.Digest
	}{
		{"image", a.Digest, digests(ga)},
		{"index with a repeated child and a shared layer", idx.Digest,
			slices.Concat([]digest.Digest{idx.Digest}, digests(ga), digests(gc[:2]), digests(gc[3:]))},
		// The referrer's one layer is the empty blob, its config too: listed once.
		{"referrer", ref.Digest, slices.Concat([]digest.Digest{ref.Digest}, digests(ga), []digest.Digest{refManifest.Config.Digest})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := harness.Graph(ctx, t, repo, tt.root)
			if !slices.Equal(digests(got), tt.want) {
				t.Errorf("Graph:\n got %v\nwant %v", digests(got), tt.want)
			}
			if got[0].MediaType == "" || got[0].Size == 0 {
				t.Errorf("root descriptor %+v lacks its media type or size", got[0])
			}
		})
	}

	missing := digest.FromString("never pushed")
	r := record(func(tb testing.TB) { harness.Graph(ctx, tb, repo, missing) })
	if !r.stopped || len(r.errors) != 1 || !strings.Contains(r.errors[0], missing.String()) {
		t.Errorf("Graph of a missing manifest: failures %q, stopped %v; want a stop naming %s", r.errors, r.stopped, missing)
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1<<20 - 1, "1024.0 KiB"}, // ferry rounds within the unit, as this does
		{1 << 20, "1.0 MiB"},
		{5 << 30, "5.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{1 << 60, "1.0 EiB"},
		{math.MaxInt64, "8.0 EiB"},
	} {
		if got := harness.HumanBytes(tt.n); got != tt.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
