package crash_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// partials runs `ferry store du` and returns the number of partial downloads.
func partials(t *testing.T, env []string) int {
	t.Helper()
	res := harness.RunOK(t, env, "store", "du")
	m := regexp.MustCompile(`(?m)^partials: +(\d+) `).FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("ferry store du: %q", res.Stdout)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// signalWhen starts ferry, waits until ready reports true (polled every
// 2 ms), sends sig, and returns the process once it has ended and how long
// it took to end after the signal.
func signalWhen(t *testing.T, env []string, args []string, ready func() bool, sig syscall.Signal, times int) (*process, time.Duration) {
	t.Helper()
	pr := start(t, env, args...)
	deadline := time.After(60 * time.Second)
	for !ready() {
		select {
		case <-pr.done:
			t.Fatalf("ferry ended before the signal:\n%s", pr.out.String())
		case <-deadline:
			t.Fatal("signal point not reached in 60 s")
		case <-time.After(2 * time.Millisecond):
		}
	}
	sent := time.Now()
	for i := range times {
		if err := pr.cmd.Process.Signal(sig); err != nil {
			if i > 0 && errors.Is(err, os.ErrProcessDone) {
				break // it exited on an earlier signal, before this one was sent
			}
			t.Fatal(err)
		}
	}
	select {
	case <-pr.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("ferry still running 30 s after %s:\n%s", sig, pr.out.String())
	}
	return pr, time.Since(sent)
}

// Ctrl-C (SIGINT) or SIGTERM in the middle of a download stops ferry
// cleanly: exit status 130, a message saying so, the partial download kept
// in the store (which still verifies), nothing tagged at the destination;
// the next run continues the download from where it stopped.
func TestInterruptKeepsPartial(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(ctx, t, 50)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			env := []string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}
			repo := "apps/" + strings.ReplaceAll(sig.String(), " ", "-")
			args := []string{"copy", "-b", w.bundleRef, "--to-repo", w.dst.Ref(repo)}
			w.srcProxy.Reset()
			w.srcProxy.SetFault(func(r *http.Request) harness.Fault {
				if isBlobGetOf(w.big.Digest)(r) {
					return harness.Throttle(2 * mib)
				}
				return harness.Fault{}
			})
			pr, took := signalWhen(t, env, args, func() bool {
				return w.srcProxy.Stats().BlobBytesServedByDigest[w.big.Digest] >= w.big.Size/2
			}, sig, 1)
			served := w.srcProxy.Stats().BlobBytesServedByDigest[w.big.Digest]
			out := pr.out.String()
			t.Logf("%s after %d of %d bytes of the large layer; ferry ended %s later:\n%s", sig, served, w.big.Size, took.Round(time.Millisecond), out)
			if code := pr.cmd.ProcessState.ExitCode(); code != 130 {
				t.Errorf("exit status %d, want 130", code)
			}
			if !strings.Contains(out, "ferry: interrupted") {
				t.Errorf("no interruption message in the output")
			}
			if n := partials(t, env); n != 1 {
				t.Errorf("%d partial downloads in the store after %s, want 1 (the large layer)", n, sig)
			}
			if res := harness.Run(t, env, "store", "verify"); res.ExitCode != 0 {
				t.Errorf("store verify: %s", res)
			}
			if _, err := w.dst.Repository(t, repo).Resolve(ctx, "v1"); err == nil {
				t.Errorf("%s:v1 tagged by an interrupted copy", repo)
			}

			w.srcProxy.SetFault(nil)
			w.srcProxy.Reset()
			harness.RunOK(t, env, args...)
			starts := rangeStartsOf(w.srcProxy.Stats(), w.big.Digest.String())
			t.Logf("the next run fetched the large layer from %v", starts)
			if len(starts) != 1 || starts[0] <= 0 || starts[0] > served {
				t.Errorf("the next run's GETs of the large layer start at %v, want one range from the byte reached (at most %d)", starts, served)
			}
			if n := partials(t, env); n != 0 {
				t.Errorf("%d partials after the resumed run", n)
			}
			w.outcome(ctx, t, repo)
		})
	}
}

