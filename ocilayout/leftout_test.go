package ocilayout

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestLeftOutChildrenAnnotation writes index children left out by a
// platform filter into their own annotation and reads them back; the
// form written before the annotation existed (manifests among the skipped
// layers) is read into LeftOutChildren too.
func TestLeftOutChildrenAnnotation(t *testing.T) {
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("idx"), Size: 10}
	nested := digest.FromString("nested")
	arm := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("arm"), Size: 500,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
	ppc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("ppc"), Size: 300,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "ppc64le"}}
	foreign := ocispec.Descriptor{MediaType: mtDockerForeign, Digest: digest.FromString("l"), Size: 5, URLs: []string{"https://x"}}
	children := []LeftOutChild{{Parent: idx.Digest, Desc: arm}, {Parent: nested, Desc: ppc}}

	cases := []struct {
		name        string
		ann         map[string]string
		wantSkipped []ocispec.Descriptor
		wantLeftOut []LeftOutChild
	}{
		{
			name: "left-out-children",
			ann: map[string]string{
				AnnotationFerryLeftOutChildren: string(mustJSON(t, children)),
				AnnotationFerrySkippedLayers:   string(mustJSON(t, []ocispec.Descriptor{foreign})),
			},
			wantSkipped: []ocispec.Descriptor{foreign},
			wantLeftOut: children,
		},
		{
			name: "manifests among skipped layers (earlier form)",
			ann: map[string]string{
				AnnotationFerrySkippedLayers: string(mustJSON(t, []ocispec.Descriptor{foreign, arm, ppc})),
			},
			wantSkipped: []ocispec.Descriptor{foreign},
			wantLeftOut: []LeftOutChild{{Desc: arm}, {Desc: ppc}},
		},
		{
			name: "only manifests among skipped layers",
			ann: map[string]string{
				AnnotationFerrySkippedLayers: string(mustJSON(t, []ocispec.Descriptor{arm})),
			},
			wantLeftOut: []LeftOutChild{{Desc: arm}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := idx
			d.Annotations = tc.ann
			r, err := RootFromDescriptor(d)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.SkippedLayers, tc.wantSkipped) {
				t.Errorf("skipped layers %+v, want %+v", r.SkippedLayers, tc.wantSkipped)
			}
			if !reflect.DeepEqual(r.LeftOutChildren, tc.wantLeftOut) {
				t.Errorf("left-out children %+v, want %+v", r.LeftOutChildren, tc.wantLeftOut)
			}
		})
	}

	t.Run("written by Descriptor", func(t *testing.T) {
		root := Root{Desc: idx, OriginalRef: "reg/multi@" + idx.Digest.String(), SkippedLayers: []ocispec.Descriptor{foreign}, LeftOutChildren: children}
		got, err := root.Descriptor()
		if err != nil {
			t.Fatal(err)
		}
		var raw []map[string]json.RawMessage
		if err := json.Unmarshal([]byte(got.Annotations[AnnotationFerryLeftOutChildren]), &raw); err != nil || len(raw) != 2 {
			t.Fatalf("annotation %q: %v", got.Annotations[AnnotationFerryLeftOutChildren], err)
		}
		if string(raw[0]["parent"]) != `"`+idx.Digest.String()+`"` {
			t.Errorf("first entry's parent %s, want %s", raw[0]["parent"], idx.Digest)
		}
		var desc ocispec.Descriptor
		if err := json.Unmarshal(raw[0]["descriptor"], &desc); err != nil || !reflect.DeepEqual(desc, arm) {
			t.Errorf("first entry's descriptor %s (%v), want %+v", raw[0]["descriptor"], err, arm)
		}
		if s := got.Annotations[AnnotationFerrySkippedLayers]; s != string(mustJSON(t, []ocispec.Descriptor{foreign})) {
			t.Errorf("skipped layers annotation %s, want only the foreign layer", s)
		}
		back, err := RootFromDescriptor(got)
		if err != nil {
			t.Fatal(err)
		}
		want := root
		want.Desc = got
		if !reflect.DeepEqual(back, want) {
			t.Errorf("round trip\n%+v\nwant\n%+v", back, want)
		}
	})
}

