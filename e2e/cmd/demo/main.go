// Command demo runs the air-gapped workflow of the imgpkg documentation
// (../shared/seeds/air-gapped-workflow.md: Step 1, Step 2 Option 1 and
// Step 3) with ferry, against two CNCF distribution registries started in
// this process, and prints every command with its output.
//
// It needs nothing but Go: the registries run in process on 127.0.0.1, the
// sample images are pushed with oras-go, and ferry is built from this
// checkout into a temporary directory. Everything it creates lives in one
// temporary directory, removed on exit and on Ctrl-C. It exits 1 when a
// step fails, 130 when interrupted.
//
// Run it from the repository root with `go tool task demo`, or from the e2e
// directory with `go run ./cmd/demo`. FERRY_DEMO_BINARY runs an existing
// ferry binary instead of building one.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, config{ferryBinary: os.Getenv("FERRY_DEMO_BINARY")})
	interrupted := ctx.Err() != nil
	stop()
	if err == nil {
		return
	}
	if interrupted || errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "\ndemo: interrupted; cleaned up")
		os.Exit(130)
	}
	fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %v\n", err)
	os.Exit(1)
}

// config tunes run; the zero value builds ferry from this checkout.
type config struct {
	// ferryBinary is an existing ferry binary to run; empty builds one.
	ferryBinary string
}

// run plays the workflow, printing to out.
func run(ctx context.Context, out io.Writer, cfg config) (err error) {
	d, err := newDemo(ctx, out, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return d.play(ctx, workflow())
}
