package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/internal/registry"
)

func newTagCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tag",
		Short: "List and resolve tags",
		Long:  "List the tags of a repository and resolve a tag to its digest.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newTagListCmd(s), newTagResolveCmd(s))
	return cmd
}

type tagListOptions struct {
	imageRef     string
	digests      bool
	internalTags bool
	concurrency  int
	registry     registryFlags
}

func newTagListCmd(s streams) *cobra.Command {
	var o tagListOptions
	cmd := &cobra.Command{
		Use:     "list -i REPO",
		Aliases: []string{"ls"},
		Short:   "List tags for image",
		Long: `List the tags of the repository of REPO (a tag or digest in REPO is ignored),
sorted, one per line; with --digests each tag is followed by its digest.

The tags ferry and imgpkg create for their own use, ending in .imgpkg
(sha256-<hex>.imgpkg, sha256-<hex>.image-locations.imgpkg and the
--repo-based-tags ones), are hidden unless --imgpkg-internal-tags is given.`,
		Example: `  ferry tag list -i registry.corp.com/apps/simple-app-bundle
  ferry tag list -i registry.corp.com/apps/simple-app-bundle --digests --imgpkg-internal-tags`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTagList(cmd.Context(), s, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.imageRef, "image", "i", "", "Set image reference (example: docker.io/dkalinin/app1)")
	// Resolving is one request per tag (there is no bulk API), so it is optional.
	f.BoolVar(&o.digests, "digests", false, "Include digests")
	f.BoolVar(&o.internalTags, "imgpkg-internal-tags", false, "Include internal .imgpkg tags")
	f.IntVar(&o.concurrency, "concurrency", 5, "Concurrency (tags resolved at once with --digests)")
	o.registry.bind(f)
	return cmd
}

// isInternalTag reports whether tag is one imgpkg hides by default: any tag
// ending in ".imgpkg".
func isInternalTag(tag string) bool {
	return strings.HasSuffix(tag, ".imgpkg")
}

func runTagList(ctx context.Context, s streams, o *tagListOptions) error {
	if o.imageRef == "" {
		return errors.New("expected --image (-i)")
	}
	client, err := o.registry.client()
	if err != nil {
		return err
	}
	ref, err := client.ParseReference(o.imageRef)
	if err != nil {
		return err
	}
	ref.Reference = ""
	repo, err := client.RepositoryFor(ctx, ref)
	if err != nil {
		return err
	}
	var tags []string
	err = repo.Tags(ctx, "", func(page []string) error {
		for _, t := range page {
			if o.internalTags || !isInternalTag(t) {
				tags = append(tags, t)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tags of %s: %w", ref, client.DescribeError(err, ref))
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	if !o.digests {
		for _, t := range tags {
			if _, err := fmt.Fprintln(s.Out, t); err != nil {
				return err
			}
		}
		return nil
	}
	digests, err := resolveTags(ctx, client, repo, ref, tags, o.concurrency)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	for i, t := range tags {
		fmt.Fprintf(tw, "%s\t%s\n", t, digests[i])
	}
	return tw.Flush()
}

// resolveTags resolves every tag of repo to its digest, at most concurrency
// at a time, and returns the digests in the order of tags.
func resolveTags(ctx context.Context, client *registry.Client, repo *remote.Repository, ref registryReference, tags []string, concurrency int) ([]string, error) {
	if concurrency <= 0 {
		concurrency = 5
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]string, len(tags))
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(concurrency, len(tags)) {
		wg.Go(func() {
			for i := range next {
				desc, err := repo.Resolve(ctx, tags[i])
				if err != nil {
					once.Do(func() {
						tagRef := ref
						tagRef.Reference = tags[i]
						first = fmt.Errorf("resolve %s: %w", tagRef, client.DescribeError(err, ref))
						cancel()
					})
					continue
				}
				out[i] = desc.Digest.String()
			}
		})
	}
feed:
	for i := range tags {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

type tagResolveOptions struct {
	imageRef string
	registry registryFlags
}

func newTagResolveCmd(s streams) *cobra.Command {
	var o tagResolveOptions
	cmd := &cobra.Command{
		Use:   "resolve -i REF",
		Short: "Resolve tag to digest for image",
		Long: `Resolve REF (REPO:TAG, or REPO@DIGEST to check that it exists; a bare REPO
means REPO:latest) at the registry and print REPO@DIGEST.`,
		Example: `  ferry tag resolve -i registry.corp.com/apps/simple-app-bundle:v1.0.0`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTagResolve(cmd.Context(), s, &o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.imageRef, "image", "i", "", "Set image reference (example: docker.io/dkalinin/app1)")
	o.registry.bind(f)
	return cmd
}

func runTagResolve(ctx context.Context, s streams, o *tagResolveOptions) error {
	if o.imageRef == "" {
		return errors.New("expected --image (-i)")
	}
	client, err := o.registry.client()
	if err != nil {
		return err
	}
	ref, err := client.ParseReference(o.imageRef)
	if err != nil {
		return err
	}
	if ref.Reference == "" {
		ref.Reference = "latest"
	}
	repo, err := client.RepositoryFor(ctx, ref)
	if err != nil {
		return err
	}
	desc, err := repo.Resolve(ctx, ref.Reference)
	if err != nil {
		err = client.DescribeError(err, ref)
		if !strings.Contains(err.Error(), ref.String()) { // oras-go's not found names it already
			err = fmt.Errorf("resolve %s: %w", ref, err)
		}
		return err
	}
	_, err = fmt.Fprintf(s.Out, "%s/%s@%s\n", ref.Registry, ref.Repository, desc.Digest)
	return err
}
