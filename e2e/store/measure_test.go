package store_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// measureRun is one timed ferry run.
type measureRun struct {
	size     int64 // bytes of the image
	wall     time.Duration
	maxRSS   int64 // KiB
	served   int64 // blob bytes served by the source
	exitCode int
}

func (m measureRun) String() string {
	return fmt.Sprintf("%6.2f s wall, %7.1f MiB/s, peak RSS %4d MiB, %5d MiB fetched from the source",
		m.wall.Seconds(), float64(m.size)/mib/m.wall.Seconds(), m.maxRSS/1024, m.served/mib)
}

// TestMeasure1GiB measures ferry copy of a 1 GiB image (4 layers of 256 MiB
// of pseudo-random data) between two local registries (filesystem storage
// under the test's temp directory), through a counting proxy in front of the
// source: a cold copy (empty store), a warm copy (store full, new empty
// destination repository), a copy with --no-store, an in-process oras.Copy
// for comparison, and the bytes fetched by a run resumed after a run killed
// (SIGKILL) at about half, and after a run whose connections were all cut
// at half. Peak RSS is ferry's maximum resident set size, from GNU time
// (/usr/bin/time) when installed, else from wait4(2). It only runs with
// FERRY_E2E_MEASURE=1 (FERRY_E2E_MEASURE_REPS sets how many times the
// cold/warm/--no-store series runs, default 3); the figures go to the test
// log:
//
//	cd e2e && FERRY_E2E_MEASURE=1 go test -count=1 -v -timeout 30m -run TestMeasure1GiB ./store/
func TestMeasure1GiB(t *testing.T) {
	if os.Getenv("FERRY_E2E_MEASURE") != "1" {
		t.Skip("measurement; run with FERRY_E2E_MEASURE=1 go test -count=1 -v -timeout 30m -run TestMeasure1GiB ./store/")
	}
	ctx := t.Context()
	w := newWorld(t)
	bin := harness.Ferry(t)

	start := time.Now()
	b := w.src.Builder(1024)
	ref, graph := w.image(ctx, t, b, "src/big", 256*mib, 256*mib, 256*mib, 256*mib)
	var size int64
	for _, d := range graph {
		size += d.Size
	}
	blobBytes := size - graph[0].Size // the manifest is not a blob
	t.Logf("fixture: image of %d bytes (%d layers) pushed in %s; registries under %s and %s",
		size, len(graph)-2, time.Since(start).Round(time.Millisecond), w.src.RootDir, w.dst.RootDir)

	// Peak RSS comes from GNU time when it is installed: the rusage of a
	// child started by this (large) test process would report the test's
	// own high-water mark, which Linux carries across the vfork+exec.
	timeBin, _ := exec.LookPath("/usr/bin/time")
	run := func(store string, args ...string) measureRun {
		t.Helper()
		w.proxy.Reset()
		home := t.TempDir()
		rssFile := filepath.Join(home, "maxrss")
		cmd := exec.Command(bin, args...)
		if timeBin != "" {
			cmd = exec.Command(timeBin, append([]string{"-f", "%M", "-o", rssFile, bin}, args...)...)
		}
		cmd.Env = append(harness.Env(home), "FERRY_STORE="+store)
		cmd.Dir = home
		out, _ := os.Create(filepath.Join(home, "output"))
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		begin := time.Now()
		err := cmd.Run()
		m := measureRun{size: size, wall: time.Since(begin), served: w.proxy.Stats().BlobBytesServed, exitCode: cmd.ProcessState.ExitCode()}
		if timeBin != "" {
			b, _ := os.ReadFile(rssFile)
			fields := strings.Fields(string(b))
			if len(fields) > 0 {
				m.maxRSS, _ = strconv.ParseInt(fields[len(fields)-1], 10, 64)
			}
		} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.maxRSS = ru.Maxrss
		}
		if err != nil {
			output, _ := os.ReadFile(out.Name())
			t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, output)
		}
		return m
	}
	copyTo := func(store, repo string, extra ...string) measureRun {
		t.Helper()
		return run(store, append([]string{"copy", "-i", ref, "--to-repo", w.dst.Ref(repo)}, extra...)...)
	}

	reps := 3
	if v, err := strconv.Atoi(os.Getenv("FERRY_E2E_MEASURE_REPS")); err == nil && v > 0 {
		reps = v
	}
	for i := range reps {
		// Baseline: oras-go's Copy in this process, source registry to
		// destination registry, no proxy, no store.
		srcRepo, dstRepo := w.src.Repository(t, "src/big"), w.dst.Repository(t, fmt.Sprintf("baseline%d/big", i))
		begin := time.Now()
		if _, err := oras.Copy(ctx, srcRepo, graph[0].Digest.String(), dstRepo, "", oras.DefaultCopyOptions); err != nil {
			t.Fatalf("baseline oras.Copy: %v", err)
		}
		baseline := time.Since(begin)
		t.Logf("MEASURE baseline #%d oras.Copy in process:     %6.2f s wall, %7.1f MiB/s", i+1, baseline.Seconds(), float64(size)/mib/baseline.Seconds())

		store := filepath.Join(t.TempDir(), "store")
		cold := copyTo(store, fmt.Sprintf("cold%d/big", i))
		t.Logf("MEASURE cold copy #%d (empty store):          %s", i+1, cold)
		warm := copyTo(store, fmt.Sprintf("warm%d/big", i))
		t.Logf("MEASURE warm copy #%d (store full, empty repo): %s", i+1, warm)
		if warm.served != 0 {
			t.Errorf("warm copy fetched %d bytes from the source", warm.served)
		}
		none := copyTo(store, fmt.Sprintf("nostore%d/big", i), "--no-store")
		t.Logf("MEASURE --no-store copy #%d:                   %s", i+1, none)
		if err := os.RemoveAll(store); err != nil {
			t.Fatal(err)
		}
	}

	// Interrupted at about half: ferry is killed once the source has
	// served 512 MiB, then run again on the same store.
	store := filepath.Join(t.TempDir(), "store")
	w.proxy.Reset()
	w.store = store
	p := w.start(t, "copy", "-i", ref, "--to-repo", w.dst.Ref("resumed/big"))
	begin := time.Now()
	for w.proxy.Stats().BlobBytesServed < size/2 {
		select {
		case <-p.done:
			t.Fatalf("ferry ended before the kill:\n%s", p)
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Cross-check of the peak RSS, read by the kernel's own account.
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)); err == nil {
		for line := range strings.Lines(string(status)) {
			if strings.HasPrefix(line, "VmHWM:") || strings.HasPrefix(line, "VmRSS:") {
				t.Logf("MEASURE killed run just before the kill: %s", strings.Join(strings.Fields(line), " "))
			}
		}
	}
	_ = p.cmd.Process.Kill()
	p.wait(t, 30*time.Second)
	killedAt := w.proxy.Stats().BlobBytesServed
	u := w.du(t)
	t.Logf("MEASURE killed run: SIGKILL after %s, %d bytes (%.1f%%) served by the source; store then held %+v",
		time.Since(begin).Round(time.Millisecond), killedAt, 100*float64(killedAt)/float64(size), u)
	resumed := copyTo(store, "resumed/big")
	t.Logf("MEASURE resumed run: %s; %d bytes fetched = %.1f%% of the image, blob bytes left after the kill %d (excess %d)",
		resumed, resumed.served, 100*float64(resumed.served)/float64(size), blobBytes-killedAt, resumed.served-(blobBytes-killedAt))
	w.verifyStore(t)

	// Cut at half: the first GET of every layer is cut at its middle,
	// every later GET of a layer fails and ferry does not retry requests,
	// so the run fails; then it runs again without faults.
	store = filepath.Join(t.TempDir(), "store")
	w.store = store
	cutDone := map[string]bool{}
	var cutMu sync.Mutex
	sizes := map[string]int64{}
	for _, d := range graph[2:] {
		sizes["/v2/src/big/blobs/"+d.Digest.String()] = d.Size
	}
	w.proxy.SetFault(func(r *http.Request) harness.Fault {
		n, ok := sizes[r.URL.Path]
		if !ok || !harness.IsBlobGet(r) {
			return harness.Fault{}
		}
		cutMu.Lock()
		defer cutMu.Unlock()
		if !cutDone[r.URL.Path] {
			cutDone[r.URL.Path] = true
			return harness.CutAfter(n / 2)
		}
		return harness.RespondStatus(http.StatusInternalServerError, nil)
	})
	w.proxy.Reset()
	res := w.ferry(t, "copy", "-i", ref, "--to-repo", w.dst.Ref("cut/big"), "--registry-retry-count", "0")
	cutAt := w.proxy.Stats().BlobBytesServed
	w.proxy.SetFault(nil)
	if res.ExitCode == 0 {
		t.Fatalf("the cut run succeeded")
	}
	t.Logf("MEASURE cut run: failed after %d bytes (%.1f%%) served by the source; store then held %+v", cutAt, 100*float64(cutAt)/float64(size), w.du(t))
	resumed = copyTo(store, "cut/big")
	t.Logf("MEASURE run after the cut run: %s; %d bytes fetched = %.1f%% of the image, blob bytes left after the cut %d (excess %d)",
		resumed, resumed.served, 100*float64(resumed.served)/float64(size), blobBytes-cutAt, resumed.served-(blobBytes-cutAt))
	w.verifyStore(t)

	// The destinations hold the image with the right content.
	for _, repo := range []string{"resumed/big", "cut/big"} {
		checkStreaming(ctx, t, w.dst.Repository(t, repo), graph)
	}
}

// checkStreaming fetches every descriptor from repo and verifies its
// digest and size without holding it in memory.
func checkStreaming(ctx context.Context, t *testing.T, dst *remote.Repository, graph []ocispec.Descriptor) {
	t.Helper()
	for _, d := range graph {
		rc, err := dst.Fetch(ctx, d)
		if err != nil {
			t.Fatalf("destination %s: %v", d.Digest, err)
		}
		v := d.Digest.Verifier()
		n, err := io.Copy(v, rc)
		rc.Close()
		if err != nil || n != d.Size || !v.Verified() {
			t.Errorf("destination %s: %d of %d bytes, verified %v, error %v", d.Digest, n, d.Size, v.Verified(), err)
		}
	}
}
