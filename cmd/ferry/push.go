package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/lockfile"
)

type pushOptions struct {
	bundleRef           string
	imageRef            string
	files               []string
	fileExclusions      []string
	labels              []string
	lockOutput          string
	preservePermissions bool
	registry            registryFlags
}

func newPushCmd(s streams) *cobra.Command {
	var o pushOptions
	cmd := &cobra.Command{
		Use:   "push (-b BUNDLE_REF | -i IMAGE_REF) -f DIR...",
		Short: "Push files as a bundle or an image",
		Long: `Push a directory (or several) as an imgpkg bundle (-b) or a plain image (-i).
The layer is built deterministically, exactly as imgpkg builds it, so pushing the same
files with ferry or imgpkg gives the same digest.`,
		Example: `  # Push a bundle: the directory must hold .imgpkg/images.yml
  ferry push -b registry.corp.com/apps/simple-app-bundle:v1.0.0 -f ./bundle

  # Push a plain image and keep file permissions for group and others
  ferry push -i registry.corp.com/apps/config:v1 -f ./config --preserve-permissions`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPush(cmd, s, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.bundleRef, "bundle", "b", "", "Set bundle reference (example: docker.io/dkalinin/app1-bundle)")
	f.StringVarP(&o.imageRef, "image", "i", "", "Set image reference (example: docker.io/dkalinin/app1)")
	f.StringSliceVarP(&o.files, "file", "f", nil, "Set file or directory (format: /tmp/foo) (can be specified multiple times)")
	f.StringSliceVar(&o.fileExclusions, "file-exclusion", []string{".git"}, "Exclude file whose path, relative to the bundle root, matches (format: bundle.yml) (can be specified multiple times)")
	f.StringSliceVarP(&o.labels, "labels", "l", nil, "Set labels on image (format: key=value) (can be specified multiple times)")
	f.StringVar(&o.lockOutput, "lock-output", "", "Location to output the generated lockfile. Option only available when using --bundle")
	f.BoolVar(&o.preservePermissions, "preserve-permissions", false, "Preserve group and other permissions on files")
	o.registry.bind(f)
	return cmd
}

func runPush(cmd *cobra.Command, s streams, o *pushOptions) error {
	ctx := cmd.Context()
	if (o.bundleRef == "") == (o.imageRef == "") {
		return errors.New("expected exactly one of --bundle (-b) or --image (-i)")
	}
	if len(o.files) == 0 {
		return errors.New("expected at least one --file (-f)")
	}
	if o.lockOutput != "" && o.bundleRef == "" {
		return errors.New("--lock-output is only available with --bundle (-b)")
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	ref := o.imageRef
	if o.bundleRef != "" {
		ref = o.bundleRef
	}
	client, err := o.registry.client()
	if err != nil {
		return err
	}
	parsed, err := client.ParseReference(ref)
	if err != nil {
		return err
	}
	if strings.HasPrefix(parsed.Reference, "sha256:") {
		return fmt.Errorf("push reference %q names a digest; give a tag (or no tag for 'latest')", ref)
	}
	tag := parsed.Reference
	if tag == "" {
		tag = "latest"
	}
	img, err := bundle.Build(ctx, o.files, bundle.BuildOptions{
		Bundle:              o.bundleRef != "",
		Labels:              labels,
		FileExclusions:      o.fileExclusions,
		PreservePermissions: o.preservePermissions,
	})
	if err != nil {
		return err
	}
	defer img.Close()

	repo, err := client.Repository(ctx, ref)
	if err != nil {
		return err
	}
	if err := graph.PushImage(ctx, repo, img, tag); err != nil {
		return fmt.Errorf("pushing to %s: %w", ref, client.DescribeError(err, parsed))
	}
	repoName := parsed.Registry + "/" + parsed.Repository
	pushed := repoName + "@" + img.ManifestDesc.Digest.String()
	if o.lockOutput != "" {
		lock := lockfile.BundleLock{Bundle: lockfile.BundleRef{Image: pushed, Tag: tag}}
		data, err := lock.Marshal()
		if err != nil {
			return err
		}
		if err := lockfile.WriteFile(o.lockOutput, data); err != nil {
			return err
		}
	}
	fmt.Fprintf(s.Err, "Pushed '%s'\n", pushed)
	fmt.Fprintln(s.Out, pushed)
	fmt.Fprintln(s.Err, "Succeeded")
	return nil
}

// parseLabels reads key=value pairs given with -l.
func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: expected format key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
