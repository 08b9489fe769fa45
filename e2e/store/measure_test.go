package store_test

import (
	"bytes"
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
	maxRSS   int64         // KiB
	cpu      time.Duration // user + system
	served   int64         // blob bytes served by the source
	exitCode int
}

func (m measureRun) String() string {
	return fmt.Sprintf("%6.2f s wall, %7.1f MiB/s, %5.2f s CPU, peak RSS %4d MiB, %5d MiB fetched from the source",
		m.wall.Seconds(), float64(m.size)/mib/m.wall.Seconds(), m.cpu.Seconds(), m.maxRSS/1024, m.served/mib)
}

// TestMeasure1GiB measures ferry copy of a 1 GiB image (4 layers of 256 MiB
// of pseudo-random data) between two local registries (filesystem storage
// under the test's temp directory), through a counting proxy in front of the
// source: a cold copy (empty store), a warm copy (store full, new empty
// destination repository), a copy with --no-store, an in-process oras.Copy
// (no proxy) and crane copy, regctl image copy and oras cp (through the
// same proxy, when bin/tools has them) for comparison, and the bytes
// fetched by a run resumed after a run killed (SIGKILL) at about half, and
// after a run whose connections were all cut at half. Peak RSS is ferry's maximum resident set size, from GNU time
// (/usr/bin/time) when installed, else from wait4(2). It only runs with
// FERRY_E2E_MEASURE=1 (FERRY_E2E_MEASURE_REPS sets how many times the
// cold/warm/--no-store series runs, default 3; FERRY_E2E_CPUPROFILE_DIR
// names a directory that receives a CPU profile of every timed ferry run);
// the figures go to the test log:
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
	graph, size := push1GiB(ctx, t, w.src, "src/big", "")
	ref := w.proxy.Ref("src/big") + "@" + graph[0].Digest.String()
	blobBytes := size - graph[0].Size // the manifest is not a blob
	t.Logf("fixture: image of %d bytes (%d layers) pushed in %s; registries under %s and %s",
		size, len(graph)-2, time.Since(start).Round(time.Millisecond), w.src.RootDir, w.dst.RootDir)

	run := func(store string, args ...string) measureRun {
		t.Helper()
		w.proxy.Reset()
		home := t.TempDir()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(harness.Env(home), "FERRY_STORE="+store)
		cmd.Env = append(cmd.Env, profileEnv(t, strings.Join(args, " "))...)
		cmd.Dir = home
		out, _ := os.Create(filepath.Join(home, "output"))
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		tm, err := runTimed(t, cmd)
		m := measureRun{size: size, wall: tm.wall, maxRSS: tm.maxRSS, cpu: tm.user + tm.sys, served: w.proxy.Stats().BlobBytesServed, exitCode: tm.exitCode}
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
		// Peers, through the same proxy, into new repositories.
		for _, peer := range []string{"crane", "regctl", "oras"} {
			bin := filepath.Join(harness.SourceRoot(t), "bin", "tools", peer)
			if _, err := os.Stat(bin); err != nil {
				continue // not installed (.ci/install-interop-tools)
			}
			dst := w.dst.Ref(fmt.Sprintf("%s%d/big", peer, i)) + ":v1"
			var args []string
			switch peer {
			case "crane":
				args = []string{"copy", "--insecure", ref, dst}
			case "regctl":
				args = []string{"--host", "reg=" + w.proxy.Host + ",tls=disabled", "--host", "reg=" + w.dst.Host + ",tls=disabled", "image", "copy", ref, dst}
			case "oras":
				args = []string{"cp", "--no-tty", "--from-plain-http", "--to-plain-http", ref, dst}
			}
			w.proxy.Reset()
			cmd := exec.Command(bin, args...)
			cmd.Env = harness.Env(t.TempDir())
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			tm, err := runTimed(t, cmd)
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", peer, strings.Join(args, " "), err, &out)
			}
			m := measureRun{size: size, wall: tm.wall, maxRSS: tm.maxRSS, cpu: tm.user + tm.sys, served: w.proxy.Stats().BlobBytesServed}
			t.Logf("MEASURE %-6s copy #%d:                      %s", peer, i+1, m)
		}
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

