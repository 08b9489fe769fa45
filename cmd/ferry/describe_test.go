package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ferry-oci/ferry/graph"
)

// memSource is a graph.Source of oras-go memory stores, one per repository;
// every manifest is resolvable by its digest, as at a registry.
type memSource struct {
	mu    sync.Mutex
	repos map[string]*memory.Store
	// referrers makes the repositories list referrers, as a registry with
	// the referrers API does.
	referrers bool
}

func (s *memSource) store(repo string) *memory.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repos == nil {
		s.repos = map[string]*memory.Store{}
	}
	st, ok := s.repos[repo]
	if !ok {
		st = memory.New()
		s.repos[repo] = st
	}
	return st
}

func (s *memSource) Repository(_ context.Context, repo string) (oras.ReadOnlyTarget, error) {
	if s.referrers {
		return referringStore{s.store(repo)}, nil
	}
	return s.store(repo), nil
}

// referringStore lists the manifests whose subject is a given manifest.
type referringStore struct{ *memory.Store }

func (r referringStore) Referrers(ctx context.Context, desc ocispec.Descriptor, _ string, fn func([]ocispec.Descriptor) error) error {
	preds, err := r.Predecessors(ctx, desc)
	if err != nil {
		return err
	}
	var out []ocispec.Descriptor
	for _, p := range preds {
		raw, err := content.FetchAll(ctx, r, p)
		if err != nil {
			return err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		if m.Subject != nil && m.Subject.Digest == desc.Digest {
			p.ArtifactType = m.ArtifactType
			out = append(out, p)
		}
	}
	return fn(out)
}

// putReferrer pushes an artifact of artifactType whose subject is subject.
func putReferrer(t *testing.T, st *memory.Store, artifactType string, subject ocispec.Descriptor, payload string) ocispec.Descriptor {
	t.Helper()
	subject.Platform = nil
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       putBlob(t, st, ocispec.MediaTypeEmptyJSON, []byte("{}")),
		Layers:       []ocispec.Descriptor{putBlob(t, st, "application/octet-stream", []byte(payload))},
		Subject:      &subject,
		Annotations:  map[string]string{"org.example.note": payload},
	}
	m.SchemaVersion = 2
	return putManifest(t, st, ocispec.MediaTypeImageManifest, m)
}

func putBlob(t *testing.T, st *memory.Store, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(mediaType, data)
	if ok, _ := st.Exists(context.Background(), desc); !ok {
		if err := st.Push(context.Background(), desc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	return desc
}

func putManifest(t *testing.T, st *memory.Store, mediaType string, v any, tags ...string) ocispec.Descriptor {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	desc := putBlob(t, st, mediaType, data)
	for _, tag := range append([]string{desc.Digest.String()}, tags...) {
		if err := st.Tag(context.Background(), desc, tag); err != nil {
			t.Fatal(err)
		}
	}
	return desc
}

func putImage(t *testing.T, st *memory.Store, labels map[string]string, layers [][]byte, tags ...string) ocispec.Descriptor {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"os": "linux", "architecture": "amd64", "config": map[string]any{"Labels": labels}})
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: putBlob(t, st, ocispec.MediaTypeImageConfig, cfg)}
	m.SchemaVersion = 2
	for _, l := range layers {
		m.Layers = append(m.Layers, putBlob(t, st, ocispec.MediaTypeImageLayerGzip, l))
	}
	return putManifest(t, st, ocispec.MediaTypeImageManifest, m, tags...)
}

