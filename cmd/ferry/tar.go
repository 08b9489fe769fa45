package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/ferry-oci/ferry/ocilayout"
)

// checkedLayout is a layout (or imgpkg tarball) that can also list its
// index and verify itself: what ferry tar inspect and verify read.
type checkedLayout interface {
	layoutReader
	Index() ocispec.Index
	Verify(ctx context.Context) ([]ocilayout.Problem, error)
}

var (
	_ checkedLayout = (*ocilayout.Tar)(nil)
	_ checkedLayout = (*ocilayout.Dir)(nil)
	_ checkedLayout = (*ocilayout.ImgpkgTar)(nil)
)

// openCheckedLayout opens path as openLayout does (format detected, other
// formats refused by name) and says which format it is.
func openCheckedLayout(ctx context.Context, path string) (checkedLayout, ocilayout.Format, error) {
	l, err := openLayout(ctx, path)
	if err != nil {
		return nil, ocilayout.FormatUnknown, err
	}
	var format ocilayout.Format
	switch l.(type) {
	case *ocilayout.Tar:
		format = ocilayout.FormatOCILayoutTar
	case *ocilayout.Dir:
		format = ocilayout.FormatOCILayoutDir
	case *ocilayout.ImgpkgTar:
		format = ocilayout.FormatImgpkgTar
	}
	cl, ok := l.(checkedLayout)
	if !ok || format == ocilayout.FormatUnknown {
		l.Close()
		return nil, ocilayout.FormatUnknown, fmt.Errorf("%s: cannot be inspected", path)
	}
	return cl, format, nil
}

// layoutBlobs lists the blobs a layout holds.
func layoutBlobs(l checkedLayout) ([]ocilayout.BlobInfo, error) {
	switch v := l.(type) {
	case *ocilayout.Tar:
		return v.Blobs(), nil
	case *ocilayout.ImgpkgTar:
		return v.Blobs(), nil
	case *ocilayout.Dir:
		return v.Blobs()
	}
	return nil, errors.New("cannot list the blobs of this layout")
}

// formatName is the machine-readable name of a format in --json output.
func formatName(f ocilayout.Format) string {
	switch f {
	case ocilayout.FormatOCILayoutTar:
		return "oci-layout-tar"
	case ocilayout.FormatOCILayoutDir:
		return "oci-layout-dir"
	case ocilayout.FormatImgpkgTar:
		return "imgpkg-tar"
	}
	return "unknown"
}

func newTarCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tar",
		Short: "Inspect and verify a tarball or OCI image layout, before and after it crosses the air gap",
		Long: `Read a file written by "ferry copy --to-tar" (an OCI image-layout tarball), an OCI
image-layout directory (--to-oci-layout, or another tool's) or imgpkg's own tarball, without
contacting any registry and without the local content store.`,
	}
	cmd.AddCommand(newTarInspectCmd(s), newTarVerifyCmd(s))
	return cmd
}

func newTarInspectCmd(s streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE|DIR",
		Short: "List the roots of a tarball or layout: tags, digests, kinds, original references and sizes",
		Long: `List what a tarball or OCI image layout holds: its format; each root listed in
index.json (or imgpkg's manifest.json) with its ref name, kind (bundle, image, index or
signature), digest, the size of the graph below it and the reference it was copied from;
the totals; the non-distributable layers that were left out of the file; and the index
children a platform filter (copy --platform) left out, with their platforms.

Only headers, index.json and manifests are read; "ferry tar verify" re-hashes every blob.`,
		Example: `  # What does this tarball hold?
  ferry tar inspect /tmp/my-image.tar

  # The same as JSON, and an OCI layout directory
  ferry tar inspect --json /tmp/my-layout`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTarInspect(cmd.Context(), s, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print a JSON document instead of tables")
	return cmd
}

func newTarVerifyCmd(s streams) *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE|DIR",
		Short: "Re-hash every blob of a tarball or layout and check every reference is present",
		Long: `Check a tarball or OCI image layout completely: every blob is read and re-hashed
against its digest and size, and every manifest, index, config and layer referenced from
index.json is present, except the non-distributable layers and the index children (copy
--platform) the file records as left out.

Each problem is printed on stderr with the digest and the entry at fault; the command
then exits with status 1. Run it before and after the file crosses the air gap.`,
		Example: `  ferry tar verify /tmp/my-image.tar
  ferry tar verify /tmp/my-layout`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTarVerify(cmd.Context(), s, args[0])
		},
	}
}