// push1GiB pushes the 1 GiB measurement image to repo on reg (4 layers of
// 256 MiB of pseudo-random data, the same bytes every time), tagged tag
// unless it is empty, and returns its graph (manifest, config, layers) and
// the sum of their sizes.
func push1GiB(ctx context.Context, t *testing.T, reg *harness.Registry, repo, tag string) ([]ocispec.Descriptor, int64) {
	t.Helper()
	b := reg.Builder(1024)
	desc := b.Image(ctx, t, reg.Ref(repo), harness.ImageSpec{Layers: []int{256 * mib, 256 * mib, 256 * mib, 256 * mib}, Tag: tag})
	graph := (&world{src: reg}).graphOf(ctx, t, b, repo, desc)
	var size int64
	for _, d := range graph {
		size += d.Size
	}
	return graph, size
}

// timing is the cost of one process run by runTimed.
type timing struct {
	wall      time.Duration
	maxRSS    int64 // KiB
	user, sys time.Duration
	exitCode  int
}

// runTimed runs cmd (Path, Args, Env, Dir, Stdout and Stderr as the caller
// set them) and returns its wall time, peak RSS, CPU time and exit status,
// with the error of Run. The figures come from GNU time (/usr/bin/time -f
// '%e %M %U %S') when it is installed: the rusage of a child started by
// this (large) test process would report the test's own high-water mark,
// which Linux carries across the vfork+exec. Without it, the wall time is
// measured here and the RSS and CPU time come from wait4(2).
func runTimed(t *testing.T, cmd *exec.Cmd) (timing, error) {
	t.Helper()
	timeBin, _ := exec.LookPath("/usr/bin/time")
	var timeFile string
	if timeBin != "" {
		timeFile = filepath.Join(t.TempDir(), "time")
		wrapped := exec.Command(timeBin, append([]string{"-f", "%e %M %U %S", "-o", timeFile, cmd.Path}, cmd.Args[1:]...)...)
		wrapped.Env, wrapped.Dir, wrapped.Stdout, wrapped.Stderr = cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr
		cmd = wrapped
	}
	begin := time.Now()
	err := cmd.Run()
	tm := timing{wall: time.Since(begin), exitCode: -1}
	if cmd.ProcessState != nil {
		tm.exitCode = cmd.ProcessState.ExitCode()
	}
	if timeBin == "" {
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				tm.maxRSS = ru.Maxrss
			}
			tm.user, tm.sys = cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()
		}
		return tm, err
	}
	// GNU time writes "Command exited with non-zero status N" first when
	// the command fails; the figures are on the last line.
	b, rerr := os.ReadFile(timeFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if rerr != nil || len(fields) != 4 {
		t.Fatalf("%s: cannot read GNU time's figures %q: %v", timeFile, b, rerr)
	}
	var secs [3]float64
	for i, f := range []string{fields[0], fields[2], fields[3]} {
		v, perr := strconv.ParseFloat(f, 64)
		if perr != nil {
			t.Fatalf("%s: GNU time's figures %q: %v", timeFile, b, perr)
		}
		secs[i] = v
	}
	rss, perr := strconv.ParseInt(fields[1], 10, 64)
	if perr != nil {
		t.Fatalf("%s: GNU time's figures %q: %v", timeFile, b, perr)
	}
	seconds := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	tm.wall, tm.maxRSS, tm.user, tm.sys = seconds(secs[0]), rss, seconds(secs[1]), seconds(secs[2])
	return tm, err
}

// profileEnv returns FERRY_CPUPROFILE=<dir>/<name>.pprof when
// FERRY_E2E_CPUPROFILE_DIR names a directory (name made file-safe, and
// numbered after the profiles already there), so that the measured ferry run writes a CPU profile
// there; nothing otherwise.
func profileEnv(t *testing.T, name string) []string {
	t.Helper()
	dir := os.Getenv("FERRY_E2E_CPUPROFILE_DIR")
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("FERRY_E2E_CPUPROFILE_DIR: %v", err)
	}
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, name)
	if len(safe) > 60 {
		safe = safe[:60]
	}
	for i := 1; ; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", safe, i))
		if _, err := os.Stat(p); os.IsNotExist(err) {
			return []string{"FERRY_CPUPROFILE=" + p}
		}
	}
}
