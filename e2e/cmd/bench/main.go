// Command bench measures ferry beside the tools people use for the same jobs
// (imgpkg, crane, oras, regctl, skopeo) and writes a Markdown table, the raw
// samples as JSON and a PNG chart. It is not part of the test task: run it
// with `go tool task bench` from the repository root (Linux only: peak RSS
// comes from wait4's rusage).
//
// It runs registries (cmd/registry, a CNCF distribution registry) as
// separate processes on 127.0.0.1: the source, which gets pseudo-random
// fixtures (a big image of 10 layers; a bundle of 100 small images sharing a
// base layer; with CASES=e a bundle of the big image plus 3 smaller ones),
// and a new, empty destination for every run into a registry. It builds
// ferry from this checkout, every tool runs under the small rusage helper
// (cmd/bench/rusage, for an honest peak RSS), and it runs interleaved rounds
// of every tool on these cases:
//
//	a       registry → registry, the big image
//	b-cold  registry → OCI layout tar, ferry with an empty store
//	b-warm  the same with the store the setup filled (peers have no store:
//	        their b-cold runs are shown again)
//	c       OCI layout tar → registry (each tool reads what it writes in b,
//	        produced once before the rounds)
//	d-repo  the 100-image bundle, registry → registry
//	d-tar   the 100-image bundle, registry → tar
//	e-repo, e-tar  the same for the bundle of the big image and 3 smaller
//	        ones (only when CASES names e)
//
// Peers that cannot copy a bundle copy its images one by one, sequentially,
// as a user's script would; their times, CPU and peak RSS are the sum, the
// sum and the maximum over the script.
//
// Knobs (environment): SIZE of the big image (default 1GiB; 64MiB for a
// smoke run), ROUNDS (default 3), CASES (comma-separated case letters or row
// names, default a,b,c,d), TOOLS (default all found), LATENCY (default 0:
// none; with 20ms every tool talks to every registry through a proxy in
// this process that waits 20ms before forwarding each request, as if the
// registries were 20ms away; fixtures are pushed and outputs checked
// directly), RESULTS (the results directory; default
// bench/results/<UTC timestamp> under the repository root, relative paths
// are taken from the root), TIMEOUT (per process, default 10m),
// FERRY_BENCH_BINARY (an existing ferry binary instead of building one).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg, err := configFromEnv(os.Getenv)
	if err == nil {
		err = run(ctx, cfg, os.Stdout, os.Stderr)
	}
	interrupted := ctx.Err() != nil
	stop()
	if err == nil {
		return
	}
	if interrupted || errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench: interrupted; registries stopped and temporary files removed")
		os.Exit(130)
	}
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}
