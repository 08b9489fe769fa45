package inspect_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// describeDoc is the part of `ferry describe -o yaml|json` these tests read:
// imgpkg's shape plus ferry's sizes and index manifests.
type (
	describeDoc struct {
		SHA       string `yaml:"sha" json:"sha"`
		bundleDoc `yaml:",inline"`
	}
	bundleDoc struct {
		Image       string            `yaml:"image" json:"image"`
		Origin      string            `yaml:"origin" json:"origin"`
		Annotations map[string]string `yaml:"annotations" json:"annotations"`
		Size        int64             `yaml:"size" json:"size"`
		TotalSize   int64             `yaml:"totalSize" json:"totalSize"`
		TotalBlobs  int               `yaml:"totalBlobs" json:"totalBlobs"`
		Layers      []layerDoc        `yaml:"layers" json:"layers"`
		Content     struct {
			Bundles map[string]bundleDoc `yaml:"bundles" json:"bundles"`
			Images  map[string]imageDoc  `yaml:"images" json:"images"`
		} `yaml:"content" json:"content"`
	}
	imageDoc struct {
		Image       string            `yaml:"image" json:"image"`
		Origin      string            `yaml:"origin" json:"origin"`
		Annotations map[string]string `yaml:"annotations" json:"annotations"`
		ImageType   string            `yaml:"imageType" json:"imageType"`
		MediaType   string            `yaml:"mediaType" json:"mediaType"`
		Size        int64             `yaml:"size" json:"size"`
		Tag         string            `yaml:"tag" json:"tag"`
		SignatureOf string            `yaml:"signatureOf" json:"signatureOf"`
		Layers      []layerDoc        `yaml:"layers" json:"layers"`
		Manifests   []struct {
			Digest   string     `yaml:"digest" json:"digest"`
			Platform string     `yaml:"platform" json:"platform"`
			Size     int64      `yaml:"size" json:"size"`
			Layers   []layerDoc `yaml:"layers" json:"layers"`
		} `yaml:"manifests" json:"manifests"`
	}
	layerDoc struct {
		Digest string `yaml:"digest" json:"digest"`
		Size   int64  `yaml:"size" json:"size"`
	}
)

// TestDescribeTree checks the text output: imgpkg's "Bundle SHA" line, then
// the tree of the bundle with its signature, image A with its signature and
// attestation, the nested bundle with image B, and the index with the
// platform of each child.
func TestDescribeTree(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	f := pushFixture(ctx, t, reg)

	res := harness.RunOK(t, nil, "describe", "-b", f.outerRepo+":v1")
	if res.Stderr != "" {
		t.Errorf("stderr %q, want nothing", res.Stderr)
	}
	got := lines(res.Stdout)
	if len(got) < 3 || got[0] != "Bundle SHA: "+f.outer.Digest.String() || !strings.HasPrefix(got[1], "Total: ") || got[2] != "" {
		t.Fatalf("header:\n%s", res.Stdout)
	}
	// Each tree line starts with its branch, kind and location.
	wantPrefixes := []string{
		"bundle " + harness.DigestRef(f.outerRepo, f.outer.Digest) + "  ",
		"├── signature " + harness.DigestRef(f.outerRepo, f.outerSig.Digest) + " (" + cosignTag(f.outer.Digest, "sig") + ")  ",
		"├── image " + f.aRef + "  ",
		"│   ├── signature " + harness.DigestRef(f.aRepo, f.aSig.Digest) + " (" + cosignTag(f.a.Digest, "sig") + ")  ",
		"│   └── attestation " + harness.DigestRef(f.aRepo, f.aAtt.Digest) + " (" + cosignTag(f.a.Digest, "att") + ")  ",
		"├── bundle " + f.innerRef + "  ",
		"│   └── image " + f.bRef + "  ",
		"└── index " + f.idxRef + "  ",
		"    ├── linux/amd64 " + f.children[0].Digest.String() + "  ",
		"    └── linux/arm64 " + f.children[1].Digest.String() + "  ",
	}
	tree := got[3:]
	if len(tree) != len(wantPrefixes) {
		t.Fatalf("tree has %d lines, want %d:\n%s", len(tree), len(wantPrefixes), res.Stdout)
	}
	for i, w := range wantPrefixes {
		if !strings.HasPrefix(tree[i], w) {
			t.Errorf("line %d:\n got %q\nwant prefix %q", i, tree[i], w)
		}
	}
	if !strings.Contains(tree[0], "(total ") || !strings.Contains(tree[5], "(total ") {
		t.Errorf("bundles carry no total:\n%s", res.Stdout)
	}

	// Without cosign artifacts: the same tree minus the three signature lines.
	res = harness.RunOK(t, nil, "describe", "-b", f.outerRepo+":v1", "--cosign-artifacts=false")
	if n := len(lines(res.Stdout)); n != len(got)-3 || strings.Contains(res.Stdout, "signature") || strings.Contains(res.Stdout, "attestation") {
		t.Errorf("--cosign-artifacts=false:\n%s", res.Stdout)
	}

	// --layers lists the layers of image A under it.
	res = harness.RunOK(t, nil, "describe", "-b", harness.DigestRef(f.outerRepo, f.outer.Digest), "--layers")
	_, raw := f.reg.Builder(0).FetchManifest(ctx, t, f.aRepo, f.a.Digest.String())
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		// A's signatures follow its layers, so no layer is the last branch
		if !strings.Contains(res.Stdout, "\n│   ├── layer "+l.Digest+"  ") {
			t.Errorf("--layers: no line for layer %s of A:\n%s", l.Digest, res.Stdout)
		}
	}
}