// rangeStartsOf returns where each GET of the blob with digest d started
// (0 for a whole GET).
func rangeStartsOf(s harness.Stats, d string) []int64 {
	var out []int64
	for _, rec := range s.Log {
		if rec.Method != http.MethodGet || !strings.HasSuffix(rec.Path, "/"+d) {
			continue
		}
		v, _ := strings.CutPrefix(rec.Range, "bytes=")
		first, _, _ := strings.Cut(v, "-")
		n, _ := strconv.ParseInt(first, 10, 64)
		out = append(out, n)
	}
	return out
}

// An interrupted copy into a tarball leaves no tarball and no temporary
// file, whether it is interrupted while downloading or (best effort: a small
// tarball is written in milliseconds) while writing the tarball.
func TestInterruptLeavesNoTarball(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(ctx, t, 51)

	t.Run("while downloading", func(t *testing.T) {
		env := []string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}
		out := filepath.Join(t.TempDir(), "bundle.tar")
		w.srcProxy.Reset()
		w.srcProxy.SetFault(func(r *http.Request) harness.Fault {
			if isBlobGetOf(w.big.Digest)(r) {
				return harness.Throttle(2 * mib)
			}
			return harness.Fault{}
		})
		defer w.srcProxy.SetFault(nil)
		pr, _ := signalWhen(t, env, []string{"copy", "-b", w.bundleRef, "--to-tar", out}, func() bool {
			return w.srcProxy.Stats().BlobBytesServedByDigest[w.big.Digest] >= w.big.Size/3
		}, syscall.SIGINT, 1)
		if code := pr.cmd.ProcessState.ExitCode(); code != 130 {
			t.Errorf("exit status %d, want 130:\n%s", code, pr.out.String())
		}
		if left := leftovers(t, filepath.Dir(out)); len(left) > 0 {
			t.Errorf("left in the output directory: %v", left)
		}
		if n := partials(t, env); n != 1 {
			t.Errorf("%d partials, want 1", n)
		}
	})

	t.Run("while writing", func(t *testing.T) {
		const tries = 5
		caught := 0
		for i := range tries {
			env := []string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}
			dir := t.TempDir()
			out := filepath.Join(dir, "bundle.tar")
			pr := start(t, env, "copy", "-b", w.bundleRef, "--to-tar", out)
			signaled := false
			for !signaled && !isDone(pr) {
				// The first file in dir is the temporary tarball.
				if entries, _ := os.ReadDir(dir); len(entries) > 0 {
					_ = pr.cmd.Process.Signal(syscall.SIGINT)
					signaled = true
				}
				time.Sleep(100 * time.Microsecond)
			}
			<-pr.done
			code := pr.cmd.ProcessState.ExitCode()
			switch {
			case signaled && code == 130:
				caught++
				if left := leftovers(t, dir); len(left) > 0 {
					t.Errorf("try %d: interrupted while writing, left %v", i, left)
				}
			case code == 0:
				// Finished before the signal took effect: the tarball is whole.
				if left := leftovers(t, dir, "bundle.tar"); len(left) > 0 {
					t.Errorf("try %d: complete run left %v", i, left)
				}
			default:
				t.Errorf("try %d: exit status %d:\n%s", i, code, pr.out.String())
			}
		}
		t.Logf("interrupted while the tarball was written in %d of %d tries", caught, tries)
	})
}

func isDone(p *process) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// A second Ctrl-C exits at once, with status 130, whatever the first one
// was still cleaning up.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(ctx, t, 52)
	env := []string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}
	w.srcProxy.SetFault(func(r *http.Request) harness.Fault {
		if isBlobGetOf(w.big.Digest)(r) {
			return harness.Throttle(mib)
		}
		return harness.Fault{}
	})
	pr, took := signalWhen(t, env, []string{"copy", "-b", w.bundleRef, "--to-repo", w.dst.Ref("apps/twice")}, func() bool {
		return w.srcProxy.Stats().BlobBytesServedByDigest[w.big.Digest] > 0
	}, syscall.SIGINT, 2)
	t.Logf("two SIGINTs: ferry ended %s later:\n%s", took.Round(time.Millisecond), pr.out.String())
	if code := pr.cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit status %d, want 130", code)
	}
	if took > 5*time.Second {
		t.Errorf("ferry took %s to exit after two interrupts", took)
	}
	if res := harness.Run(t, env, "store", "verify"); res.ExitCode != 0 {
		t.Errorf("store verify: %s", res)
	}
}
