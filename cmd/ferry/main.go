// Command ferry moves Carvel imgpkg bundles and every image they reference,
// as one OCI artifact graph, between registries, OCI image layouts and tarballs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
)

// exitInterrupted is the exit status of a run stopped by SIGINT or SIGTERM
// (128 + SIGINT, as shells report Ctrl-C).
const exitInterrupted = 130

// errInterrupted is the cause of the context cancellation on a first signal.
var errInterrupted = errors.New("interrupted")

func main() {
	// containerd's content store logs through logrus on its own (for example
	// a warning that fs-verity is unsupported); ferry reports what matters.
	logrus.SetOutput(io.Discard)
	ctx, stop := interruptible(context.Background(), os.Stderr, func() { os.Exit(exitInterrupted) })
	code := Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if code != 0 && errors.Is(context.Cause(ctx), errInterrupted) {
		// Stopped by a signal, whatever error the cancellation surfaced as.
		code = exitInterrupted
	}
	os.Exit(code)
}

// interruptible returns a context canceled (cause errInterrupted) by the
// first SIGINT or SIGTERM, so that the command stops cleanly: downloads keep
// their partial data for the next run and temporary files are removed. A
// second signal calls exitNow at once. stop ends the signal handling.
func interruptible(parent context.Context, errOut io.Writer, exitNow func()) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		fmt.Fprintln(errOut, "ferry: interrupted: stopping (partial downloads are kept; interrupt again to exit at once)")
		cancel(errInterrupted)
		select {
		case <-sigs:
			exitNow()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}
