package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// Names in the registries, after the seed document (index.docker.io/user1/...
// becomes SOURCE/user1/..., registry.corp.com/apps/... becomes DEST/apps/...).
const (
	bundleRepo  = "user1/simple-app-bundle"
	bundleTag   = "v1.0.0"
	destRepo    = "apps/simple-app-bundle"
	airgapRepo  = "airgapped/simple-app-bundle" // where Option 2 imports the tarball
	ferryRunCap = 5 * time.Minute               // one ferry command
)

// step is one part of the workflow. Steps run in order; the first error
// stops the demo. A step with pending set is announced, not run: that is
// where a command ferry does not have yet will go.
type step struct {
	// title is the heading, in the words of the seed document.
	title string
	// pending, when not empty, is printed instead of running anything.
	pending string
	// run does the step.
	run func(ctx context.Context, d *demo) error
}

// workflow is the list of steps the demo plays.
func workflow() []step {
	return []step{
		{title: "Step 1: Creating the bundle and pushing it to the source registry", run: createAndPushBundle},
		{title: "Step 2, Option 1: Copying from a location connected to both registries", run: copyToRepo},
		{title: "Step 2, Option 2: With intermediate tarball", run: copyThroughTarball},
		{title: "Step 3: Pulling bundle from destination registry", run: pullFromDestination},
	}
}

// demo holds what the steps share.
type demo struct {
	out   *trackingWriter
	work  string // temporary directory holding everything below
	home  string // HOME of the ferry commands
	ferry string // ferry binary
	src   *harness.Registry
	dst   *harness.Registry
	start time.Time

	images       []*sampleImage // pushed by step 1
	bundleDigest digest.Digest  // set by step 1
	pulledDir    string         // set by step 3
}

// newDemo creates the temporary directory, starts both registries and
// builds ferry. On error it has cleaned up already.
func newDemo(ctx context.Context, out io.Writer, cfg config) (_ *demo, err error) {
	d := &demo{out: &trackingWriter{w: out}, start: time.Now()}
	defer func() {
		if err != nil {
			_ = d.close()
		}
	}()
	if d.work, err = os.MkdirTemp("", "ferry-demo-"); err != nil {
		return nil, err
	}
	d.home = filepath.Join(d.work, "home")
	for _, dir := range []string{d.home, filepath.Join(d.home, ".docker")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}

	d.printf("ferry demo: the air-gapped workflow of the imgpkg documentation, played with ferry\n")
	d.printf("against two registries running inside this process. Temporary files: %s\n\n", d.work)

	if d.src, err = harness.NewRegistry(harness.RegistryOptions{Dir: filepath.Join(d.work, "source-registry")}); err != nil {
		return nil, fmt.Errorf("source registry: %w", err)
	}
	if d.dst, err = harness.NewRegistry(harness.RegistryOptions{Dir: filepath.Join(d.work, "destination-registry")}); err != nil {
		return nil, fmt.Errorf("destination registry: %w", err)
	}
	d.printf("  source registry       %-21s (plays index.docker.io)\n", d.src.Host)
	d.printf("  destination registry  %-21s (plays registry.corp.com)\n", d.dst.Host)

	if cfg.ferryBinary != "" {
		if d.ferry, err = filepath.Abs(cfg.ferryBinary); err != nil {
			return nil, err
		}
		d.printf("  ferry                 %s\n", d.ferry)
	} else {
		began := time.Now()
		if d.ferry, err = harness.BuildFerry(ctx, filepath.Join(d.work), false); err != nil {
			return nil, fmt.Errorf("build ferry: %w", err)
		}
		d.printf("  ferry                 built from ../cmd/ferry in %s\n", time.Since(began).Round(100*time.Millisecond))
	}
	return d, nil
}

// close stops the registries and removes the temporary directory.
func (d *demo) close() error {
	var errs []error
	for _, r := range []*harness.Registry{d.src, d.dst} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	if d.work != "" {
		errs = append(errs, os.RemoveAll(d.work))
	}
	return errors.Join(errs...)
}

