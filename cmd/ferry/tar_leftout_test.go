package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/ocilayout"
)

// sparseFixture is the layout fixture with its index's arm64 image left
// out of the blobs, as copy --platform linux/amd64 writes it.
func sparseFixture(t *testing.T) (fx *layoutFixture, arm ocispec.Descriptor, blobs []ocispec.Descriptor) {
	t.Helper()
	fx = newLayoutFixture(t)
	var idx ocispec.Index
	if err := json.Unmarshal(fx.data[fx.multi.Digest], &idx); err != nil {
		t.Fatal(err)
	}
	arm = idx.Manifests[1]
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	var m ocispec.Manifest
	if err := json.Unmarshal(fx.data[arm.Digest], &m); err != nil {
		t.Fatal(err)
	}
	gone := map[digest.Digest]bool{arm.Digest: true, m.Config.Digest: true, m.Layers[0].Digest: true}
	blobs = slices.DeleteFunc(slices.Clone(fx.blobs), func(d ocispec.Descriptor) bool { return gone[d.Digest] })
	return fx, arm, blobs
}

// TestTarLeftOutChildren checks that inspect and verify tell index
// children left out by a platform filter apart from non-distributable
// layers, whether the file records them in dev.ferry-oci.left-out-children
// or (written by the first --platform version) among the skipped layers.
func TestTarLeftOutChildren(t *testing.T) {
	fx, arm, blobs := sparseFixture(t)
	multiRef := "reg.example/team/multi@" + fx.multi.Digest.String()
	cases := []struct {
		name        string
		record      func(r *ocilayout.Root)
		wantParents []digest.Digest
	}{
		{"left-out-children annotation", func(r *ocilayout.Root) {
			r.LeftOutChildren = []ocilayout.LeftOutChild{{Parent: fx.multi.Digest, Desc: arm}}
		}, []digest.Digest{fx.multi.Digest}},
		{"earlier form: among the skipped layers", func(r *ocilayout.Root) {
			r.SkippedLayers = []ocispec.Descriptor{arm}
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			roots := slices.Clone(fx.roots)
			tc.record(&roots[2])
			idx, err := ocilayout.NewIndex(roots)
			if err != nil {
				t.Fatal(err)
			}
			path := fx.writeTar(t, idx, blobs)

			code, out, errOut := run(t, "tar", "verify", path)
			want := "(1 non-distributable layers left out, as recorded; 1 index children left out by a platform filter, as recorded)"
			if code != 0 || errOut != "" || !strings.Contains(out, want) {
				t.Errorf("verify: exit %d, stderr %q, stdout %q; want %q", code, errOut, out, want)
			}

			code, out, errOut = run(t, "tar", "inspect", path)
			if code != 0 || errOut != "" {
				t.Fatalf("inspect: exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "Non-distributable layers left out (1;") {
				t.Errorf("inspect does not list one non-distributable layer:\n%s", out)
			}
			if !strings.Contains(out, "\nIndex children left out (platform filter): 1;") {
				t.Errorf("inspect has no section for index children left out:\n%s", out)
			}
			line, ok := lineWith(out, arm.Digest.String())
			if f := strings.Fields(line); !ok || len(f) < 4 || f[1] != "linux/arm64/v8" || f[2] != arm.MediaType ||
				!strings.Contains(line, "  "+humanBytes(arm.Size)+"  ") || !strings.HasSuffix(line, multiRef) {
				t.Errorf("line %q, want %s linux/arm64/v8 %s %s %s", line, arm.Digest, arm.MediaType, humanBytes(arm.Size), multiRef)
			}
			if n := strings.Count(out, arm.Digest.String()); n != 1 {
				t.Errorf("%s named %d times, want once (not as a non-distributable layer):\n%s", arm.Digest, n, out)
			}

			code, out, errOut = run(t, "tar", "inspect", "--json", path)
			if code != 0 || errOut != "" {
				t.Fatalf("inspect --json: exit %d, stderr %q", code, errOut)
			}
			var rep struct {
				SkippedLayers   []skippedReport `json:"skippedLayers"`
				LeftOutChildren []leftOutReport `json:"leftOutChildren"`
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.SkippedLayers) != 1 || rep.SkippedLayers[0].Digest != fx.foreign.Digest {
				t.Errorf("skippedLayers %+v, want only %s", rep.SkippedLayers, fx.foreign.Digest)
			}
			wantChild := leftOutReport{Digest: arm.Digest, MediaType: arm.MediaType, Size: arm.Size, Platform: "linux/arm64/v8",
				Parents: tc.wantParents, Roots: []string{multiRef}}
			if len(rep.LeftOutChildren) != 1 || !reflect.DeepEqual(rep.LeftOutChildren[0], wantChild) {
				t.Errorf("leftOutChildren %+v, want %+v", rep.LeftOutChildren, wantChild)
			}
		})
	}

	t.Run("not recorded", func(t *testing.T) {
		path := fx.writeTar(t, fx.index(t), blobs)
		code, _, errOut := run(t, "tar", "verify", path)
		if _, ok := lineWith(errOut, "tar verify | ", arm.Digest.String(), "missing"); code != 1 || !ok {
			t.Errorf("verify: exit %d, stderr %q; want %s missing", code, errOut, arm.Digest)
		}
	})
}

// TestLayoutLeftOutRoundTrip checks that the children of an index kept
// sparse are recorded on its root with the index listing each, and read
// back as the children a copy from the layout must not look for.
func TestLayoutLeftOutRoundTrip(t *testing.T) {
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("idx"), Size: 100}
	rewritten := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("rw"), Size: 90}
	nested := digest.FromString("nested")
	arm := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("arm"), Size: 7,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}, Annotations: map[string]string{"x": "y"}}
	s390 := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s390"), Size: 8,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}}
	layer := ocispec.Descriptor{MediaType: mtDockerForeign, Digest: digest.FromString("l"), Size: 3}
	sparse := &graph.Node{Desc: idx, Ref: "reg/multi@" + idx.Digest.String(), Index: true,
		LeftOut: []graph.LeftOutChild{{Parent: idx.Digest, Desc: arm}, {Parent: nested, Desc: s390}}}
	rw := &graph.Node{Desc: rewritten, Ref: "reg/other@" + rewritten.Digest.String(), Index: true,
		LeftOut: []graph.LeftOutChild{{Parent: rewritten.Digest, Desc: s390}}, Rewrite: &graph.IndexRewrite{}}
	g := &graph.Graph{Nodes: []*graph.Node{sparse, rw}}
	gathered := &graph.Gathered{
		Skipped: map[digest.Digest][]ocispec.Descriptor{idx.Digest: {layer}},
		LeftOut: map[digest.Digest][]ocispec.Descriptor{idx.Digest: {arm, s390}},
	}
	index, err := ocilayout.NewIndex(layoutRoots(g, withLeftOut(gathered)))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := ocilayout.RootsOf(index)
	if err != nil || len(roots) != 2 {
		t.Fatalf("roots %+v, %v; want two", roots, err)
	}
	armPlain := arm
	armPlain.Annotations = nil
	want := []ocilayout.LeftOutChild{{Parent: idx.Digest, Desc: armPlain}, {Parent: nested, Desc: s390}}
	if !reflect.DeepEqual(roots[0].LeftOutChildren, want) {
		t.Errorf("left-out children %+v, want %+v", roots[0].LeftOutChildren, want)
	}
	if len(roots[0].SkippedLayers) != 1 || roots[0].SkippedLayers[0].Digest != layer.Digest {
		t.Errorf("skipped layers %+v, want only %s", roots[0].SkippedLayers, layer.Digest)
	}
	if len(roots[1].LeftOutChildren) != 0 {
		t.Errorf("the rewritten index records %+v left out, want none", roots[1].LeftOutChildren)
	}
	got := layoutLeftOut(roots)
	if len(got) != 2 || got[0].Digest != arm.Digest || got[1].Digest != s390.Digest || got[0].Platform.Architecture != "arm64" {
		t.Errorf("layoutLeftOut %+v, want arm and s390x", got)
	}
}
