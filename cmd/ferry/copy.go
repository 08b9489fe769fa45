package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/spf13/cobra"
	orasregistry "oras.land/oras-go/v2/registry"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/internal/registry"
	"github.com/ferry-oci/ferry/lockfile"
	"github.com/ferry-oci/ferry/ocilayout"
	"github.com/ferry-oci/ferry/store"
)

type copyOptions struct {
	bundleRef string
	imageRef  string
	lockPath  string
	tarPath   string
	layoutDir string

	toRepo   string
	toTar    string
	toLayout string

	lockOutput              string
	concurrency             int
	includeNonDistributable bool
	repoBasedTags           bool
	cosignSignatures        bool
	resume                  bool
	registry                registryFlags
	store                   storeFlags
}

func newCopyCmd(s streams) *cobra.Command {
	var o copyOptions
	cmd := &cobra.Command{
		Use:   "copy (-b REF | -i REF | --lock FILE | --tar FILE | --oci-layout DIR) (--to-repo REPO | --to-tar FILE | --to-oci-layout DIR)",
		Short: "Copy a bundle or image, with everything it references, into a repository, a tarball or a layout",
		Long: `Copy a bundle and every image it references (or an image, or the images of a lock file)
unchanged (same digests) into a single repository, an OCI image-layout tarball or an
OCI image-layout directory. In a repository, each copied image is also tagged
sha256-<hex>.imgpkg and each bundle gets an ImageLocations cache image, as imgpkg does.

A tarball written by --to-tar is a standard OCI image layout: skopeo, oras, umoci,
regctl, crane and containerd read it as it is. --tar also reads imgpkg's own tarballs.`,
		Example: `  # Option 1 of the air-gapped workflow: one machine sees both registries
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --to-repo registry.corp.com/apps/simple-app-bundle

  # Option 2: through a tarball carried across the air gap
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --to-tar /tmp/my-image.tar
  ferry copy --tar /tmp/my-image.tar --to-repo registry.corp.com/apps/simple-app-bundle

  # Copy the images of a lock file and write where they landed
  ferry copy --lock images.yml --to-repo registry.corp.com/apps/images --lock-output relocated.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCopy(cmd, s, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.bundleRef, "bundle", "b", "", "Set bundle reference (example: docker.io/dkalinin/app1-bundle)")
	f.StringVarP(&o.imageRef, "image", "i", "", "Set image reference (example: docker.io/dkalinin/app1)")
	f.StringVar(&o.lockPath, "lock", "", "BundleLock or ImagesLock of the content to copy")
	f.StringVar(&o.tarPath, "tar", "", "Path to a tarball to copy from: an OCI image layout (as --to-tar writes) or imgpkg's format")
	f.StringVar(&o.layoutDir, "oci-layout", "", "Path to an OCI image-layout directory to copy from")
	f.StringVar(&o.toRepo, "to-repo", "", "Location to upload assets (example: docker.io/dkalinin/app1)")
	f.StringVar(&o.toTar, "to-tar", "", "Location to write a tar file containing assets (an OCI image layout)")
	f.StringVar(&o.toLayout, "to-oci-layout", "", "Location to write an OCI image-layout directory containing assets")
	f.StringVar(&o.lockOutput, "lock-output", "", "Location to output the generated lockfile (a BundleLock when a bundle was copied, otherwise an ImagesLock); only with --to-repo")
	f.IntVar(&o.concurrency, "concurrency", 5, "Concurrency")
	f.BoolVar(&o.includeNonDistributable, "include-non-distributable-layers", false, "Include non-distributable layers")
	f.BoolVar(&o.repoBasedTags, "repo-based-tags", false, "Allow ferry to use repository-based tags for convenience")
	f.BoolVar(&o.cosignSignatures, "cosign-signatures", false, "Find and copy cosign signatures (sha256-<hex>.sig) and attestations (.att, .sbom) of images")
	f.BoolVar(&o.resume, "resume", false, "Resume copy (accepted for imgpkg compatibility; ferry always resumes)")
	o.registry.bind(f)
	o.store.bind(f, true)
	return cmd
}

// countSet counts the non-empty values.
func countSet(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

func runCopy(cmd *cobra.Command, s streams, o *copyOptions) error {
	ctx := cmd.Context()
	if countSet(o.bundleRef, o.imageRef, o.lockPath, o.tarPath, o.layoutDir) != 1 {
		return errors.New("expected exactly one source: --bundle (-b), --image (-i), --lock, --tar or --oci-layout")
	}
	if countSet(o.toRepo, o.toTar, o.toLayout) != 1 {
		return errors.New("expected exactly one destination: --to-repo, --to-tar or --to-oci-layout")
	}
	if o.lockOutput != "" && o.toRepo == "" {
		return errors.New("--lock-output is only available with --to-repo")
	}
	logf := func(format string, args ...any) { fmt.Fprintf(s.Err, "copy | "+format+"\n", args...) }
	warn := func(msg string) { fmt.Fprintf(s.Err, "Warning: %s\n", msg) }

	client, err := o.registry.client()
	if err != nil {
		return err
	}
	var dst registryReference
	if o.toRepo != "" {
		if dst, err = client.ParseReference(o.toRepo); err != nil {
			return fmt.Errorf("--to-repo: %w", err)
		}
		if dst.Reference != "" {
			return fmt.Errorf("--to-repo %q: expected a repository without tag or digest", o.toRepo)
		}
	}
	var (
		src      graph.Source
		roots    []graph.RootSpec
		cosign   = o.cosignSignatures
		fromFile = o.tarPath != "" || o.layoutDir != ""
	)
	if fromFile {
		path := o.tarPath + o.layoutDir
		layout, err := openLayout(ctx, path)
		if err != nil {
			return err
		}
		defer layout.Close()
		src = layoutSource{layout: layout}
		roots = layoutRootSpecs(layout.Roots())
		if len(roots) == 0 {
			return fmt.Errorf("%s: the layout lists no image", path)
		}
		cosign = true // signatures in a layout are found by their tags, locally
	} else {
		roots, err = o.rootSpecs()
		if err != nil {
			return err
		}
	}

	// The content store: every download passes through it, and a layout is
	// written from it. --no-store skips it for registry destinations and
	// uses a throw-away one for layouts.
	st, err := o.store.open(cmd)
	if err != nil {
		return err
	}
	if st == nil && o.toRepo == "" {
		tmp, cleanup, err := temporaryStore(cmd)
		if err != nil {
			return err
		}
		defer cleanup()
		st = tmp
	}
	if !fromFile {
		src = registrySource{client: client, store: st}
	}

	g, err := graph.Discover(ctx, src, roots, graph.DiscoverOptions{
		CosignSignatures: cosign,
		Concurrency:      o.concurrency,
	})
	if err != nil {
		return err
	}
	if !fromFile {
		logf("exporting %d images...", len(g.Nodes))
		for _, n := range g.Nodes {
			logf("will export %s", n.Location())
		}
		logf("exported %d images", len(g.Nodes))
	}

	if o.toRepo != "" {
		if err := copyToRepo(ctx, o, client, dst, src, fromFile, g, logf, warn); err != nil {
			return err
		}
	} else {
		if err := copyToLayout(ctx, s, o, st, src, !fromFile, g, logf, warn); err != nil {
			return err
		}
	}
	fmt.Fprintln(s.Err, "Succeeded")
	return nil
}

// registryReference is a parsed registry reference.
type registryReference = orasregistry.Reference

// copyToRepo copies g into --to-repo and writes --lock-output.
func copyToRepo(ctx context.Context, o *copyOptions, client *registry.Client, dst registryReference, src graph.Source, fromFile bool, g *graph.Graph, logf func(string, ...any), warn func(string)) error {
	destRepo := dst.Registry + "/" + dst.Repository
	target, err := client.Repository(ctx, destRepo)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	logf("importing %d images...", len(g.Nodes))
	res, err := graph.CopyToRepo(ctx, src, g, target, graph.CopyOptions{
		Concurrency:             o.concurrency,
		IncludeNonDistributable: o.includeNonDistributable,
		RepoBasedTags:           o.repoBasedTags,
		DestRepo:                destRepo,
		SameRegistry:            func(repo string) bool { return registryHost(repo) == dst.Registry },
		OnCopy: func(n *graph.Node, skipped bool) {
			mu.Lock()
			defer mu.Unlock()
			suffix := "..."
			if skipped {
				suffix = " (already present)"
			}
			from := n.Location() // where it is read from
			if fromFile {
				from = n.Ref // a layout holds everything; name it as first met
			}
			logf("importing %s -> %s@%s%s", from, destRepo, n.Desc.Digest, suffix)
		},
		OnWarning: warn,
	})
	if err != nil {
		return client.DescribeError(err, dst)
	}
	logf("imported %d images", len(g.Nodes))
	if o.lockOutput != "" {
		return writeCopyLock(res, o.lockOutput)
	}
	return nil
}

// copyToLayout makes every blob of g local, then writes --to-tar or
// --to-oci-layout from the store, file to file.
func copyToLayout(ctx context.Context, s streams, o *copyOptions, st *store.Store, src graph.Source, srcCached bool, g *graph.Graph, logf func(string, ...any), warn func(string)) error {
	gathered, err := graph.Gather(ctx, src, g, st, graph.GatherOptions{
		SourceFillsLocal:        srcCached,
		Concurrency:             o.concurrency,
		IncludeNonDistributable: o.includeNonDistributable,
		OnWarning:               warn,
	})
	if err != nil {
		return err
	}
	index, err := ocilayout.NewIndex(layoutRoots(g, gathered.Skipped))
	if err != nil {
		return err
	}
	var total int64
	for _, b := range gathered.Blobs {
		total += b.Size
	}
	opener := ocilayout.BlobOpenerFunc(st.Fetch)
	if o.toTar != "" {
		logf("writing %s (%d blobs, %s)...", o.toTar, len(gathered.Blobs), humanBytes(total))
		sum, err := ocilayout.WriteTar(ctx, o.toTar, gathered.Blobs, index, opener, ocilayout.WriteOptions{})
		if err != nil {
			return err
		}
		logf("wrote %s: %d images, %d blobs, %s", o.toTar, len(g.Nodes), len(gathered.Blobs), humanBytes(total))
		fmt.Fprintf(s.Out, "%s  %s\n", sum.Encoded(), o.toTar)
		return nil
	}
	logf("writing %s (%d blobs, %s)...", o.toLayout, len(gathered.Blobs), humanBytes(total))
	if err := ocilayout.WriteDir(ctx, o.toLayout, gathered.Blobs, index, opener, ocilayout.WriteOptions{}); err != nil {
		return err
	}
	logf("wrote %s: %d images, %d blobs, %s", o.toLayout, len(g.Nodes), len(gathered.Blobs), humanBytes(total))
	return nil
}

// rootSpecs turns the source flags into graph roots.
func (o *copyOptions) rootSpecs() ([]graph.RootSpec, error) {
	switch {
	case o.bundleRef != "":
		return []graph.RootSpec{{Ref: o.bundleRef, Kind: graph.RootBundle}}, nil
	case o.imageRef != "":
		return []graph.RootSpec{{Ref: o.imageRef, Kind: graph.RootImage}}, nil
	}
	return rootsFromLock(o.lockPath)
}

// rootsFromLock reads a BundleLock (one bundle root, its tag re-applied) or
// an ImagesLock (one root per image, annotations kept).
func rootsFromLock(path string) ([]graph.RootSpec, error) {
	data, err := lockfile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kind, err := lockfile.Kind(path, data)
	if err != nil {
		return nil, err
	}
	switch kind {
	case lockfile.KindBundleLock:
		l, err := lockfile.ParseBundleLock(path, data)
		if err != nil {
			return nil, err
		}
		return []graph.RootSpec{{Ref: l.Bundle.Image, Kind: graph.RootBundle, Tag: l.Bundle.Tag}}, nil
	case lockfile.KindImagesLock:
		l, err := lockfile.ParseImagesLock(path, data)
		if err != nil {
			return nil, err
		}
		roots := make([]graph.RootSpec, 0, len(l.Images))
		for _, img := range l.Images {
			roots = append(roots, graph.RootSpec{Ref: img.Image, Annotations: img.Annotations})
		}
		return roots, nil
	}
	return nil, fmt.Errorf("%s: kind %s cannot be copied; expected a BundleLock or an ImagesLock", path, kind)
}

// writeCopyLock writes a BundleLock when a root bundle was copied, otherwise
// an ImagesLock of the destination references.
func writeCopyLock(res *graph.Result, path string) error {
	var data []byte
	bl, err := res.BundleLock()
	switch {
	case err == nil:
		data, err = bl.Marshal()
	case errors.Is(err, graph.ErrNoBundleRoot):
		var il *lockfile.ImagesLock
		il, err = res.ImagesLock()
		if err == nil {
			data, err = il.Marshal()
		}
	}
	if err != nil {
		return fmt.Errorf("lock output %s: %w", path, err)
	}
	return lockfile.WriteFile(path, data)
}
