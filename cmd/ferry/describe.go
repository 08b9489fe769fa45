package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ferry-oci/ferry/graph"
)

// describeOutputTypes returns the values of describe --output-type.
func describeOutputTypes() []string { return []string{"text", "yaml", "json"} }

type describeOptions struct {
	bundleRef   string
	outputType  string
	layers      bool
	cosign      bool
	referrers   bool
	concurrency int
	registry    registryFlags
	store       storeFlags
}

func newDescribeCmd(s streams) *cobra.Command {
	var o describeOptions
	cmd := &cobra.Command{
		Use:   "describe -b REF",
		Short: "Describe the images and bundles associated with a given bundle",
		Long: `Describe a bundle: the tree of its nested bundles, images and image indexes
(with the platform of each child), the cosign signatures, attestations and
SBOMs found by their sha256-<hex>.sig/.att/.sbom tags, the OCI 1.1 referrers
of every manifest, and the size of each.

Sizes are the bytes of a manifest and everything it references (config,
layers, index children), as declared by the manifests; a total counts each
blob once, so it is what a copy of the bundle holds.

The text output is a tree. The yaml and json outputs follow the shape of
'imgpkg describe -o yaml' (sha, image, origin, annotations, and content with
bundles and images by digest, signatures as imageType Signature) and add the
media type, the size, for an index its manifests, and the referrers
(imageType Referrer, with artifactType and subject).`,
		Example: `  ferry describe -b registry.corp.com/apps/simple-app-bundle:v1.0.0
  ferry describe -b registry.corp.com/apps/simple-app-bundle:v1.0.0 -o yaml --layers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDescribe(cmd, s, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.bundleRef, "bundle", "b", "", "Set bundle reference (example: docker.io/dkalinin/app1-bundle)")
	f.StringVarP(&o.outputType, "output-type", "o", "text", "Type of output possible values: [text, yaml, json]")
	f.BoolVar(&o.layers, "layers", false, "Retrieve image layers info")
	f.BoolVar(&o.cosign, "cosign-artifacts", true, "Retrieve cosign artifact information (sha256-<hex>.sig, .att and .sbom tags)")
	f.BoolVar(&o.referrers, "referrers", true, "Retrieve the OCI 1.1 referrers of every manifest (the referrers API, else the sha256-<hex> tag schema)")
	f.IntVar(&o.concurrency, "concurrency", 5, "Concurrency")
	o.registry.bind(f)
	o.store.bind(f, true)
	_ = cmd.RegisterFlagCompletionFunc("output-type", cobra.FixedCompletions(describeOutputTypes(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runDescribe(cmd *cobra.Command, s streams, o *describeOptions) error {
	ctx := cmd.Context()
	if o.bundleRef == "" {
		return errors.New("expected --bundle (-b)")
	}
	if !slices.Contains(describeOutputTypes(), o.outputType) {
		return fmt.Errorf("--output-type can only have the following values: [%s]", strings.Join(describeOutputTypes(), ", "))
	}
	client, err := o.registry.client()
	if err != nil {
		return err
	}
	st, err := o.store.open(cmd)
	if err != nil {
		return err
	}
	src := registrySource{client: client, store: st}
	describeErr := func(err error) error {
		if parsed, perr := client.ParseReference(o.bundleRef); perr == nil {
			return client.DescribeError(err, parsed)
		}
		return err
	}
	g, err := graph.Discover(ctx, src, []graph.RootSpec{{Ref: o.bundleRef, Kind: graph.RootBundle}}, graph.DiscoverOptions{
		CosignSignatures: o.cosign,
		Referrers:        o.referrers,
		Concurrency:      o.concurrency,
	})
	if errors.Is(err, graph.ErrNotBundle) {
		// Discover's hint (use -i) is for copy; describe has no -i.
		return fmt.Errorf("only bundles can be described, and %s is %w (for an image, 'ferry tag resolve -i' gives its digest)", o.bundleRef, graph.ErrNotBundle)
	}
	if err != nil {
		return describeErr(err)
	}
	d, err := graph.Describe(ctx, src, g, graph.DescribeOptions{Concurrency: o.concurrency})
	if err != nil {
		return describeErr(err)
	}
	switch o.outputType {
	case "yaml":
		enc := yaml.NewEncoder(s.Out)
		enc.SetIndent(2)
		if err := enc.Encode(describeDocument(d, o.layers)); err != nil {
			return err
		}
		return enc.Close()
	case "json":
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(describeDocument(d, o.layers))
	default:
		return writeDescribeTree(s.Out, d, o.layers)
	}
}

// The yaml and json documents: imgpkg's describe shape (Description,
// Content, ImageInfo) with ferry's additions (mediaType, size, totals,
// index manifests, signature tags).
type (
	bundleDoc struct {
		Image       string            `json:"image" yaml:"image"`
		Origin      string            `json:"origin" yaml:"origin"`
		Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
		MediaType   string            `json:"mediaType" yaml:"mediaType"`
		Size        int64             `json:"size" yaml:"size"`
		TotalSize   int64             `json:"totalSize" yaml:"totalSize"`
		TotalBlobs  int               `json:"totalBlobs" yaml:"totalBlobs"`
		Content     contentDoc        `json:"content" yaml:"content"`
		Layers      []layerDoc        `json:"layers,omitempty" yaml:"layers,omitempty"`
	}
	contentDoc struct {
		Bundles map[string]bundleDoc `json:"bundles,omitempty" yaml:"bundles,omitempty"`
		Images  map[string]imageDoc  `json:"images,omitempty" yaml:"images,omitempty"`
	}
	imageDoc struct {
		Image        string            `json:"image" yaml:"image"`
		Origin       string            `json:"origin" yaml:"origin"`
		Annotations  map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
		ImageType    string            `json:"imageType" yaml:"imageType"`
		MediaType    string            `json:"mediaType" yaml:"mediaType"`
		Size         int64             `json:"size" yaml:"size"`
		Tag          string            `json:"tag,omitempty" yaml:"tag,omitempty"`
		SignatureOf  string            `json:"signatureOf,omitempty" yaml:"signatureOf,omitempty"`
		ArtifactType string            `json:"artifactType,omitempty" yaml:"artifactType,omitempty"`
		Subject      string            `json:"subject,omitempty" yaml:"subject,omitempty"`
		Layers       []layerDoc        `json:"layers,omitempty" yaml:"layers,omitempty"`
		Manifests    []manifestDoc     `json:"manifests,omitempty" yaml:"manifests,omitempty"`
	}
	manifestDoc struct {
		Digest    string        `json:"digest" yaml:"digest"`
		MediaType string        `json:"mediaType" yaml:"mediaType"`
		Platform  string        `json:"platform,omitempty" yaml:"platform,omitempty"`
		Size      int64         `json:"size" yaml:"size"`
		Layers    []layerDoc    `json:"layers,omitempty" yaml:"layers,omitempty"`
		Manifests []manifestDoc `json:"manifests,omitempty" yaml:"manifests,omitempty"`
	}
	layerDoc struct {
		Digest    string `json:"digest" yaml:"digest"`
		MediaType string `json:"mediaType" yaml:"mediaType"`
		Size      int64  `json:"size" yaml:"size"`
	}
	describeDoc struct {
		SHA       string `json:"sha" yaml:"sha"`
		bundleDoc `yaml:",inline"`
	}
)

// Image types, as imgpkg names them; Referrer is ferry's.
const (
	imageTypeImage     = "Image"
	imageTypeSignature = "Signature"
	imageTypeReferrer  = "Referrer"
)

func describeDocument(d *graph.Description, withLayers bool) describeDoc {
	root := d.Graph.Roots[0]
	return describeDoc{SHA: root.Desc.Digest.String(), bundleDoc: bundleDocument(d, root, nil, withLayers)}
}

// bundleDocument describes bundle b, listed with annotations in its parent.
func bundleDocument(d *graph.Description, b *graph.Node, annotations map[string]string, withLayers bool) bundleDoc {
	m := d.Manifest(b)
	total, blobs := d.Total(b)
	doc := bundleDoc{
		Image:       b.Location(),
		Origin:      b.Ref,
		Annotations: annotations,
		MediaType:   b.Desc.MediaType,
		Size:        m.Size,
		TotalSize:   total,
		TotalBlobs:  blobs,
	}
	if withLayers {
		doc.Layers = layerDocs(m.Layers)
	}
	// Signatures and referrers of b and of its images are listed with the
	// images, and so are theirs.
	attached := map[*graph.Node]bool{}
	var addAttached func(n *graph.Node)
	addAttached = func(n *graph.Node) {
		for _, a := range slices.Concat(n.Signatures, n.Referrers) {
			if attached[a] {
				continue
			}
			attached[a] = true
			if doc.Content.Images == nil {
				doc.Content.Images = map[string]imageDoc{}
			}
			doc.Content.Images[a.Desc.Digest.String()] = imageDocument(d, a, nil, n, withLayers)
			addAttached(a)
		}
	}
	addAttached(b)
	for i, n := range b.Images {
		var ann map[string]string
		if b.Lock != nil && i < len(b.Lock.Images) {
			ann = b.Lock.Images[i].Annotations
		}
		key := n.Desc.Digest.String()
		if n.Bundle && n.Lock != nil {
			if doc.Content.Bundles == nil {
				doc.Content.Bundles = map[string]bundleDoc{}
			}
			doc.Content.Bundles[key] = bundleDocument(d, n, ann, withLayers)
		} else {
			if doc.Content.Images == nil {
				doc.Content.Images = map[string]imageDoc{}
			}
			doc.Content.Images[key] = imageDocument(d, n, ann, nil, withLayers)
		}
		addAttached(n)
	}
	return doc
}

// imageDocument describes an image, an index or (with subject) a signature
// or a referrer.
func imageDocument(d *graph.Description, n *graph.Node, annotations map[string]string, subject *graph.Node, withLayers bool) imageDoc {
	m := d.Manifest(n)
	doc := imageDoc{
		Image:       n.Location(),
		Origin:      n.Ref,
		Annotations: annotations,
		ImageType:   imageTypeImage,
		MediaType:   n.Desc.MediaType,
		Size:        m.Size,
	}
	switch {
	case subject != nil && n.Signature:
		doc.ImageType = imageTypeSignature
		doc.SignatureOf = subject.Desc.Digest.String()
		if len(n.Tags) > 0 {
			doc.Tag = n.Tags[0]
		}
	case subject != nil && n.Referrer:
		doc.ImageType = imageTypeReferrer
		doc.ArtifactType = n.Desc.ArtifactType
		doc.Subject = n.Subject.String()
		doc.Annotations = n.Desc.Annotations
	}
	if withLayers {
		doc.Layers = layerDocs(m.Layers)
	}
	doc.Manifests = manifestDocs(m.Children, withLayers)
	return doc
}

func manifestDocs(children []*graph.Manifest, withLayers bool) []manifestDoc {
	var out []manifestDoc
	for _, c := range children {
		doc := manifestDoc{
			Digest:    c.Desc.Digest.String(),
			MediaType: c.Desc.MediaType,
			Platform:  platformString(c.Desc.Platform),
			Size:      c.Size,
			Manifests: manifestDocs(c.Children, withLayers),
		}
		if withLayers {
			doc.Layers = layerDocs(c.Layers)
		}
		out = append(out, doc)
	}
	return out
}

func layerDocs(layers []ocispec.Descriptor) []layerDoc {
	var out []layerDoc
	for _, l := range layers {
		out = append(out, layerDoc{Digest: l.Digest.String(), MediaType: l.MediaType, Size: l.Size})
	}
	return out
}

// platformString formats os/arch[/variant][:os.version]; "" for none.
func platformString(p *ocispec.Platform) string {
	if p == nil || (p.OS == "" && p.Architecture == "") {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	if p.OSVersion != "" {
		s += ":" + p.OSVersion
	}
	return s
}

// writeDescribeTree prints the text output: imgpkg's "Bundle SHA" line, the
// total, then one tree line per node:
//
//	bundle REPO@DIGEST  SIZE (total SIZE in N blobs)
//	├── signature REPO@DIGEST (sha256-<hex>.sig)  SIZE
//	├── referrer REPO@DIGEST (ARTIFACT TYPE)  SIZE
//	├── index REPO@DIGEST  SIZE
//	│   ├── linux/amd64 DIGEST  SIZE
//	│   └── linux/arm64 DIGEST  SIZE
//	└── image REPO@DIGEST  SIZE (origin REF)
//
// A node met a second time is printed once more without its subtree.
func writeDescribeTree(w io.Writer, d *graph.Description, withLayers bool) error {
	root := d.Graph.Roots[0]
	total, blobs := d.GraphTotal()
	p := &treePrinter{w: w, d: d, layers: withLayers, seen: map[*graph.Node]bool{}}
	p.printf("Bundle SHA: %s\n", root.Desc.Digest)
	p.printf("Total: %s (%d bytes) in %d blobs\n\n", humanBytes(total), total, blobs)
	p.node(root, "", "", "", "")
	return p.err
}

type treePrinter struct {
	w      io.Writer
	d      *graph.Description
	layers bool
	seen   map[*graph.Node]bool
	err    error
}

func (p *treePrinter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// node prints n after prefix+branch, and its subtree with childPrefix;
// subject is the digest of the node n is attached to, if any.
func (p *treePrinter) node(n *graph.Node, subject digest.Digest, prefix, branch, childPrefix string) {
	m := p.d.Manifest(n)
	kind := "image"
	switch {
	case n.Signature:
		kind = signatureKind(n)
	case n.Bundle && n.Lock != nil:
		kind = "bundle"
	case n.Index:
		kind = "index"
	}
	if n.Referrer {
		kind = "referrer"
	}
	line := fmt.Sprintf("%s %s", kind, n.Location())
	if n.Signature && len(n.Tags) > 0 {
		line += " (" + n.Tags[0] + ")"
	}
	if n.Referrer {
		var notes []string
		if n.Desc.ArtifactType != "" {
			notes = append(notes, n.Desc.ArtifactType)
		}
		if n.Subject != "" && n.Subject != subject {
			notes = append(notes, "of "+n.Subject.String()) // a child of the index above
		}
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
	}
	line += "  " + humanBytes(m.Size)
	if n.Bundle && n.Lock != nil {
		total, blobs := p.d.Total(n)
		line += fmt.Sprintf(" (total %s in %d blobs)", humanBytes(total), blobs)
	}
	if !n.Signature && !n.Referrer && n.Ref != "" && refRepo(n.Ref) != n.Repo {
		line += " (origin " + n.Ref + ")"
	}
	if p.seen[n] {
		p.printf("%s%s%s (listed above)\n", prefix, branch, line)
		return
	}
	p.seen[n] = true
	p.printf("%s%s%s\n", prefix, branch, line)

	items := p.manifestItems(m)
	for _, a := range slices.Concat(n.Signatures, n.Referrers) {
		items = append(items, func(prefix, branch, childPrefix string) {
			p.node(a, n.Desc.Digest, prefix, branch, childPrefix)
		})
	}
	for _, c := range n.Images {
		items = append(items, func(prefix, branch, childPrefix string) {
			p.node(c, "", prefix, branch, childPrefix)
		})
	}
	p.items(prefix+childPrefix, items)
}

// child prints an entry of an index and, for a nested index, its entries.
func (p *treePrinter) child(c *graph.Manifest, prefix, branch, childPrefix string) {
	label := platformString(c.Desc.Platform)
	switch {
	case c.IsIndex():
		label = strings.TrimSpace("index " + label)
	case label == "":
		label = "manifest"
	}
	p.printf("%s%s%s %s  %s\n", prefix, branch, label, c.Desc.Digest, humanBytes(c.Size))
	p.items(prefix+childPrefix, p.manifestItems(c))
}

// treeItem prints one entry of a subtree after prefix+branch, and its own
// subtree with childPrefix.
type treeItem func(prefix, branch, childPrefix string)

// manifestItems lists the entries under manifest m: its layers (with
// --layers), then the entries of an index.
func (p *treePrinter) manifestItems(m *graph.Manifest) []treeItem {
	var items []treeItem
	if p.layers {
		for _, l := range m.Layers {
			items = append(items, func(prefix, branch, _ string) {
				p.printf("%s%slayer %s  %s\n", prefix, branch, l.Digest, humanBytes(l.Size))
			})
		}
	}
	for _, c := range m.Children {
		items = append(items, func(prefix, branch, childPrefix string) {
			p.child(c, prefix, branch, childPrefix)
		})
	}
	return items
}

// items prints items under prefix, each on its branch of the tree.
func (p *treePrinter) items(prefix string, items []treeItem) {
	for i, draw := range items {
		if i == len(items)-1 {
			draw(prefix, "└── ", "    ")
		} else {
			draw(prefix, "├── ", "│   ")
		}
	}
}

// signatureKind names a cosign node by its tag suffix.
func signatureKind(n *graph.Node) string {
	for _, t := range n.Tags {
		switch {
		case strings.HasSuffix(t, ".att"):
			return "attestation"
		case strings.HasSuffix(t, ".sbom"):
			return "sbom"
		}
	}
	return "signature"
}

// refRepo returns the repository of a REPO:TAG or REPO@DIGEST reference.
func refRepo(ref string) string {
	if at := strings.LastIndexByte(ref, '@'); at >= 0 {
		ref = ref[:at]
	}
	if colon := strings.LastIndexByte(ref, ':'); colon > strings.LastIndexByte(ref, '/') {
		ref = ref[:colon]
	}
	return ref
}