// play runs the steps and prints the summary.
func (d *demo) play(ctx context.Context, steps []step) error {
	ran, pending := 0, 0
	for _, s := range steps {
		d.blankLine()
		d.printf("---\n## %s\n\n", s.title)
		if s.pending != "" {
			d.printf("(%s)\n", s.pending)
			pending++
			continue
		}
		if err := s.run(ctx, d); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		ran++
	}
	d.blankLine()
	d.printf("---\nSucceeded in %s (%d steps run, %d pending): bundle %s and its %d images went from %s\n",
		time.Since(d.start).Round(100*time.Millisecond), ran, pending, d.bundleDigest, len(d.images), d.src.Ref(bundleRepo))
	d.printf("to %s, and the pulled %s points there.\n",
		d.dst.Ref(destRepo), filepath.Join(d.pulledDir, ".imgpkg", "images.yml"))
	return nil
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// blankLine ends the output with an empty line, unless it does already.
func (d *demo) blankLine() {
	switch {
	case d.out.last == [2]byte{'\n', '\n'}:
	case d.out.last[1] == '\n':
		d.printf("\n")
	default:
		d.printf("\n\n")
	}
}

// trackingWriter remembers the last two bytes written, so that the demo
// separates sections by exactly one blank line whatever ferry printed.
// Not safe for concurrent use; exec serializes writes when stdout and
// stderr are the same writer.
type trackingWriter struct {
	w    io.Writer
	last [2]byte
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	switch {
	case n >= 2:
		t.last = [2]byte{p[n-2], p[n-1]}
	case n == 1:
		t.last = [2]byte{t.last[1], p[0]}
	}
	return n, err
}

// runFerry prints "$ ferry ARGS", then runs ferry with its stdout and stderr
// streamed to the demo's output. A non-zero exit is an error.
func (d *demo) runFerry(ctx context.Context, args ...string) error {
	d.printf("$ ferry %s\n\n", strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(ctx, ferryRunCap)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ferry, args...)
	cmd.Env = harness.Env(d.home)
	cmd.Dir = d.work
	cmd.Stdout, cmd.Stderr = d.out, d.out
	// Let ferry stop cleanly on Ctrl-C; kill it if it does not within 5 s.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	d.blankLine()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("ferry %s: %w", args[0], err)
	}
	return nil
}

// cat prints "$ cat PATH" and the file.
func (d *demo) cat(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d.printf("$ cat %s\n%s", path, b)
	d.blankLine()
	return b, nil
}

// repository opens repo on r with an anonymous oras-go client.
func repository(r *harness.Registry, repo string) (*remote.Repository, error) {
	rr, err := remote.NewRepository(r.Ref(repo))
	if err != nil {
		return nil, err
	}
	rr.Client = r.Client()
	rr.PlainHTTP = r.PlainHTTP()
	return rr, nil
}

// createAndPushBundle pushes the sample images (as a build pipeline would),
// writes the bundle directory and pushes it with ferry push.
func createAndPushBundle(ctx context.Context, d *demo) error {
	d.printf("A build pipeline pushed the application's images to the source registry (here with oras-go):\n\n")
	for _, img := range sampleImages() {
		repo, err := repository(d.src, img.repo)
		if err != nil {
			return err
		}
		if err := img.push(ctx, repo); err != nil {
			return fmt.Errorf("sample image %s: %w", img.repo, err)
		}
		d.images = append(d.images, img)
		d.printf("  %s@%s  (tag %s)\n", d.src.Ref(img.repo), img.digest, img.tag)
	}

	dir := filepath.Join(d.work, "simple-app-bundle")
	if err := writeBundleDir(dir, d.src, d.images); err != nil {
		return err
	}
	d.printf("\nThe bundle directory holds the configuration and .imgpkg/images.yml, which locks each image by digest:\n\n")
	if _, err := d.cat(filepath.Join(dir, "config", "config.yml")); err != nil {
		return err
	}
	if _, err := d.cat(filepath.Join(dir, ".imgpkg", "images.yml")); err != nil {
		return err
	}
	if err := d.runFerry(ctx, "push", "-b", d.src.Ref(bundleRepo)+":"+bundleTag, "-f", dir); err != nil {
		return err
	}
	repo, err := repository(d.src, bundleRepo)
	if err != nil {
		return err
	}
	desc, err := repo.Resolve(ctx, bundleTag)
	if err != nil {
		return fmt.Errorf("the pushed bundle: %w", err)
	}
	d.bundleDigest = desc.Digest
	return nil
}

