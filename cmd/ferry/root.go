package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "develop"

// streams are the writers a command prints to: progress and errors on Err,
// results on Out. Commands never write to os.Stdout directly.
type streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// NewRootCmd builds a fresh command tree writing to s.
func NewRootCmd(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "ferry moves imgpkg bundles and their images into registries you control",
		Long: `ferry copies a Carvel imgpkg bundle and every image it references, unchanged,
between registries, OCI image-layout directories and OCI image-layout tarballs.
It keeps imgpkg's command-line surface, lock files and registry conventions.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	addDebugFlag(root, s)
	root.AddCommand(
		newVersionCmd(s),
		newPushCmd(s),
		newCopyCmd(s),
		newPullCmd(s),
		newDescribeCmd(s),
		newTagCmd(s),
		newStoreCmd(s),
		newTarCmd(s),
	)
	return root
}

// Execute runs ferry with args and returns the process exit status.
func Execute(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	s := streams{In: in, Out: out, Err: errOut}
	root := NewRootCmd(s)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(errOut, "ferry: Error: %s\n", err)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return 130
	}
	return 1
}
