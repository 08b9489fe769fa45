package main

import (
	"errors"
	"fmt"
	"sync"

	"github.com/spf13/cobra"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/lockfile"
)

type copyOptions struct {
	bundleRef string
	imageRef  string
	lockPath  string

	toRepo string

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
		Use:   "copy (-b REF | -i REF | --lock FILE) --to-repo REPO",
		Short: "Copy a bundle or image, with everything it references, into a repository",
		Long: `Copy a bundle and every image it references (or an image, or the images of a lock file)
into a single repository, unchanged: same digests. Each copied image is also tagged
sha256-<hex>.imgpkg, and each bundle gets an ImageLocations cache image, as imgpkg does.`,
		Example: `  # Option 1 of the air-gapped workflow: one machine sees both registries
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --to-repo registry.corp.com/apps/simple-app-bundle

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
	f.StringVar(&o.toRepo, "to-repo", "", "Location to upload assets (example: docker.io/dkalinin/app1)")
	f.StringVar(&o.lockOutput, "lock-output", "", "Location to output the generated lockfile (a BundleLock when a bundle was copied, otherwise an ImagesLock)")
	f.IntVar(&o.concurrency, "concurrency", 5, "Concurrency")
	f.BoolVar(&o.includeNonDistributable, "include-non-distributable-layers", false, "Include non-distributable layers")
	f.BoolVar(&o.repoBasedTags, "repo-based-tags", false, "Allow ferry to use repository-based tags for convenience")
	f.BoolVar(&o.cosignSignatures, "cosign-signatures", false, "Find and copy cosign signatures (sha256-<hex>.sig) and attestations (.att, .sbom) of images")
	f.BoolVar(&o.resume, "resume", false, "Resume copy (accepted for imgpkg compatibility; ferry always resumes)")
	o.registry.bind(f)
	o.store.bind(f, true)
	return cmd
}

func runCopy(cmd *cobra.Command, s streams, o *copyOptions) error {
	ctx := cmd.Context()
	roots, err := o.rootSpecs()
	if err != nil {
		return err
	}
	if o.toRepo == "" {
		return errors.New("expected a destination: --to-repo")
	}
	client, err := o.registry.client()
	if err != nil {
		return err
	}
	st, err := o.store.open(cmd)
	if err != nil {
		return err
	}
	dst, err := client.ParseReference(o.toRepo)
	if err != nil {
		return fmt.Errorf("--to-repo: %w", err)
	}
	if dst.Reference != "" {
		return fmt.Errorf("--to-repo %q: expected a repository without tag or digest", o.toRepo)
	}
	destRepo := dst.Registry + "/" + dst.Repository
	src := registrySource{client: client, store: st}

	logf := func(format string, args ...any) { fmt.Fprintf(s.Err, "copy | "+format+"\n", args...) }
	g, err := graph.Discover(ctx, src, roots, graph.DiscoverOptions{
		CosignSignatures: o.cosignSignatures,
		Concurrency:      o.concurrency,
	})
	if err != nil {
		return err
	}
	logf("exporting %d images...", len(g.Nodes))
	for _, n := range g.Nodes {
		logf("will export %s", n.Location())
	}
	logf("exported %d images", len(g.Nodes))

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
			logf("importing %s -> %s@%s%s", n.Location(), destRepo, n.Desc.Digest, suffix)
		},
		OnWarning: func(msg string) { fmt.Fprintf(s.Err, "Warning: %s\n", msg) },
	})
	if err != nil {
		return client.DescribeError(err, dst)
	}
	logf("imported %d images", len(g.Nodes))

	if o.lockOutput != "" {
		if err := writeCopyLock(res, o.lockOutput); err != nil {
			return err
		}
	}
	fmt.Fprintln(s.Err, "Succeeded")
	return nil
}

// rootSpecs turns the source flags into graph roots.
func (o *copyOptions) rootSpecs() ([]graph.RootSpec, error) {
	given := 0
	for _, v := range []string{o.bundleRef, o.imageRef, o.lockPath} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return nil, errors.New("expected exactly one source: --bundle (-b), --image (-i) or --lock")
	}
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