// putBundle pushes a bundle whose images.yml lists refs, each with a kbld id.
func putBundle(t *testing.T, st *memory.Store, refs []string, tags ...string) ocispec.Descriptor {
	t.Helper()
	var yml strings.Builder
	yml.WriteString("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n")
	for i, r := range refs {
		fmt.Fprintf(&yml, "- image: %s\n  annotations:\n    kbld.carvel.dev/id: app-%d\n", r, i)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, d := range []string{".imgpkg/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o700}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: ".imgpkg/images.yml", Mode: 0o600, Size: int64(yml.Len())}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, yml.String()); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return putImage(t, st, map[string]string{"dev.carvel.imgpkg.bundle": "true"}, [][]byte{buf.Bytes()}, tags...)
}

// describeWorld is an outer bundle listing image A (signed), a nested
// bundle that lists image B, B again, and an index of two platforms.
type describeWorld struct {
	src                       *memSource
	a, sig, b, inner, idx, o  ocispec.Descriptor
	amd, arm                  ocispec.Descriptor
	d                         *graph.Description
	aRef, innerRef, bRef, ref string
}

func newDescribeWorld(t *testing.T) *describeWorld {
	t.Helper()
	w := &describeWorld{src: &memSource{}}
	w.a = putImage(t, w.src.store("reg.io/app-a"), nil, [][]byte{[]byte("layer of a"), []byte("shared")})
	w.sig = putImage(t, w.src.store("reg.io/app-a"), nil, [][]byte{[]byte("signature of a")}, "sha256-"+w.a.Digest.Encoded()+".sig")
	w.b = putImage(t, w.src.store("reg.io/app-b"), nil, [][]byte{[]byte("layer of b"), []byte("shared")})
	multi := w.src.store("reg.io/multi")
	w.amd = putImage(t, multi, nil, [][]byte{[]byte("amd64")})
	w.amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	w.arm = putImage(t, multi, nil, [][]byte{[]byte("arm64")})
	w.arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{w.amd, w.arm}}
	idx.SchemaVersion = 2
	w.idx = putManifest(t, multi, ocispec.MediaTypeImageIndex, idx)
	w.aRef = "reg.io/app-a@" + w.a.Digest.String()
	w.bRef = "reg.io/app-b@" + w.b.Digest.String()
	w.inner = putBundle(t, w.src.store("reg.io/inner"), []string{w.bRef})
	w.innerRef = "reg.io/inner@" + w.inner.Digest.String()
	// the index is listed at an old location; it is found in the bundle's repository
	putManifest(t, w.src.store("reg.io/outer"), ocispec.MediaTypeImageIndex, idx)
	for _, c := range []ocispec.Descriptor{w.amd, w.arm} {
		copyTo(t, multi, w.src.store("reg.io/outer"), c)
	}
	w.o = putBundle(t, w.src.store("reg.io/outer"), []string{w.aRef, w.innerRef, w.bRef, "old.io/multi@" + w.idx.Digest.String()}, "v1")
	w.ref = "reg.io/outer:v1"
	w.d = describeBundle(t, w.src, w.ref, graph.DiscoverOptions{CosignSignatures: true})
	return w
}

// describeBundle discovers the bundle ref in src with opts and describes it.
func describeBundle(t *testing.T, src *memSource, ref string, opts graph.DiscoverOptions) *graph.Description {
	t.Helper()
	ctx := context.Background()
	g, err := graph.Discover(ctx, src, []graph.RootSpec{{Ref: ref, Kind: graph.RootBundle}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := graph.Describe(ctx, src, g, graph.DescribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// describeTree returns the text output for d.
func describeTree(t *testing.T, d *graph.Description, withLayers bool) string {
	t.Helper()
	var out bytes.Buffer
	if err := writeDescribeTree(&out, d, withLayers); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// copyTo copies an image manifest and its blobs between stores.
func copyTo(t *testing.T, from, to *memory.Store, desc ocispec.Descriptor) {
	t.Helper()
	desc.Platform = nil
	if err := oras.CopyGraph(context.Background(), from, to, desc, oras.CopyGraphOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (w *describeWorld) size(d digest.Digest) string {
	for _, n := range w.d.Graph.Nodes {
		if n.Desc.Digest == d {
			return humanBytes(w.d.Manifest(n).Size)
		}
	}
	for _, n := range w.d.Graph.Nodes {
		if m := w.d.Manifest(n); m.IsIndex() {
			for _, c := range m.Children {
				if c.Desc.Digest == d {
					return humanBytes(c.Size)
				}
			}
		}
	}
	return "?"
}

func (w *describeWorld) total(d digest.Digest) string {
	for _, n := range w.d.Graph.Nodes {
		if n.Desc.Digest == d {
			total, blobs := w.d.Total(n)
			return fmt.Sprintf("total %s in %d blobs", humanBytes(total), blobs)
		}
	}
	return "?"
}

func TestDescribeTree(t *testing.T) {
	w := newDescribeWorld(t)
	out := describeTree(t, w.d, false)
	total, blobs := w.d.GraphTotal()
	sigTag := "sha256-" + w.a.Digest.Encoded() + ".sig"
	want := strings.Join([]string{
		"Bundle SHA: " + w.o.Digest.String(),
		fmt.Sprintf("Total: %s (%d bytes) in %d blobs", humanBytes(total), total, blobs),
		"",
		"bundle reg.io/outer@" + w.o.Digest.String() + "  " + w.size(w.o.Digest) + " (" + w.total(w.o.Digest) + ")",
		"├── image " + w.aRef + "  " + w.size(w.a.Digest),
		"│   └── signature reg.io/app-a@" + w.sig.Digest.String() + " (" + sigTag + ")  " + w.size(w.sig.Digest),
		"├── bundle " + w.innerRef + "  " + w.size(w.inner.Digest) + " (" + w.total(w.inner.Digest) + ")",
		"│   └── image " + w.bRef + "  " + w.size(w.b.Digest),
		"├── image " + w.bRef + "  " + w.size(w.b.Digest) + " (listed above)",
		"└── index reg.io/outer@" + w.idx.Digest.String() + "  " + w.size(w.idx.Digest) + " (origin old.io/multi@" + w.idx.Digest.String() + ")",
		"    ├── linux/amd64 " + w.amd.Digest.String() + "  " + w.size(w.amd.Digest),
		"    └── linux/arm64/v8 " + w.arm.Digest.String() + "  " + w.size(w.arm.Digest),
		"",
	}, "\n")
	if out != want {
		t.Errorf("tree:\n%s\nwant:\n%s", out, want)
	}

	// --layers adds the layers under each image and index child.
	out = describeTree(t, w.d, true)
	for _, line := range []string{
		"│   ├── layer " + digest.FromString("layer of a").String() + "  10 B",
		"│   └── signature reg.io/app-a@",
		"    │   └── layer " + digest.FromString("amd64").String() + "  5 B",
	} {
		if !strings.Contains(out, "\n"+line) {
			t.Errorf("tree with layers lacks %q:\n%s", line, out)
		}
	}
}

func TestDescribeTreeWithoutSignatures(t *testing.T) {
	// A root given by digest, signatures not looked up (--cosign-artifacts=false).
	w := newDescribeWorld(t)
	d := describeBundle(t, w.src, "reg.io/outer@"+w.o.Digest.String(), graph.DiscoverOptions{})
	out := describeTree(t, d, false)
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[3], "bundle reg.io/outer@") || strings.Contains(lines[3], "origin") {
		t.Errorf("root line %q", lines[3])
	}
	if strings.Contains(out, "signature") {
		t.Errorf("signatures shown although not looked up:\n%s", out)
	}
}

func TestDescribeDocument(t *testing.T) {
	w := newDescribeWorld(t)
	doc := describeDocument(w.d, true)
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var got describeDoc
			if format == "yaml" {
				if err := yaml.NewEncoder(&buf).Encode(doc); err != nil {
					t.Fatal(err)
				}
				dec := yaml.NewDecoder(&buf)
				dec.KnownFields(true)
				if err := dec.Decode(&got); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := json.NewEncoder(&buf).Encode(doc); err != nil {
					t.Fatal(err)
				}
				dec := json.NewDecoder(&buf)
				dec.DisallowUnknownFields()
				if err := dec.Decode(&got); err != nil {
					t.Fatal(err)
				}
			}
			checkDescribeDoc(t, w, got)
		})
	}
}

func checkDescribeDoc(t *testing.T, w *describeWorld, doc describeDoc) {
	t.Helper()
	if doc.SHA != w.o.Digest.String() || doc.Image != "reg.io/outer@"+w.o.Digest.String() || doc.Origin != w.ref {
		t.Errorf("root: sha %s image %s origin %s", doc.SHA, doc.Image, doc.Origin)
	}
	total, blobs := w.d.GraphTotal()
	if doc.TotalSize != total || doc.TotalBlobs != blobs || doc.Size <= 0 || len(doc.Layers) != 1 {
		t.Errorf("root sizes: %d %d in %d blobs, %d layers", doc.Size, doc.TotalSize, doc.TotalBlobs, len(doc.Layers))
	}
	if len(doc.Content.Bundles) != 1 || len(doc.Content.Images) != 4 {
		t.Fatalf("content: %d bundles, %d images, want 1 and 4 (A, its signature, B, the index)", len(doc.Content.Bundles), len(doc.Content.Images))
	}
	inner, ok := doc.Content.Bundles[w.inner.Digest.String()]
	if !ok || inner.Origin != w.innerRef || inner.Annotations["kbld.carvel.dev/id"] != "app-1" {
		t.Errorf("nested bundle: %+v", inner)
	}
	if b, ok := inner.Content.Images[w.b.Digest.String()]; !ok || b.ImageType != "Image" || b.Annotations["kbld.carvel.dev/id"] != "app-0" {
		t.Errorf("image of the nested bundle: %+v", inner.Content.Images)
	}
	a := doc.Content.Images[w.a.Digest.String()]
	if a.Image != w.aRef || a.ImageType != "Image" || a.MediaType != ocispec.MediaTypeImageManifest || len(a.Layers) != 2 || a.Annotations["kbld.carvel.dev/id"] != "app-0" {
		t.Errorf("image A: %+v", a)
	}
	sig := doc.Content.Images[w.sig.Digest.String()]
	if sig.ImageType != "Signature" || sig.SignatureOf != w.a.Digest.String() || sig.Tag != "sha256-"+w.a.Digest.Encoded()+".sig" || sig.Origin != "reg.io/app-a:"+sig.Tag {
		t.Errorf("signature: %+v", sig)
	}
	idx := doc.Content.Images[w.idx.Digest.String()]
	if idx.Image != "reg.io/outer@"+w.idx.Digest.String() || idx.Origin != "old.io/multi@"+w.idx.Digest.String() || len(idx.Manifests) != 2 {
		t.Fatalf("index: %+v", idx)
	}
	for i, want := range []struct {
		d        digest.Digest
		platform string
	}{{w.amd.Digest, "linux/amd64"}, {w.arm.Digest, "linux/arm64/v8"}} {
		m := idx.Manifests[i]
		if m.Digest != want.d.String() || m.Platform != want.platform || m.Size <= 0 || len(m.Layers) != 1 {
			t.Errorf("index manifest %d: %+v, want %s %s", i, m, want.d, want.platform)
		}
	}
}

func TestPlatformString(t *testing.T) {
	cases := []struct {
		p    *ocispec.Platform
		want string
	}{
		{nil, ""},
		{&ocispec.Platform{}, ""},
		{&ocispec.Platform{OS: "linux", Architecture: "amd64"}, "linux/amd64"},
		{&ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "linux/arm/v7"},
		{&ocispec.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.1234"}, "windows/amd64:10.0.17763.1234"},
	}
	for _, c := range cases {
		if got := platformString(c.p); got != c.want {
			t.Errorf("platformString(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}

// TestDescribeReferrers shows the OCI 1.1 referrers of an image and of an
// index's child, in the tree and the documents, and counts them in totals.
func TestDescribeReferrers(t *testing.T) {
	src := &memSource{referrers: true}
	st := src.store("reg.io/app")
	a := putImage(t, st, nil, [][]byte{[]byte("layer of a")})
	sbom := putReferrer(t, st, "application/spdx+json", a, "sbom of a")
	child := putImage(t, st, nil, [][]byte{[]byte("amd64")})
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{child}}
	idx.SchemaVersion = 2
	index := putManifest(t, st, ocispec.MediaTypeImageIndex, idx)
	att := putReferrer(t, st, "application/vnd.example.attestation+json", child, "attestation of the child")
	aRef, idxRef := "reg.io/app@"+a.Digest.String(), "reg.io/app@"+index.Digest.String()
	b := putBundle(t, st, []string{aRef, idxRef}, "v1")

	d := describeBundle(t, src, "reg.io/app:v1", graph.DiscoverOptions{Referrers: true})
	out := describeTree(t, d, false)
	size := func(n *graph.Node) string { return humanBytes(d.Manifest(n).Size) }
	root := d.Graph.Roots[0]
	an, in := root.Images[0], root.Images[1]
	if len(an.Referrers) != 1 || len(in.Referrers) != 1 {
		t.Fatalf("referrers found: %d of A, %d of the index", len(an.Referrers), len(in.Referrers))
	}
	tree := lines(out)[3:]
	want := []string{
		"bundle reg.io/app@" + b.Digest.String() + "  " + size(root) + " (total ",
		"├── image " + aRef + "  " + size(an),
		"│   └── referrer reg.io/app@" + sbom.Digest.String() + " (application/spdx+json)  " + size(an.Referrers[0]),
		"└── index " + idxRef + "  " + size(in),
		"    ├── linux/amd64 " + child.Digest.String() + "  ",
		"    └── referrer reg.io/app@" + att.Digest.String() + " (application/vnd.example.attestation+json, of " + child.Digest.String() + ")  " + size(in.Referrers[0]),
	}
	if len(tree) != len(want) {
		t.Fatalf("tree:\n%s", out)
	}
	for i := range want {
		if !strings.HasPrefix(tree[i], want[i]) {
			t.Errorf("line %d:\n got %q\nwant %q", i, tree[i], want[i])
		}
	}

	// A's total holds its referrer: 3 blobs each, nothing shared.
	if total, blobs := d.Total(an); total != d.Manifest(an).Size+d.Manifest(an.Referrers[0]).Size || blobs != 6 {
		t.Errorf("total of A = %d in %d blobs, want %d in 6", total, blobs, d.Manifest(an).Size+d.Manifest(an.Referrers[0]).Size)
	}

	doc := describeDocument(d, false)
	r := doc.Content.Images[sbom.Digest.String()]
	if r.ImageType != "Referrer" || r.ArtifactType != "application/spdx+json" || r.Subject != a.Digest.String() ||
		r.SignatureOf != "" || r.Annotations["org.example.note"] != "sbom of a" || r.Image != "reg.io/app@"+sbom.Digest.String() {
		t.Errorf("referrer of A: %+v", r)
	}
	if r := doc.Content.Images[att.Digest.String()]; r.ImageType != "Referrer" || r.Subject != child.Digest.String() {
		t.Errorf("referrer of the child: %+v", r)
	}
	if len(doc.Content.Images) != 4 {
		t.Errorf("%d images, want A, the index and 2 referrers", len(doc.Content.Images))
	}
}

// TestDescribeTreeNestedIndexLayers: with --layers, every manifest lists
// its layers before its other entries: an index child's, those under an
// index nested in an index, and a referrer's (listed after the index's
// entries).
func TestDescribeTreeNestedIndexLayers(t *testing.T) {
	src := &memSource{referrers: true}
	st := src.store("reg.io/app")
	amd := putImage(t, st, nil, [][]byte{[]byte("amd64"), []byte("amd64 too")})
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm := putImage(t, st, nil, [][]byte{[]byte("arm")})
	innerIdx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{arm}}
	innerIdx.SchemaVersion = 2
	inner := putManifest(t, st, ocispec.MediaTypeImageIndex, innerIdx)
	inner.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm"}
	outerIdx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, inner}}
	outerIdx.SchemaVersion = 2
	index := putManifest(t, st, ocispec.MediaTypeImageIndex, outerIdx)
	att := putReferrer(t, st, "application/vnd.example.attestation+json", amd, "attestation")
	idxRef := "reg.io/app@" + index.Digest.String()
	b := putBundle(t, st, []string{idxRef}, "v1")

	d := describeBundle(t, src, "reg.io/app:v1", graph.DiscoverOptions{Referrers: true})
	root := d.Graph.Roots[0]
	in := root.Images[0]
	if len(in.Referrers) != 1 || len(d.Manifest(in).Children) != 2 || len(d.Manifest(root).Layers) != 1 {
		t.Fatalf("graph: %d referrers of the index, %d index entries, %d bundle layers", len(in.Referrers), len(d.Manifest(in).Children), len(d.Manifest(root).Layers))
	}
	entries := d.Manifest(in).Children
	layer := func(content string) string {
		return "layer " + digest.FromString(content).String() + "  " + humanBytes(int64(len(content)))
	}
	total, blobs := d.Total(root)
	bundleLayer := d.Manifest(root).Layers[0]
	want := []string{
		"bundle reg.io/app@" + b.Digest.String() + "  " + humanBytes(d.Manifest(root).Size) + fmt.Sprintf(" (total %s in %d blobs)", humanBytes(total), blobs),
		"├── layer " + bundleLayer.Digest.String() + "  " + humanBytes(bundleLayer.Size),
		"└── index " + idxRef + "  " + humanBytes(d.Manifest(in).Size),
		"    ├── linux/amd64 " + amd.Digest.String() + "  " + humanBytes(entries[0].Size),
		"    │   ├── " + layer("amd64"),
		"    │   └── " + layer("amd64 too"),
		"    ├── index linux/arm " + inner.Digest.String() + "  " + humanBytes(entries[1].Size),
		"    │   └── manifest " + arm.Digest.String() + "  " + humanBytes(entries[1].Children[0].Size),
		"    │       └── " + layer("arm"),
		"    └── referrer reg.io/app@" + att.Digest.String() + " (application/vnd.example.attestation+json, of " + amd.Digest.String() + ")  " + humanBytes(d.Manifest(in.Referrers[0]).Size),
		"        └── " + layer("attestation"),
	}
	if got := lines(describeTree(t, d, true))[3:]; !slices.Equal(got, want) {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// lines splits output into lines without the final newline.
func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
