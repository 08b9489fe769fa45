package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/lockfile"
)

type pullOptions struct {
	bundleRef          string
	imageRef           string
	lockPath           string
	output             string
	recursive          bool
	imageIsBundleCheck bool
	concurrency        int
	registry           registryFlags
	store              storeFlags
}

func newPullCmd(s streams) *cobra.Command {
	var o pullOptions
	cmd := &cobra.Command{
		Use:   "pull (-b REF | -i REF | --lock FILE) -o DIR",
		Short: "Pull a bundle or an image into a directory",
		Long: `Pull a bundle (or image) and extract its contents into DIR, which is replaced.
When every image of a bundle is in the bundle's repository (for example after
'ferry copy --to-repo'), .imgpkg/images.yml is rewritten to point there.`,
		Example: `  ferry pull -b registry.corp.com/apps/simple-app-bundle:v1.0.0 -o /tmp/bundle
  ferry pull -b registry.corp.com/apps/simple-app-bundle:v1.0.0 -o /tmp/bundle -r`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPull(cmd, s, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.bundleRef, "bundle", "b", "", "Set bundle reference (example: docker.io/dkalinin/app1-bundle)")
	f.StringVarP(&o.imageRef, "image", "i", "", "Set image reference (example: docker.io/dkalinin/app1)")
	f.StringVar(&o.lockPath, "lock", "", "BundleLock of the bundle to pull")
	f.StringVarP(&o.output, "output", "o", "", "Output directory path (it is replaced)")
	f.BoolVarP(&o.recursive, "recursive", "r", false, "Recursively pull nested bundles into .imgpkg/bundles/sha256-<hex>/")
	f.BoolVar(&o.imageIsBundleCheck, "image-is-bundle-check", true, "Error when image is a bundle (disable to pull a bundle's raw contents with -i)")
	f.IntVar(&o.concurrency, "concurrency", 5, "Concurrency")
	o.registry.bind(f)
	o.store.bind(f, true)
	return cmd
}

func runPull(cmd *cobra.Command, s streams, o *pullOptions) error {
	ctx := cmd.Context()
	given := 0
	for _, v := range []string{o.bundleRef, o.imageRef, o.lockPath} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return errors.New("expected exactly one source: --bundle (-b), --image (-i) or --lock")
	}
	if o.output == "" {
		return errors.New("expected --output (-o)")
	}
	switch filepath.Clean(o.output) {
	case "/", ".", "..":
		return fmt.Errorf("--output %q: refusing to replace this directory; give a dedicated one", o.output)
	}
	ref, kind := o.bundleRef, graph.RootBundle
	switch {
	case o.imageRef != "":
		ref, kind = o.imageRef, graph.RootImage
	case o.lockPath != "":
		l, err := lockfile.ReadBundleLock(o.lockPath)
		if err != nil {
			return err
		}
		ref = l.Bundle.Image
	}
	client, err := o.registry.client()
	if err != nil {
		return err
	}
	st, err := o.store.open(cmd)
	if err != nil {
		return err
	}
	res, err := graph.Pull(ctx, registrySource{client: client, store: st}, ref, kind, o.output, graph.PullOptions{
		Recursive:       o.recursive,
		SkipBundleCheck: !o.imageIsBundleCheck,
		Concurrency:     o.concurrency,
		OnMessage:       func(msg string) { fmt.Fprintln(s.Err, msg) },
	})
	if err != nil {
		if parsed, perr := client.ParseReference(ref); perr == nil {
			return client.DescribeError(err, parsed)
		}
		return err
	}
	fmt.Fprintln(s.Out, res.Repo+"@"+res.Digest.String())
	fmt.Fprintln(s.Err, "Succeeded")
	return nil
}
