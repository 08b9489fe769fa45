package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
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
	referrers               bool
	resume                  bool
	platforms               []string
	rewriteIndex            bool
	dryRun                  bool
	json                    bool
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
regctl, crane and containerd read it as it is. --tar also reads imgpkg's own tarballs.

Progress: when standard error is a terminal, live bars show each blob being
transferred and the whole copy (bytes, rate, time left); otherwise only the plain
"copy | ..." lines are printed.

--dry-run shows what would be copied and, per image and in total, the bytes to
fetch from the source, the bytes already in the local store and the bytes already
at the destination (one HEAD request per blob for a repository), then stops.
Finding the images still reads their manifests, the bundles' configs and the
bundle layers through the local store (they stay there, so the copy does not
fetch them again); no other layer is downloaded and nothing is written to the
destination. --json prints one JSON document on standard output: the plan with
--dry-run, otherwise the result (roots, destination references, and per image and
in total the bytes moved, skipped because the destination had them, mounted,
fetched and served by the store).

--platform os/arch[/variant] (repeatable, or comma-separated) copies only those
platforms' images of each index: the OS and architecture must match, and the
variant when one is given (linux/arm64 matches linux/arm64/v8; x86_64 is amd64,
as containerd normalises them). A child of an index without a platform is kept,
a Docker buildx attestation manifest is kept with the image it describes, and an
index nested in an index is filtered the same way. Referrers and signatures of
the images left out are left out too. An index none of whose platforms is asked
for is an error naming the platforms it has.
By default every index keeps its digest (images.yml, the bundle and lock files
stay valid) and is copied without the children left out: a sparse copy, fine in
a tarball and a layout, and in a registry that accepts an index whose children
are missing (the CNCF distribution registry needs
validation.manifests.indexes.platforms: none; ferry says so when a registry
refuses). With --rewrite-index (only for -i and ImagesLock sources, not bundles,
whose images.yml pins each index by digest) ferry writes a new index listing only
the platforms copied instead: its digest changes, ferry says so, and the index
and the --lock-output entry record the original digest in the annotation
dev.ferry-oci.original-index-digest. The signatures and referrers of the
original index are then left out. --dry-run shows what the filter leaves out
and the bytes it saves.`,
		Example: `  # Option 1 of the air-gapped workflow: one machine sees both registries
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --to-repo registry.corp.com/apps/simple-app-bundle

  # Option 2: through a tarball carried across the air gap
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --to-tar /tmp/my-image.tar
  ferry copy --tar /tmp/my-image.tar --to-repo registry.corp.com/apps/simple-app-bundle

  # See what a copy would move before moving it
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --to-repo registry.corp.com/apps/simple-app-bundle --dry-run

  # Copy the images of a lock file and write where they landed
  ferry copy --lock images.yml --to-repo registry.corp.com/apps/images --lock-output relocated.yml

  # Only the linux/amd64 images of every index, into a tarball
  ferry copy -b index.docker.io/user1/simple-app-bundle:v1.0.0 --platform linux/amd64 --to-tar /tmp/my-image.tar

  # A new index of linux/amd64 and linux/arm64 only (its digest changes)
  ferry copy -i index.docker.io/library/nginx:1.27 --platform linux/amd64,linux/arm64 --rewrite-index --to-repo registry.corp.com/mirror/nginx`,
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
	f.BoolVar(&o.referrers, "referrers", true, "Find and copy the OCI 1.1 referrers (signatures, SBOMs, attestations) of every image, through the referrers API or its sha256-<hex> tag fallback; --referrers=false turns it off")
	f.BoolVar(&o.resume, "resume", false, "Resume copy (accepted for imgpkg compatibility; ferry always resumes)")
	f.StringSliceVar(&o.platforms, "platform", nil, "Copy only these platforms' images of each index, os/arch[/variant] (repeatable or comma-separated); children without a platform are kept; indexes keep their digest unless --rewrite-index")
	f.BoolVar(&o.rewriteIndex, "rewrite-index", false, "With --platform, write a new index listing only the platforms copied (its digest changes; the original is recorded in an annotation and the lock output); only for -i and ImagesLock sources")
	f.BoolVar(&o.dryRun, "dry-run", false, "Show what would be copied and the bytes to fetch, already in the store and already at the destination, per image and in total; copy nothing")
	f.BoolVar(&o.json, "json", false, "Print one JSON document on stdout: the result of the copy (with --dry-run, the plan)")
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

// copyRun is the state of one copy command once its flags are checked.
type copyRun struct {
	o      *copyOptions
	s      streams
	client *registry.Client
	dst    registryReference // --to-repo, parsed
	src    graph.Source
	// fromFile: the source is a layout or a tarball (no store in front).
	fromFile bool
	st       *store.Store // nil with --no-store and a repository destination
	// srcCached: the source reads through st.
	srcCached bool
	g         *graph.Graph
	rec       *readRecorder
	record    bool // rec watches the source (--json and --dry-run report what it saw)
	status    *statusLines
	tty       bool // draw progress bars
	logf      func(format string, args ...any)
	warn      func(msg string)
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
	if o.lockOutput != "" && o.dryRun {
		return errors.New("--lock-output cannot be used with --dry-run: nothing is copied")
	}
	platforms, err := parsePlatforms(o.platforms)
	if err != nil {
		return err
	}
	if o.rewriteIndex && len(platforms) == 0 {
		return errors.New("--rewrite-index needs --platform: it writes indexes listing only the platforms asked for")
	}
	if o.rewriteIndex && o.bundleRef != "" {
		return errRewriteBundle("-b " + o.bundleRef)
	}
	r := &copyRun{o: o, s: s, status: &statusLines{w: s.Err}}
	r.logf = func(format string, args ...any) { r.status.printf("copy | "+format+"\n", args...) }
	r.warn = func(msg string) { r.status.printf("Warning: %s\n", msg) }
	r.tty = !o.dryRun && isTerminal(s.Err, os.Getenv)

	if r.client, err = o.registry.client(); err != nil {
		return err
	}
	if o.toRepo != "" {
		if r.dst, err = r.client.ParseReference(o.toRepo); err != nil {
			return fmt.Errorf("--to-repo: %w", err)
		}
		if r.dst.Reference != "" {
			return fmt.Errorf("--to-repo %q: expected a repository without tag or digest", o.toRepo)
		}
	}
	var (
		roots  []graph.RootSpec
		absent []ocispec.Descriptor
		cosign = o.cosignSignatures
	)
	r.fromFile = o.tarPath != "" || o.layoutDir != ""
	if r.fromFile {
		path := o.tarPath + o.layoutDir
		layout, err := openLayout(ctx, path)
		if err != nil {
			return err
		}
		defer layout.Close()
		r.src = layoutSource{layout: layout}
		roots = layoutRootSpecs(layout.Roots())
		if len(roots) == 0 {
			return fmt.Errorf("%s: the layout lists no image", path)
		}
		absent = layoutLeftOut(layout.Roots())
		cosign = true // signatures in a layout are found by their tags, locally
	} else {
		roots, err = o.rootSpecs()
		if err != nil {
			return err
		}
	}
	if o.rewriteIndex {
		for _, root := range roots {
			if root.Kind == graph.RootBundle {
				what := "the bundle " + root.Ref
				if o.lockPath != "" {
					what = "the BundleLock " + o.lockPath
				}
				return errRewriteBundle(what)
			}
		}
	}

	// The content store: every download passes through it, and a layout is
	// written from it. --no-store skips it for registry destinations and
	// uses a throw-away one for layouts.
	if r.st, err = o.store.open(cmd); err != nil {
		return err
	}
	if r.st == nil && o.toRepo == "" {
		tmp, cleanup, err := temporaryStore(cmd)
		if err != nil {
			return err
		}
		defer cleanup()
		r.st = tmp
	}
	if !r.fromFile {
		r.src = registrySource{client: r.client, store: r.st}
		r.srcCached = r.st != nil
	}
	r.rec = newReadRecorder(r.st)
	r.record = o.json || o.dryRun // only they report what was fetched
	if r.record {
		r.src = r.rec.source(r.src)
	}

	r.g, err = graph.Discover(ctx, r.src, roots, graph.DiscoverOptions{
		CosignSignatures: cosign,
		Referrers:        o.referrers,
		Concurrency:      o.concurrency,
		Platforms:        platforms,
		RewriteIndexes:   o.rewriteIndex,
		Absent:           absent,
	})
	if err != nil {
		if errors.Is(err, graph.ErrRewriteBundle) {
			return fmt.Errorf("--rewrite-index: %w; copy without --rewrite-index: each index is then copied sparse and keeps its digest", err)
		}
		return r.describeSourceError(err, roots)
	}
	if !r.fromFile {
		r.logf("exporting %d images...", len(r.g.Nodes))
		for _, n := range r.g.Nodes {
			r.logf("will export %s", sourceOf(n))
		}
		r.logf("exported %d images", len(r.g.Nodes))
	}
	r.reportLeftOut()

	switch {
	case o.dryRun:
		err = r.plan(ctx)
	case o.toRepo != "":
		err = r.copyToRepo(ctx)
	default:
		err = r.copyToLayout(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(s.Err, "Succeeded")
	return nil
}

// registryReference is a parsed registry reference.
type registryReference = orasregistry.Reference

// destRepo is the --to-repo repository as "host/path".
func (r *copyRun) destRepo() string {
	if r.o.toRepo == "" {
		return ""
	}
	return r.dst.Registry + "/" + r.dst.Repository
}

// local is the store the copy reads through, for planning: none when the
// source is read directly into a repository.
func (r *copyRun) local() content.ReadOnlyStorage {
	if r.st == nil || (r.o.toRepo != "" && !r.srcCached) {
		return nil
	}
	return r.st
}

// layoutDest is the --to-oci-layout directory as plan destination when it
// exists; nil otherwise (and for --to-tar, which is written anew).
func (r *copyRun) layoutDest() content.ReadOnlyStorage {
	if r.o.toLayout == "" {
		return nil
	}
	if fi, err := os.Stat(r.o.toLayout); err != nil || !fi.IsDir() {
		return nil
	}
	return layoutDirBlobs{dir: r.o.toLayout}
}

// wrapReader composes what watches the source reads: the record of
// fetches when the source has no store in front, and the progress bars.
func (r *copyRun) wrapReader(prog *copyProgress) func(ocispec.Descriptor, io.ReadCloser) io.ReadCloser {
	record := r.record && !r.srcCached
	if !record && prog == nil {
		return nil
	}
	return func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
		if record {
			rc = r.rec.wrap(desc, rc)
		}
		if prog != nil {
			rc = prog.wrap(desc, rc)
		}
		return rc
	}
}

// plan prints what the copy would do (--dry-run).
func (r *copyRun) plan(ctx context.Context) error {
	o := r.o
	var (
		dest     content.ReadOnlyStorage
		destName string
		destDoc  destinationJSON
	)
	switch {
	case o.toRepo != "":
		target, err := r.client.Repository(ctx, r.destRepo())
		if err != nil {
			return err
		}
		dest, destName = target, r.destRepo()
		destDoc = destinationJSON{Type: "repository", Repository: r.destRepo()}
	case o.toLayout != "":
		dest, destName = r.layoutDest(), o.toLayout
		destDoc = destinationJSON{Type: "oci-layout", Path: o.toLayout}
	default:
		destName = o.toTar
		destDoc = destinationJSON{Type: "tar", Path: o.toTar}
	}
	plan, err := graph.PlanCopy(ctx, r.src, r.g, graph.PlanOptions{
		Local:                   r.local(),
		Dest:                    dest,
		ThroughLocal:            o.toRepo == "",
		IncludeNonDistributable: o.includeNonDistributable,
		RepoBasedTags:           o.repoBasedTags,
		Concurrency:             o.concurrency,
	})
	if err != nil {
		if o.toRepo != "" {
			return r.client.DescribeError(err, r.dst)
		}
		return err
	}
	discovered := r.rec.fetchedBytes()
	if o.json {
		if err := writeJSON(r.s.Out, planDocument(plan, destDoc, r.destRepo(), discovered)); err != nil {
			return err
		}
	} else if err := printPlan(r.s.Out, plan, destName, o.toRepo == "", discovered, o.platforms); err != nil {
		return err
	}
	r.logf("dry run: nothing was copied")
	return nil
}

// planForCopy plans the copy when progress bars (which need totals and
// blob names) or the JSON result (which needs each blob's image) want it.
// Only the bars need the destination asked.
func (r *copyRun) planForCopy(ctx context.Context, dest content.ReadOnlyStorage) (*graph.Plan, error) {
	if !r.tty && !r.o.json {
		return nil, nil
	}
	if !r.tty && r.o.toRepo != "" {
		dest = nil // the copy's own outcomes say what was there
	}
	return graph.PlanCopy(ctx, r.src, r.g, graph.PlanOptions{
		Local:                   r.local(),
		Dest:                    dest,
		ThroughLocal:            r.o.toRepo == "",
		IncludeNonDistributable: r.o.includeNonDistributable,
		RepoBasedTags:           r.o.repoBasedTags,
		Concurrency:             r.o.concurrency,
	})
}

// copyToRepo copies the graph into --to-repo and writes --lock-output.
func (r *copyRun) copyToRepo(ctx context.Context) error {
	o, destRepo := r.o, r.destRepo()
	target, err := r.client.Repository(ctx, destRepo)
	if err != nil {
		return err
	}
	plan, err := r.planForCopy(ctx, target)
	if err != nil {
		return r.client.DescribeError(err, r.dst)
	}
	var prog *copyProgress
	if r.tty {
		prog = newCopyProgress(ctx, r.s.Err, r.status, blobLabels(plan), false)
		defer prog.stop()
		prog.phase("copy", plan.Total.Fetch+plan.Total.Local)
	}
	var mu sync.Mutex
	done := newOutcomes()
	r.logf("importing %d images...", len(r.g.Nodes))
	res, err := graph.CopyToRepo(ctx, r.src, r.g, target, graph.CopyOptions{
		Concurrency:             o.concurrency,
		IncludeNonDistributable: o.includeNonDistributable,
		RepoBasedTags:           o.repoBasedTags,
		Plan:                    plan,
		DestRepo:                destRepo,
		SameRegistry:            func(repo string) bool { return registryHost(repo) == r.dst.Registry },
		OnCopy: func(n *graph.Node, skipped bool) {
			mu.Lock()
			defer mu.Unlock()
			suffix := "..."
			if skipped {
				suffix = " (already present)"
			}
			from := sourceOf(n) // where it is read from
			if r.fromFile {
				from = n.Ref // a layout holds everything; name it as first met
			}
			r.logf("importing %s -> %s@%s%s", from, destRepo, n.Desc.Digest, suffix)
		},
		OnWarning:  r.warn,
		OnBlob:     done.record,
		WrapReader: r.wrapReader(prog),
	})
	if prog != nil {
		prog.stop()
	}
	if err != nil {
		return r.sparseHint(r.client.DescribeError(err, r.dst))
	}
	r.logf("imported %d images", len(r.g.Nodes))
	if o.lockOutput != "" {
		if err := writeCopyLock(res, o.lockOutput); err != nil {
			return err
		}
	}
	if o.json {
		dest := destinationJSON{Type: "repository", Repository: destRepo, LockOutput: o.lockOutput}
		return writeJSON(r.s.Out, copyResult(plan, dest, destRepo, done, r.rec, nil))
	}
	return nil
}

// copyToLayout makes every blob of the graph local and writes --to-tar or
// --to-oci-layout from the store, file to file, while the blobs download
// (see startLayout): only what was not written by then, a tar's end of
// hash and a directory's index.json are left after the downloads.
func (r *copyRun) copyToLayout(ctx context.Context) error {
	o, st, g := r.o, r.st, r.g
	plan, err := r.planForCopy(ctx, r.layoutDest())
	if err != nil {
		return err
	}
	var prog *copyProgress
	if r.tty {
		prog = newCopyProgress(ctx, r.s.Err, r.status, blobLabels(plan), false)
		defer prog.stop()
		prog.phase("fetch", gatherEstimate(plan))
	}
	opener := ocilayout.BlobOpenerFunc(st.Fetch)
	wopts := ocilayout.WriteOptions{Digests: st}
	early, err := r.startLayout(ctx, plan, opener, wopts)
	if err != nil {
		return r.layoutError(err)
	}
	defer early.abort() // nothing is left of a layout not committed
	gopts := graph.GatherOptions{
		SourceFillsLocal:        r.srcCached,
		Concurrency:             o.concurrency,
		IncludeNonDistributable: o.includeNonDistributable,
		OnWarning:               r.warn,
		WrapReader:              r.wrapReader(prog),
	}
	if early != nil {
		gopts.OnBlob = early.enqueue
	}
	gathered, err := graph.Gather(ctx, r.src, g, st, gopts)
	if err != nil {
		return r.layoutError(r.describeSourceError(err, r.g.Specs))
	}
	early.drain()
	index, err := ocilayout.NewIndex(layoutRoots(g, withLeftOut(gathered)))
	if err != nil {
		return r.layoutError(err)
	}
	var total int64
	for _, b := range gathered.Blobs {
		total += b.Size
	}
	path := o.toTar + o.toLayout
	r.logf("writing %s (%d blobs, %s)...", path, len(gathered.Blobs), humanBytes(total))
	if prog != nil {
		prog.phase("write", total)
		prog.advance(early.written())
		wopts.OnBlob = prog.blobDone
		early.report(prog.blobDone)
	}
	sum, err := early.finish(ctx, r.layoutOut(), gathered.Blobs, index, opener, wopts)
	if err != nil {
		return r.layoutError(err)
	}
	dest := destinationJSON{Type: "oci-layout", Path: path}
	if o.toTar != "" {
		dest = destinationJSON{Type: "tar", Path: path, SHA256: sum.Encoded()}
	}
	if prog != nil {
		prog.stop() // before stdout, which may be the same terminal
	}
	if dest.SHA256 != "" && !o.json {
		fmt.Fprintf(r.s.Out, "%s  %s\n", dest.SHA256, o.toTar)
	}
	r.logf("wrote %s: %d images, %d blobs, %s", path, len(g.Nodes), len(gathered.Blobs), humanBytes(total))
	if o.json {
		had := map[digest.Digest]bool{}
		for _, pb := range plan.Blobs {
			had[pb.Desc.Digest] = pb.AtDest
		}
		return writeJSON(r.s.Out, copyResult(plan, dest, "", nil, r.rec, func(d digest.Digest) bool { return had[d] }))
	}
	return nil
}

// gatherEstimate is what Gather will read from the source: the blobs the
// store lacks, and every manifest again.
func gatherEstimate(p *graph.Plan) int64 {
	n := p.Total.Fetch
	for _, pb := range p.Blobs {
		if pb.FromLocal && isManifestType(pb.Desc.MediaType) {
			n += pb.Desc.Size
		}
	}
	return n
}

// layoutDirBlobs answers Exists for the blobs of an OCI layout directory
// as WriteDir decides to keep them: a regular file of the right size.
type layoutDirBlobs struct{ dir string }

func (l layoutDirBlobs) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	if desc.Digest.Validate() != nil {
		return false, nil
	}
	fi, err := os.Stat(filepath.Join(l.dir, "blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded()))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return fi.Mode().IsRegular() && fi.Size() == desc.Size, nil
}

func (l layoutDirBlobs) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return nil, fmt.Errorf("blob %s: layout destination is not read: %w", desc.Digest, errdef.ErrUnsupported)
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

// describeSourceError says, for an access refused (401/403) while reading
// the source, which registry refused and which credentials were tried. The
// registry client names the registry from the refused request itself, so
// the first root's reference only stands in when the error does not say.
func (r *copyRun) describeSourceError(err error, roots []graph.RootSpec) error {
	if r.fromFile || len(roots) == 0 {
		return err
	}
	ref, perr := r.client.ParseReference(roots[0].Ref)
	if perr != nil {
		return err
	}
	return r.client.DescribeError(err, ref)
}

// layoutError says which output failed: the tar or the layout directory
// being written (the blobs it needs are fetched into the store first).
func (r *copyRun) layoutError(err error) error {
	if r.o.toTar != "" {
		return fmt.Errorf("write tar %s: %w", r.o.toTar, err)
	}
	return fmt.Errorf("write OCI layout %s: %w", r.o.toLayout, err)
}

// parsePlatforms parses the --platform values.
func parsePlatforms(values []string) ([]ocispec.Platform, error) {
	var out []ocispec.Platform
	for _, v := range values {
		p, err := graph.ParsePlatform(v)
		if err != nil {
			return nil, fmt.Errorf("--platform %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// errRewriteBundle refuses --rewrite-index for a bundle source.
func errRewriteBundle(what string) error {
	return fmt.Errorf("--rewrite-index cannot be used with %s: a bundle's .imgpkg/images.yml pins each index it lists by digest, "+
		"so a rewritten index would no longer match it; copy without --rewrite-index: each index is then copied sparse and keeps its digest", what)
}

// sourceOf is where a node is read from: its Location, or that of the
// original of an index --rewrite-index replaced.
func sourceOf(n *graph.Node) string {
	if n.Rewrite != nil {
		return n.Repo + "@" + n.Rewrite.Original.Digest.String()
	}
	return n.Location()
}

// refAt names a node's index as REF@DIGEST (REF alone when it has a digest).
func refAt(ref string, d digest.Digest) string {
	if strings.Contains(ref, "@") {
		return ref
	}
	return ref + "@" + d.String()
}

// reportLeftOut says, for each index the platform filter changes, what it
// leaves out, or that it was rewritten and its new digest.
func (r *copyRun) reportLeftOut() {
	asked := strings.Join(r.o.platforms, ", ")
	for _, n := range r.g.Nodes {
		if len(n.LeftOut) == 0 {
			continue
		}
		if rw := n.Rewrite; rw != nil {
			r.logf("index %s rewritten for platforms %s: now %s", refAt(n.Ref, rw.Original.Digest), asked, n.Desc.Digest)
			if len(rw.Detached) > 0 {
				r.logf("index %s: %s of the original index left out (they name its digest)", refAt(n.Ref, rw.Original.Digest), count(len(rw.Detached), "signature or referrer", "signatures and referrers"))
			}
			continue
		}
		r.logf("index %s keeps its digest; left out: %s", refAt(n.Ref, n.Desc.Digest), leftOutLabels(n.LeftOut))
	}
}

// leftOutLabels names the children left out: their platforms, attestations
// counted, nested indexes by digest, those the source lacks marked.
func leftOutLabels(children []graph.LeftOutChild) string {
	var names []string
	attestations := 0
	for _, c := range children {
		switch {
		case c.Attestation:
			attestations++
			continue
		case c.Desc.Platform != nil:
			names = append(names, graph.FormatPlatform(*c.Desc.Platform))
		default:
			names = append(names, "index "+c.Desc.Digest.Algorithm().String()+":"+shortDigest(c.Desc.Digest))
		}
		if c.Absent {
			names[len(names)-1] += " (not in the source)"
		}
	}
	if attestations > 0 {
		names = append(names, plural(attestations, "attestation"))
	}
	return strings.Join(names, ", ")
}

// sparseHint adds to a refused sparse index what else the user can do.
func (r *copyRun) sparseHint(err error) error {
	if !errors.Is(err, graph.ErrSparseIndexRefused) {
		return err
	}
	for _, n := range r.g.Roots {
		if n.Bundle {
			return fmt.Errorf("%w; --rewrite-index is not possible here: the bundle's images.yml pins the index digest", err)
		}
	}
	return fmt.Errorf("%w; or copy with --rewrite-index to write a new index listing only the platforms copied (its digest changes)", err)
}
