// Command ferry moves Carvel imgpkg bundles and every image they reference,
// as one OCI artifact graph, between registries, OCI image layouts and tarballs.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
)

func main() {
	// containerd's content store logs through logrus on its own (for example
	// a warning that fs-verity is unsupported); ferry reports what matters.
	logrus.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