// copyToRepo is Option 1: ferry copy -b SRC --to-repo DST.
func copyToRepo(ctx context.Context, d *demo) error {
	if err := d.runFerry(ctx, "copy", "-b", d.src.Ref(bundleRepo)+":"+bundleTag, "--to-repo", d.dst.Ref(destRepo)); err != nil {
		return err
	}
	repo, err := repository(d.dst, destRepo)
	if err != nil {
		return err
	}
	desc, err := repo.Resolve(ctx, bundleTag)
	if err != nil {
		return fmt.Errorf("%s:%s after the copy: %w", d.dst.Ref(destRepo), bundleTag, err)
	}
	if desc.Digest != d.bundleDigest {
		return fmt.Errorf("%s:%s is %s, want %s", d.dst.Ref(destRepo), bundleTag, desc.Digest, d.bundleDigest)
	}
	for _, img := range d.images {
		ok, err := repo.Exists(ctx, img.desc)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("image %s is not in %s after the copy", img.digest, d.dst.Ref(destRepo))
		}
	}
	var tags []string
	if err := repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	}); err != nil {
		return err
	}
	slices.Sort(tags)
	d.printf("The bundle, and all images referenced in the bundle, are copied to the destination registry,\n")
	d.printf("into the one repository %s, by digest. Its tags now (listed with oras-go):\n\n", d.dst.Ref(destRepo))
	for _, tag := range tags {
		d.printf("  %s\n", tag)
	}
	d.printf("\n(sha256-<hex>.imgpkg keeps each image from garbage collection; the .image-locations.imgpkg\n")
	d.printf("image records where the images came from, so a pull finds them without asking each one.)\n")
	return nil
}

// copyThroughTarball is Option 2: ferry copy -b SRC --to-tar FILE, then, as
// on the other side of an air gap (the source registry stopped, an empty
// content store), ferry copy --tar FILE --to-repo DST.
func copyThroughTarball(ctx context.Context, d *demo) error {
	tarPath := filepath.Join(d.work, "my-image.tar")
	d.printf("On a machine that sees the source registry, save the bundle to a tarball (a standard OCI image layout):\n\n")
	if err := d.runFerry(ctx, "copy", "-b", d.src.Ref(bundleRepo)+":"+bundleTag, "--to-tar", tarPath); err != nil {
		return err
	}
	d.printf("The tarball crosses the air gap. On the other side the source registry is out of reach\n")
	d.printf("(the demo stops it) and ferry starts with an empty content store:\n\n")
	d.src.Stop()
	otherStore := filepath.Join(d.work, "store-behind-the-gap")
	if err := d.runFerry(ctx, "copy", "--tar", tarPath, "--to-repo", d.dst.Ref(airgapRepo), "--store", otherStore); err != nil {
		return err
	}
	repo, err := repository(d.dst, airgapRepo)
	if err != nil {
		return err
	}
	desc, err := repo.Resolve(ctx, bundleTag)
	if err != nil {
		return fmt.Errorf("%s:%s after the import: %w", d.dst.Ref(airgapRepo), bundleTag, err)
	}
	if desc.Digest != d.bundleDigest {
		return fmt.Errorf("%s:%s is %s, want %s", d.dst.Ref(airgapRepo), bundleTag, desc.Digest, d.bundleDigest)
	}
	for _, img := range d.images {
		if ok, err := repo.Exists(ctx, img.desc); err != nil || !ok {
			return fmt.Errorf("image %s is not in %s after the import (%v)", img.digest, d.dst.Ref(airgapRepo), err)
		}
	}
	d.printf("The bundle and its images are in %s, with the same digests.\n", d.dst.Ref(airgapRepo))
	return nil
}

// pullFromDestination is Step 3: ferry pull, then the rewritten images.yml.
func pullFromDestination(ctx context.Context, d *demo) error {
	d.pulledDir = filepath.Join(d.work, "bundle")
	if err := d.runFerry(ctx, "pull", "-b", d.dst.Ref(destRepo)+":"+bundleTag, "-o", d.pulledDir); err != nil {
		return err
	}
	d.printf("Note that the .imgpkg/images.yml file was updated with the destination registry locations of the images.\n\n")
	raw, err := d.cat(filepath.Join(d.pulledDir, ".imgpkg", "images.yml"))
	if err != nil {
		return err
	}
	var lock struct {
		Images []struct {
			Image       string            `yaml:"image"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"images"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&lock); err != nil {
		return fmt.Errorf("pulled images.yml: %w", err)
	}
	if len(lock.Images) != len(d.images) {
		return fmt.Errorf("pulled images.yml lists %d images, want %d", len(lock.Images), len(d.images))
	}
	for i, img := range d.images {
		want := d.dst.Ref(destRepo) + "@" + img.digest.String()
		if got := lock.Images[i].Image; got != want {
			return fmt.Errorf("pulled images.yml: images[%d] is %s, want %s", i, got, want)
		}
		if got := lock.Images[i].Annotations[kbldID]; got != img.kbldID {
			return fmt.Errorf("pulled images.yml: images[%d] lost its %s annotation (%q)", i, kbldID, got)
		}
	}
	return nil
}