// tarReport is what ferry tar inspect prints (--json prints it as is).
type tarReport struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	// Roots are the entries of index.json, in order.
	Roots []rootReport `json:"roots"`
	// Blobs and Bytes count every blob the file holds.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// SkippedLayers are the non-distributable layers left out of the file.
	SkippedLayers []skippedReport `json:"skippedLayers"`
	// LeftOutChildren are the index children a platform filter left out
	// of the file (their indexes keep their digests and still list them).
	LeftOutChildren []leftOutReport `json:"leftOutChildren"`

	format ocilayout.Format
}

// rootReport describes one root.
type rootReport struct {
	RefName     string        `json:"refName"`
	Tag         string        `json:"tag,omitempty"`
	Kind        string        `json:"kind"`
	Digest      digest.Digest `json:"digest"`
	MediaType   string        `json:"mediaType"`
	OriginalRef string        `json:"originalRef,omitempty"`
	RootBundle  bool          `json:"rootBundle,omitempty"`
	// GraphBlobs and GraphBytes count the blobs present below the root
	// (itself included), each once.
	GraphBlobs int   `json:"graphBlobs"`
	GraphBytes int64 `json:"graphBytes"`
	// Error says why the graph could not be read completely; the counts
	// are then partial.
	Error string `json:"error,omitempty"`
}

// skippedReport describes one non-distributable layer left out.
type skippedReport struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls,omitempty"`
	// Roots names the roots whose graph holds the layer (original
	// reference, or ref name when unknown).
	Roots []string `json:"roots"`
}

// leftOutReport describes one index child left out by a platform filter.
type leftOutReport struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	// Platform is os/arch[/variant][:os.version]; empty when the index
	// gives none.
	Platform string `json:"platform,omitempty"`
	// Parents are the digests of the indexes listing the child; empty when
	// the file does not say (written before it recorded them).
	Parents []digest.Digest `json:"parents,omitempty"`
	// Roots names the roots whose index lists the child (original
	// reference, or ref name when unknown).
	Roots []string `json:"roots"`
}

func runTarInspect(ctx context.Context, s streams, path string, asJSON bool) error {
	l, format, err := openCheckedLayout(ctx, path)
	if err != nil {
		return err
	}
	defer l.Close()
	rep, err := inspectLayout(ctx, path, l, format)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, r := range rep.Roots {
		if r.Error != "" {
			fmt.Fprintf(s.Err, "tar inspect | Warning: %s (%s): %s; run ferry tar verify\n", r.RefName, r.Digest, r.Error)
		}
	}
	return printTarReport(s.Out, rep)
}

// inspectLayout builds the report of an open layout: manifests are read
// (verified) once each to size the graph below every root.
func inspectLayout(ctx context.Context, path string, l checkedLayout, format ocilayout.Format) (*tarReport, error) {
	blobs, err := layoutBlobs(l)
	if err != nil {
		return nil, err
	}
	rep := &tarReport{Path: path, Format: formatName(format), format: format, Roots: []rootReport{}, SkippedLayers: []skippedReport{}, LeftOutChildren: []leftOutReport{}}
	present := make(map[digest.Digest]int64, len(blobs))
	for _, b := range blobs {
		present[b.Digest] = b.Size
		rep.Bytes += b.Size
	}
	rep.Blobs = len(blobs)

	w := &graphWalker{layout: l, present: present, manifests: map[digest.Digest][]byte{}}
	skippedAt := map[digest.Digest]int{}
	leftOutAt := map[digest.Digest]int{}
	index := l.Index()
	for i, r := range l.Roots() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		refName := r.RefName()
		if i < len(index.Manifests) {
			if n := index.Manifests[i].Annotations[ocilayout.AnnotationRefName]; n != "" {
				refName = n
			}
		}
		rr := rootReport{
			RefName:     refName,
			Tag:         r.Tag,
			Digest:      r.Desc.Digest,
			MediaType:   r.Desc.MediaType,
			OriginalRef: r.OriginalRef,
			RootBundle:  r.RootBundle,
		}
		sum, err := w.walk(ctx, r.Desc)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rr.Error = err.Error()
		}
		rr.GraphBlobs, rr.GraphBytes = sum.blobs, sum.bytes
		rr.Kind = rootKind(r, sum)
		rep.Roots = append(rep.Roots, rr)

		name := r.OriginalRef
		if name == "" {
			name = refName
		}
		for _, sl := range r.SkippedLayers {
			j, ok := skippedAt[sl.Digest]
			if !ok {
				j = len(rep.SkippedLayers)
				skippedAt[sl.Digest] = j
				rep.SkippedLayers = append(rep.SkippedLayers, skippedReport{Digest: sl.Digest, MediaType: sl.MediaType, Size: sl.Size, URLs: sl.URLs})
			}
			if !slices.Contains(rep.SkippedLayers[j].Roots, name) {
				rep.SkippedLayers[j].Roots = append(rep.SkippedLayers[j].Roots, name)
			}
		}
		for _, c := range r.LeftOutChildren {
			j, ok := leftOutAt[c.Desc.Digest]
			if !ok {
				j = len(rep.LeftOutChildren)
				leftOutAt[c.Desc.Digest] = j
				rep.LeftOutChildren = append(rep.LeftOutChildren, leftOutReport{Digest: c.Desc.Digest, MediaType: c.Desc.MediaType, Size: c.Desc.Size, Platform: platformString(c.Desc.Platform)})
			}
			lo := &rep.LeftOutChildren[j]
			if c.Parent != "" && !slices.Contains(lo.Parents, c.Parent) {
				lo.Parents = append(lo.Parents, c.Parent)
			}
			if !slices.Contains(lo.Roots, name) {
				lo.Roots = append(lo.Roots, name)
			}
		}
	}
	return rep, nil
}

