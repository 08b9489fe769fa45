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
	"runtime/pprof"
	"sync"
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
	stopProfile := startCPUProfile(os.Getenv("FERRY_CPUPROFILE"), os.Stderr)
	ctx, stop := interruptible(context.Background(), os.Stderr, func() { stopProfile(); os.Exit(exitInterrupted) })
	code := Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	stopProfile()
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

// startCPUProfile writes a CPU profile of the whole run to path (for `go tool
// pprof`) when path is not empty: FERRY_CPUPROFILE, a developer's knob, not
// a documented option. A profile that cannot be started is reported on
// errOut and the run goes on. The returned function ends the profile; it may
// be called more than once, from any goroutine.
func startCPUProfile(path string, errOut io.Writer) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(errOut, "ferry: FERRY_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(errOut, "ferry: FERRY_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
}
