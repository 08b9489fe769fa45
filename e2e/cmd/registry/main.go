// Command registry serves a CNCF distribution registry on 127.0.0.1 over
// plain HTTP, configured as the e2e tests configure theirs
// (harness.NewRegistry: filesystem storage, deletes enabled,
// non-distributable layers with http(s) URLs accepted). The benchmark
// (cmd/bench) runs two of them as separate processes, so that their CPU time
// is not counted as the tool's under test.
//
// Usage:
//
//	registry -root DIR
//
// It listens on a free port, prints its address ("127.0.0.1:PORT") as the
// first line of standard output once it accepts connections, and serves until
// SIGINT or SIGTERM. The storage lives under DIR/storage and is kept.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func main() {
	root := flag.String("root", "", "directory for the registry's files (required)")
	flag.Parse()
	if *root == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: registry -root DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg, err := harness.NewRegistry(harness.RegistryOptions{Dir: *root})
	if err != nil {
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(reg.Host)
	<-ctx.Done()
	if err := reg.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		os.Exit(1)
	}
}