// signatureTag matches cosign's tags for signatures, attestations and SBOMs.
var signatureTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}\.(sig|att|sbom)$`)

// rootKind names what a root is: bundle, index, signature or image.
func rootKind(r ocilayout.Root, sum graphSum) string {
	switch {
	case r.Bundle || sum.bundle:
		return "bundle"
	case isIndexType(r.Desc.MediaType) || sum.index:
		return "index"
	case signatureTag.MatchString(r.Tag) || sum.signature:
		return "signature"
	}
	return "image"
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// Media types ferry reads below a root to size its graph.
const (
	mediaTypeDockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeCosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// maxInspectBlob bounds the manifests and configs inspect reads.
	maxInspectBlob = 4 << 20
)

// graphWalker sizes the graphs below roots, reading each manifest once.
type graphWalker struct {
	layout    checkedLayout
	present   map[digest.Digest]int64
	manifests map[digest.Digest][]byte
}

// graphSum is what walk found below one root.
type graphSum struct {
	blobs     int
	bytes     int64
	bundle    bool // the root's config has imgpkg's bundle label
	index     bool // the root is an index (sniffed when its media type is absent)
	signature bool // the root's layers are cosign signatures
}

// walk counts the blobs present below root (root included, each once) and
// reads what the root is from its manifest and config. Missing blobs are
// not counted (verify reports them); the first read error is returned with
// the partial sum.
func (w *graphWalker) walk(ctx context.Context, root ocispec.Descriptor) (graphSum, error) {
	var sum graphSum
	var firstErr error
	seen := map[digest.Digest]bool{}
	queue := []ocispec.Descriptor{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		size, ok := w.present[d.Digest]
		if !ok {
			continue
		}
		sum.blobs++
		sum.bytes += size
		isRoot := d.Digest == root.Digest
		if !isRoot && !isManifestMediaType(d.MediaType) {
			continue
		}
		b, err := w.manifest(ctx, d, size)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		var m struct {
			MediaType string               `json:"mediaType"`
			Config    *ocispec.Descriptor  `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
			Blobs     []ocispec.Descriptor `json:"blobs"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			if isRoot && !isManifestMediaType(d.MediaType) {
				continue // a root that is not a manifest: counted, nothing below
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			continue
		}
		if isRoot {
			sum.index = m.Manifests != nil && m.Config == nil
			for _, l := range m.Layers {
				sum.signature = sum.signature || l.MediaType == mediaTypeCosignSimpleSigning
			}
			if m.Config != nil {
				sum.bundle = w.isBundleConfig(ctx, *m.Config)
			}
		}
		if m.Config != nil {
			queue = append(queue, *m.Config)
		}
		queue = append(queue, m.Manifests...)
		queue = append(queue, m.Layers...)
		queue = append(queue, m.Blobs...)
	}
	return sum, firstErr
}

// manifest reads a manifest or index blob (verified), once per walker.
func (w *graphWalker) manifest(ctx context.Context, d ocispec.Descriptor, size int64) ([]byte, error) {
	if b, ok := w.manifests[d.Digest]; ok {
		return b, nil
	}
	if size > maxInspectBlob {
		return nil, fmt.Errorf("manifest %s: %d bytes, more than the %d read", d.Digest, size, maxInspectBlob)
	}
	d.Size = size
	b, err := w.read(ctx, d)
	if err != nil {
		return nil, err
	}
	w.manifests[d.Digest] = b
	return b, nil
}

// isBundleConfig reports whether a config carries imgpkg's bundle label.
func (w *graphWalker) isBundleConfig(ctx context.Context, d ocispec.Descriptor) bool {
	size, ok := w.present[d.Digest]
	if !ok || size > maxInspectBlob {
		return false
	}
	d.Size = size
	b, err := w.read(ctx, d)
	if err != nil {
		return false
	}
	var cfg struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if json.Unmarshal(b, &cfg) != nil {
		return false
	}
	_, ok = cfg.Config.Labels[ocilayout.LabelImgpkgBundle]
	return ok
}

func (w *graphWalker) read(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	rc, err := w.layout.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// isManifestMediaType reports whether blobs of media type mt reference others.
func isManifestMediaType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, mediaTypeDockerManifest,
		"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.artifact.manifest.v1+json":
		return true
	}
	return false
}

// printTarReport writes the human-readable form of rep.
func printTarReport(out io.Writer, rep *tarReport) error {
	fmt.Fprintf(out, "%s: %s\n\n", rep.Path, rep.format)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF NAME\tKIND\tDIGEST\tSIZE\tORIGINAL REFERENCE")
	for _, r := range rep.Roots {
		orig := r.OriginalRef
		if orig == "" {
			orig = "-"
		}
		if r.RootBundle {
			orig += " (root bundle)"
		}
		size := humanBytes(r.GraphBytes)
		if r.Error != "" {
			size = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.RefName, r.Kind, r.Digest, size, orig)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nTotal: %d roots, %d blobs, %s (%d bytes)\n", len(rep.Roots), rep.Blobs, humanBytes(rep.Bytes), rep.Bytes)
	if len(rep.SkippedLayers) == 0 {
		fmt.Fprintln(out, "Non-distributable layers left out: none")
	} else {
		fmt.Fprintf(out, "\nNon-distributable layers left out (%d; the destination must get them from their URLs):\n", len(rep.SkippedLayers))
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LAYER\tMEDIA TYPE\tSIZE\tIN")
		for _, l := range rep.SkippedLayers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Digest, l.MediaType, humanBytes(l.Size), strings.Join(l.Roots, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.LeftOutChildren) == 0 {
		return nil
	}
	fmt.Fprintf(out, "\nIndex children left out (platform filter): %d; their indexes keep their digests and still list them\n", len(rep.LeftOutChildren))
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHILD\tPLATFORM\tMEDIA TYPE\tSIZE\tIN")
	for _, c := range rep.LeftOutChildren {
		platform := c.Platform
		if platform == "" {
			platform = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Digest, platform, c.MediaType, humanBytes(c.Size), strings.Join(c.Roots, ", "))
	}
	return tw.Flush()
}

func runTarVerify(ctx context.Context, s streams, path string) error {
	l, _, err := openCheckedLayout(ctx, path)
	if err != nil {
		return err
	}
	defer l.Close()
	blobs, err := layoutBlobs(l)
	if err != nil {
		return err
	}
	problems, err := l.Verify(ctx)
	for _, p := range problems {
		fmt.Fprintf(s.Err, "tar verify | %s\n", p)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: verification failed, %d problem(s); the first: %s", path, len(problems), problems[0])
	}
	var total int64
	for _, b := range blobs {
		total += b.Size
	}
	skipped, leftOut := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, r := range l.Roots() {
		for _, sl := range r.SkippedLayers {
			skipped[sl.Digest] = true
		}
		for _, c := range r.LeftOutChildren {
			leftOut[c.Desc.Digest] = true
		}
	}
	var notes []string
	if len(skipped) > 0 {
		notes = append(notes, fmt.Sprintf("%d non-distributable layers left out, as recorded", len(skipped)))
	}
	if len(leftOut) > 0 {
		notes = append(notes, fmt.Sprintf("%d index children left out by a platform filter, as recorded", len(leftOut)))
	}
	note := ""
	if len(notes) > 0 {
		note = " (" + strings.Join(notes, "; ") + ")"
	}
	_, err = fmt.Fprintf(s.Out, "%s: OK: %d blobs (%s) re-hashed, every reference of %d roots present%s\n",
		path, len(blobs), humanBytes(total), len(l.Roots()), note)
	return err
}