// TestDescribeYAMLAndJSON checks the machine outputs against the registry:
// digests, nesting, annotations, signatures, platforms and sizes.
func TestDescribeYAMLAndJSON(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	f := pushFixture(ctx, t, reg)

	// The whole graph, each blob once: what the totals must say.
	all := map[digest.Digest]int64{}
	for _, n := range []struct {
		repo string
		d    digest.Digest
	}{
		{f.outerRepo, f.outer.Digest}, {f.outerRepo, f.outerSig.Digest}, {f.aRepo, f.a.Digest}, {f.aRepo, f.aSig.Digest},
		{f.aRepo, f.aAtt.Digest}, {f.innerRepo, f.inner.Digest}, {f.bRepo, f.b.Digest}, {f.idxRepo, f.idx.Digest},
	} {
		blobsOf(ctx, t, repository(t, reg, n.repo), n.d, all)
	}
	inner := map[digest.Digest]int64{}
	blobsOf(ctx, t, repository(t, reg, f.innerRepo), f.inner.Digest, inner)
	blobsOf(ctx, t, repository(t, reg, f.bRepo), f.b.Digest, inner)

	res := harness.RunOK(t, nil, "describe", "-b", f.outerRepo+":v1", "-o", "yaml", "--layers")
	var fromYAML describeDoc
	if err := yaml.NewDecoder(strings.NewReader(res.Stdout)).Decode(&fromYAML); err != nil {
		t.Fatalf("yaml: %v\n%s", err, res.Stdout)
	}
	res = harness.RunOK(t, nil, "describe", "-b", f.outerRepo+":v1", "--output-type", "json", "--layers")
	var fromJSON describeDoc
	if err := json.NewDecoder(bytes.NewReader([]byte(res.Stdout))).Decode(&fromJSON); err != nil {
		t.Fatalf("json: %v\n%s", err, res.Stdout)
	}

	for name, doc := range map[string]describeDoc{"yaml": fromYAML, "json": fromJSON} {
		t.Run(name, func(t *testing.T) {
			if doc.SHA != f.outer.Digest.String() || doc.Image != harness.DigestRef(f.outerRepo, f.outer.Digest) || doc.Origin != f.outerRepo+":v1" {
				t.Errorf("root: sha %s image %s origin %s", doc.SHA, doc.Image, doc.Origin)
			}
			if doc.Size != sizeOf(ctx, t, reg, f.outerRepo, f.outer.Digest) || len(doc.Layers) != 1 {
				t.Errorf("root size %d with %d layers", doc.Size, len(doc.Layers))
			}
			if doc.TotalSize != sum(all) || doc.TotalBlobs != len(all) {
				t.Errorf("total %d bytes in %d blobs, want %d in %d", doc.TotalSize, doc.TotalBlobs, sum(all), len(all))
			}

			// the nested bundle, keyed by digest, with its image B
			nested, ok := doc.Content.Bundles[f.inner.Digest.String()]
			if !ok || len(doc.Content.Bundles) != 1 {
				t.Fatalf("bundles: %v", doc.Content.Bundles)
			}
			if nested.Image != f.innerRef || nested.Origin != f.innerRef || nested.Annotations[harness.KbldIDAnnotation] != "fixture/image-1" {
				t.Errorf("nested bundle: %+v", nested)
			}
			if nested.TotalSize != sum(inner) || nested.TotalBlobs != len(inner) {
				t.Errorf("nested total %d in %d blobs, want %d in %d", nested.TotalSize, nested.TotalBlobs, sum(inner), len(inner))
			}
			b, ok := nested.Content.Images[f.b.Digest.String()]
			if !ok || b.Image != f.bRef || b.ImageType != "Image" || b.MediaType != harness.MediaTypeDockerManifest || b.Size != sizeOf(ctx, t, reg, f.bRepo, f.b.Digest) {
				t.Errorf("image B: %+v", nested.Content.Images)
			}

			// A, the index and three signatures (the bundle's, A's .sig and .att)
			imgs := doc.Content.Images
			if len(imgs) != 5 {
				t.Errorf("images: %d entries, want 5", len(imgs))
			}
			a := imgs[f.a.Digest.String()]
			if a.Image != f.aRef || a.ImageType != "Image" || a.Annotations[harness.KbldIDAnnotation] != "fixture/image-0" ||
				a.Size != sizeOf(ctx, t, reg, f.aRepo, f.a.Digest) || len(a.Layers) != 2 {
				t.Errorf("image A: %+v", a)
			}
			for _, s := range []struct {
				d       digest.Digest
				subject digest.Digest
				repo    string
				suffix  string
			}{
				{f.outerSig.Digest, f.outer.Digest, f.outerRepo, "sig"},
				{f.aSig.Digest, f.a.Digest, f.aRepo, "sig"},
				{f.aAtt.Digest, f.a.Digest, f.aRepo, "att"},
			} {
				sig := imgs[s.d.String()]
				tag := cosignTag(s.subject, s.suffix)
				if sig.ImageType != "Signature" || sig.SignatureOf != s.subject.String() || sig.Tag != tag ||
					sig.Image != harness.DigestRef(s.repo, s.d) || sig.Origin != s.repo+":"+tag || sig.Size != sizeOf(ctx, t, reg, s.repo, s.d) {
					t.Errorf("signature %s of %s: %+v", s.suffix, s.subject, sig)
				}
			}
			idx := imgs[f.idx.Digest.String()]
			if idx.Image != f.idxRef || idx.ImageType != "Image" || idx.Size != sizeOf(ctx, t, reg, f.idxRepo, f.idx.Digest) || len(idx.Manifests) != 2 {
				t.Fatalf("index: %+v", idx)
			}
			for i, want := range []string{"linux/amd64", "linux/arm64"} {
				c := idx.Manifests[i]
				if c.Digest != f.children[i].Digest.String() || c.Platform != want || len(c.Layers) != 1 ||
					c.Size != sizeOf(ctx, t, reg, f.idxRepo, f.children[i].Digest) {
					t.Errorf("index child %d: %+v, want %s %s", i, c, f.children[i].Digest, want)
				}
			}
		})
	}
}

// TestDescribeErrors: an image is not a bundle, a missing tag names the
// reference, and an unknown output type is refused.
func TestDescribeErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	f := pushFixture(ctx, t, reg)

	wantFailure(t, harness.Run(t, nil, "describe", "-b", f.aRef), "only bundles can be described", f.aRef, "not a bundle")
	wantFailure(t, harness.Run(t, nil, "describe", "-b", f.idxRef), "only bundles can be described", "not a bundle")
	wantFailure(t, harness.Run(t, nil, "describe", "-b", f.outerRepo+":nope"), f.outerRepo+":nope", "not found")
	wantFailure(t, harness.Run(t, nil, "describe", "-b", f.outerRepo+":v1", "-o", "table"), "--output-type can only have the following values")
}
