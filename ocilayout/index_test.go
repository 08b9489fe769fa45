package ocilayout

import (
	"errors"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestRootDescriptorRoundTrip(t *testing.T) {
	d := ocispec.Descriptor{
		MediaType:   ocispec.MediaTypeImageManifest,
		Digest:      digest.FromString("m"),
		Size:        1,
		Annotations: map[string]string{"org.example": "kept", AnnotationFerryTag: "stale"},
	}
	skipped := ocispec.Descriptor{MediaType: mtDockerForeign, Digest: digest.FromString("l"), Size: 5, URLs: []string{"https://x"}}
	cases := []struct {
		name string
		root Root
		ann  map[string]string
	}{
		{
			name: "untagged image from images.yml",
			root: Root{Desc: d, OriginalRef: "reg/app@" + d.Digest.String(),
				Requests: []Request{{Position: 2, Ref: "reg/app@" + d.Digest.String(), Annotations: map[string]string{"kbld.carvel.dev/id": "app"}}}},
			ann: map[string]string{
				"org.example":              "kept",
				AnnotationRefName:          DigestTag(d.Digest),
				AnnotationContainerdName:   "reg/app@" + d.Digest.String(),
				AnnotationFerryOriginalRef: "reg/app@" + d.Digest.String(),
				AnnotationFerryRequests:    `[{"position":2,"ref":"reg/app@` + d.Digest.String() + `","annotations":{"kbld.carvel.dev/id":"app"}}]`,
			},
		},
		{
			name: "tagged root bundle with skipped layers",
			root: Root{Desc: d, Tag: "v1.2", OriginalRef: "reg/b:v1.2", Bundle: true, RootBundle: true, SkippedLayers: []ocispec.Descriptor{skipped}},
			ann: map[string]string{
				"org.example":                "kept",
				AnnotationRefName:            "v1.2",
				AnnotationContainerdName:     "reg/b:v1.2",
				AnnotationFerryOriginalRef:   "reg/b:v1.2",
				AnnotationFerryTag:           "v1.2",
				AnnotationFerryBundle:        "true",
				AnnotationFerryRootBundle:    "true",
				AnnotationFerrySkippedLayers: `[{"mediaType":"` + mtDockerForeign + `","digest":"` + skipped.Digest.String() + `","size":5,"urls":["https://x"]}]`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.root.Descriptor()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Annotations, tc.ann) {
				t.Errorf("annotations\n%v\nwant\n%v", got.Annotations, tc.ann)
			}
			back, err := RootFromDescriptor(got)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.root
			want.Desc = got
			if !reflect.DeepEqual(back, want) {
				t.Errorf("round trip\n%+v\nwant\n%+v", back, want)
			}
		})
	}
}

func TestRootInvalid(t *testing.T) {
	d := ocispec.Descriptor{Digest: digest.FromString("m"), Size: 1}
	for _, r := range []Root{{Desc: d, Tag: "bad tag"}, {Desc: d, Tag: "reg/x:v1"}, {Desc: ocispec.Descriptor{Digest: "sha256:nope"}}} {
		if _, err := r.Descriptor(); !errors.Is(err, ErrInvalidRoot) {
			t.Errorf("%+v: error %v, want ErrInvalidRoot", r, err)
		}
	}
	bad := ocispec.Descriptor{Digest: d.Digest, Annotations: map[string]string{AnnotationFerryTag: "a b"}}
	if _, err := RootFromDescriptor(bad); !errors.Is(err, ErrMalformedIndex) {
		t.Errorf("invalid ferry tag: error %v, want ErrMalformedIndex", err)
	}
	bad.Annotations = map[string]string{AnnotationFerrySkippedLayers: "{"}
	if _, err := RootFromDescriptor(bad); !errors.Is(err, ErrMalformedIndex) {
		t.Errorf("malformed skipped layers: error %v, want ErrMalformedIndex", err)
	}
}

func TestNewIndexMerges(t *testing.T) {
	a := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("a"), Size: 1}
	b := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("b"), Size: 1}
	l1 := ocispec.Descriptor{Digest: digest.FromString("l1")}
	idx, err := NewIndex([]Root{
		{Desc: a, OriginalRef: "reg/a@x", Requests: []Request{{Position: 3, Ref: "second"}}, SkippedLayers: []ocispec.Descriptor{l1}},
		{Desc: b, Tag: "v1"},
		{Desc: a, OriginalRef: "other/a@x", Bundle: true, Requests: []Request{{Position: 1, Ref: "first"}}, SkippedLayers: []ocispec.Descriptor{l1}},
		{Desc: a, Tag: "latest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 3 {
		t.Fatalf("index %+v, want 3 entries", idx)
	}
	roots, err := RootsOf(idx)
	if err != nil {
		t.Fatal(err)
	}
	r := roots[0]
	if r.RefName() != DigestTag(a.Digest) || r.OriginalRef != "reg/a@x" || !r.Bundle || len(r.SkippedLayers) != 1 ||
		len(r.Requests) != 2 || r.Requests[0].Ref != "first" || r.Requests[1].Ref != "second" {
		t.Errorf("merged root %+v", r)
	}
	if roots[1].Tag != "v1" || roots[1].Desc.Digest != b.Digest || roots[2].Tag != "latest" || roots[2].Desc.Digest != a.Digest {
		t.Errorf("roots %+v", roots[1:])
	}
	if _, err := NewIndex([]Root{{Desc: a, Tag: "v1"}, {Desc: b, Tag: "v1"}}); !errors.Is(err, ErrConflictingRef) {
		t.Errorf("same tag on two digests: error %v, want ErrConflictingRef", err)
	}
}

func TestRootFromForeignDescriptor(t *testing.T) {
	d := digest.FromString("m")
	cases := []struct {
		ann      map[string]string
		tag, ref string
	}{
		{map[string]string{AnnotationRefName: "v1"}, "v1", ""},
		{map[string]string{AnnotationRefName: "latest", AnnotationContainerdName: "docker.io/library/nginx:latest"}, "latest", "docker.io/library/nginx:latest"},
		{map[string]string{AnnotationRefName: "docker.io/library/nginx:1.25"}, "1.25", "docker.io/library/nginx:1.25"},
		{map[string]string{AnnotationRefName: "localhost:5000/app"}, "", "localhost:5000/app"},
		{map[string]string{AnnotationRefName: "reg/app@" + d.String()}, "", "reg/app@" + d.String()},
		{map[string]string{AnnotationRefName: DigestTag(d)}, "", ""},
		{nil, "", ""},
	}
	for _, tc := range cases {
		r, err := RootFromDescriptor(ocispec.Descriptor{Digest: d, Annotations: tc.ann})
		if err != nil {
			t.Fatal(err)
		}
		if r.Tag != tc.tag || r.OriginalRef != tc.ref || r.Bundle || r.RootBundle || r.Requests != nil {
			t.Errorf("%v: tag %q ref %q, want %q %q", tc.ann, r.Tag, r.OriginalRef, tc.tag, tc.ref)
		}
	}
}