func TestLeftOutChildrenMalformed(t *testing.T) {
	for _, s := range []string{
		`{}`,
		`[{"descriptor":{"digest":"sha256:nothex","size":1}}]`,
		`[{"parent":"md5:x","descriptor":{"digest":"` + digest.FromString("a").String() + `","size":1}}]`,
	} {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("idx"), Size: 10,
			Annotations: map[string]string{AnnotationFerryLeftOutChildren: s}}
		if _, err := RootFromDescriptor(d); !errors.Is(err, ErrMalformedIndex) {
			t.Errorf("%s: err %v, want ErrMalformedIndex", s, err)
		}
	}
}

func TestNewIndexMergesLeftOutChildren(t *testing.T) {
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("idx"), Size: 10}
	a := LeftOutChild{Parent: idx.Digest, Desc: ocispec.Descriptor{Digest: digest.FromString("a"), Size: 1}}
	b := LeftOutChild{Parent: idx.Digest, Desc: ocispec.Descriptor{Digest: digest.FromString("b"), Size: 1}}
	bNested := LeftOutChild{Parent: digest.FromString("nested"), Desc: b.Desc}
	index, err := NewIndex([]Root{
		{Desc: idx, LeftOutChildren: []LeftOutChild{a, b}},
		{Desc: idx, LeftOutChildren: []LeftOutChild{b, bNested}},
	})
	if err != nil {
		t.Fatal(err)
	}
	roots, err := RootsOf(index)
	if err != nil || len(roots) != 1 {
		t.Fatalf("roots %+v, %v; want one", roots, err)
	}
	if want := []LeftOutChild{a, b, bNested}; !reflect.DeepEqual(roots[0].LeftOutChildren, want) {
		t.Errorf("left-out children %+v, want %+v", roots[0].LeftOutChildren, want)
	}
}

// TestVerifyAcceptsLeftOutChildren writes the fixture's index without its
// arm image: Verify accepts the absence when the child is recorded (in
// either form) and reports it missing otherwise.
func TestVerifyAcceptsLeftOutChildren(t *testing.T) {
	fx := newFixture(t)
	var multi ocispec.Index
	if err := json.Unmarshal(fx.data[fx.multi.Digest], &multi); err != nil {
		t.Fatal(err)
	}
	arm := multi.Manifests[1]
	var m ocispec.Manifest
	if err := json.Unmarshal(fx.data[arm.Digest], &m); err != nil {
		t.Fatal(err)
	}
	gone := map[digest.Digest]bool{arm.Digest: true, m.Config.Digest: true, m.Layers[0].Digest: true}
	blobs := slices.DeleteFunc(slices.Clone(fx.blobs), func(d ocispec.Descriptor) bool { return gone[d.Digest] })

	cases := []struct {
		name    string
		record  func(r *Root)
		missing bool
	}{
		{"recorded", func(r *Root) { r.LeftOutChildren = []LeftOutChild{{Parent: fx.multi.Digest, Desc: arm}} }, false},
		{"recorded as a skipped layer (earlier form)", func(r *Root) { r.SkippedLayers = []ocispec.Descriptor{arm} }, false},
		{"not recorded", func(*Root) {}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			roots := slices.Clone(fx.roots)
			tc.record(&roots[2])
			index, err := NewIndex(roots)
			if err != nil {
				t.Fatal(err)
			}
			p := t.TempDir() + "/layout.tar"
			if _, err := WriteTar(context.Background(), p, blobs, index, streamOpener(fx.data), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			tr, err := OpenTar(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if got := tr.Roots()[2].LeftOutChildren; !tc.missing && (len(got) != 1 || got[0].Desc.Digest != arm.Digest) {
				t.Errorf("left-out children read back %+v, want %s", got, arm.Digest)
			}
			problems, err := tr.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.missing && len(problems) != 0 {
				t.Errorf("problems %v, want none", problems)
			}
			if tc.missing && (len(problems) != 1 || problems[0].Digest != arm.Digest || !errors.Is(problems[0].Err, ErrMissingBlob)) {
				t.Errorf("problems %v, want %s missing", problems, arm.Digest)
			}
		})
	}
}
