package relocate_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestMeasureCopy100 measures copying a bundle of 100 small images (each in
// its own repository, all sharing one base layer) between two registries,
// through a counting proxy on each side: wall time and HTTP requests by
// class, for a first copy, a second copy of the same bundle (nothing to
// send), and a first copy with --concurrency 16, with ferry's CPU time and
// when each phase ended. It only runs with FERRY_E2E_MEASURE=1; the figures
// go to the test log (go test -v); FERRY_E2E_CPUPROFILE_DIR=dir also writes
// a CPU profile of each run there. The machine may be shared: the request
// counts and the CPU time are the figures to compare, wall times vary with
// the load average printed beside them. FERRY_E2E_MEASURE_LATENCY=20ms
// delays every request at both proxies; FERRY_E2E_MEASURE_PEER=crane (or
// regctl, from bin/tools) also times that tool copying the same images:
//
//	cd e2e && FERRY_E2E_MEASURE=1 go test -count=1 -v -run TestMeasureCopy100 ./relocate/
func TestMeasureCopy100(t *testing.T) {
	if os.Getenv("FERRY_E2E_MEASURE") != "1" {
		t.Skip("measurement; run with FERRY_E2E_MEASURE=1 go test -v -run TestMeasureCopy100 ./relocate/")
	}
	const images = 100
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	srcProxy := harness.StartProxy(t, src.Host)

	start := time.Now()
	b := src.Builder(100)
	base := bytes.Repeat([]byte("shared base layer of the measured images\n"), 100)
	refs := make([]string, images)
	for i := range images {
		repo := fmt.Sprintf("measure/app-%03d", i)
		d := b.Image(ctx, t, src.Ref(repo), harness.ImageSpec{Layers: []int{512}, SharedBase: base}).Digest
		refs[i] = at(srcProxy.Ref(repo), d)
	}
	bundle := b.Bundle(ctx, t, src.Ref("measure/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	t.Logf("fixtures: %d images + bundle pushed in %s", images, time.Since(start).Round(time.Millisecond))

	// FERRY_E2E_MEASURE_LATENCY (a duration such as 20ms) makes each proxy
	// wait that long before it forwards a request, as a distant registry
	// would answer: then concurrency and request counts, not the registries'
	// CPU, set the wall time.
	var latency time.Duration
	if v := os.Getenv("FERRY_E2E_MEASURE_LATENCY"); v != "" {
		var err error
		if latency, err = time.ParseDuration(v); err != nil {
			t.Fatalf("FERRY_E2E_MEASURE_LATENCY: %v", err)
		}
		t.Logf("each proxy delays every request by %s", latency)
	}
	delay := func(*http.Request) harness.Fault { time.Sleep(latency); return harness.Fault{} }
	run := func(name string, dstProxy *harness.Proxy, repo string, extra ...string) {
		t.Helper()
		srcProxy.Reset()
		dstProxy.Reset()
		if latency > 0 {
			srcProxy.SetFault(delay)
			dstProxy.SetFault(delay)
			defer srcProxy.SetFault(nil)
			defer dstProxy.SetFault(nil)
		}
		args := append([]string{"copy", "-b", srcProxy.Ref("measure/bundle") + ":v1", "--to-repo", dstProxy.Ref(repo)}, extra...)
		m := measureFerry(t, name, args...)
		if !slices.Contains(m.lines, fmt.Sprintf("copy | imported %d images", images+1)) {
			t.Fatalf("ferry %s: no line 'imported %d images':\n%s", strings.Join(args, " "), images+1, strings.Join(m.lines, "\n"))
		}
		s, d := srcProxy.Stats(), dstProxy.Stats()
		t.Logf("MEASURE %s: %s wall, %s CPU (user+sys), load %s; %d requests in all", name,
			m.wall.Round(time.Millisecond), m.cpu.Round(time.Millisecond), loadAverage(), s.Count("", "")+d.Count("", ""))
		t.Logf("MEASURE %s: phases: %s", name, m.phases)
		t.Logf("MEASURE %s: source      %s", name, requestSummary(s))
		t.Logf("MEASURE %s: destination %s", name, requestSummary(d))
	}

	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	dstProxy := harness.StartProxy(t, dst.Host)
	run("first copy (concurrency 5)", dstProxy, "apps/measure")
	if got := resolve(ctx, t, anonymousRepo(t, dst.Ref("apps/measure")), "v1"); got != bundle.Digest {
		t.Fatalf("v1 -> %s, want %s", got, bundle.Digest)
	}
	run("second copy, nothing to send", dstProxy, "apps/measure")
	if s := dstProxy.Stats(); s.BlobBytesUploaded != 0 || s.Count(http.MethodPut, "") != 0 {
		t.Errorf("second copy sent data: %s", requestSummary(s))
	}

	dst2 := harness.StartRegistry(t, harness.RegistryOptions{})
	dst2Proxy := harness.StartProxy(t, dst2.Host)
	run("first copy (concurrency 16)", dst2Proxy, "apps/measure", "--concurrency", "16")

	// A peer for comparison (FERRY_E2E_MEASURE_PEER=crane|regctl): the
	// tool copies the bundle and each of its images, one after the other,
	// as a script around it would (none of them follows a bundle).
	if peer := os.Getenv("FERRY_E2E_MEASURE_PEER"); peer != "" {
		dst3 := harness.StartRegistry(t, harness.RegistryOptions{})
		dst3Proxy := harness.StartProxy(t, dst3.Host)
		srcProxy.Reset()
		if latency > 0 {
			srcProxy.SetFault(delay)
			dst3Proxy.SetFault(delay)
		}
		bin := filepath.Join(harness.SourceRoot(t), "bin", "tools", peer)
		all := append([]string{srcProxy.Ref("measure/bundle") + ":v1"}, refs...)
		var cpu time.Duration
		start := time.Now()
		for i, ref := range all {
			dst := dst3Proxy.Ref("apps/measure") + ":" + fmt.Sprintf("img%03d", i)
			var args []string
			switch peer {
			case "crane":
				args = []string{"copy", "--insecure", ref, dst}
			case "regctl":
				args = []string{"--host", "reg=" + srcProxy.Host + ",tls=disabled", "--host", "reg=" + dst3Proxy.Host + ",tls=disabled", "image", "copy", ref, dst}
			default:
				t.Fatalf("FERRY_E2E_MEASURE_PEER=%s: crane or regctl", peer)
			}
			cmd := exec.Command(bin, args...)
			cmd.Env = harness.Env(t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %s: %v\n%s", peer, strings.Join(args, " "), err, out)
			}
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
		}
		elapsed := time.Since(start)
		s, d := srcProxy.Stats(), dst3Proxy.Stats()
		t.Logf("MEASURE %s, %d images one after the other: %s wall, %s CPU, load %s; %d requests in all", peer, len(all),
			elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond), loadAverage(), s.Count("", "")+d.Count("", ""))
		t.Logf("MEASURE %s: source      %s", peer, requestSummary(s))
		t.Logf("MEASURE %s: destination %s", peer, requestSummary(d))
	}
}

// ferryMeasure is one measured ferry run.
type ferryMeasure struct {
	wall, cpu time.Duration // cpu: user + system of the ferry process
	lines     []string      // standard error
	phases    string        // when the phase lines appeared, from the start
}

// measureFerry runs ferry with args like harness.RunOK (fresh HOME, the
// harness's environment), failing the test unless it exits 0, and times
// the lines that end its phases on standard error: discovery ("exporting"),
// the graph copy (the last "importing <image>" line), tagging ("imported")
// and the end. FERRY_E2E_CPUPROFILE_DIR, when set, receives a CPU profile
// of the run (FERRY_CPUPROFILE) named after name.
func measureFerry(t *testing.T, name string, args ...string) ferryMeasure {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(harness.Ferry(t), args...)
	cmd.Env = harness.Env(home)
	if dir := os.Getenv("FERRY_E2E_CPUPROFILE_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		file := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(name))
		cmd.Env = append(cmd.Env, "FERRY_CPUPROFILE="+filepath.Join(dir, "copy100-"+file+".pprof"))
	}
	cmd.Dir = home
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		m                                  ferryMeasure
		exported, lastImport, imported, ok time.Duration
	)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		at := time.Since(start)
		line := sc.Text()
		m.lines = append(m.lines, line)
		switch {
		case strings.HasPrefix(line, "copy | exporting "):
			exported = at
		case strings.HasPrefix(line, "copy | importing ") && strings.Contains(line, " -> "):
			lastImport = at
		case strings.HasPrefix(line, "copy | imported "):
			imported = at
		case line == "Succeeded":
			ok = at
		}
	}
	err = cmd.Wait()
	m.wall = time.Since(start)
	if ru, isRusage := cmd.ProcessState.SysUsage().(*syscall.Rusage); isRusage {
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if err != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, strings.Join(m.lines, "\n"))
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	m.phases = fmt.Sprintf("discovered at %s, graph copied at %s (+%s), tagged at %s (+%s), done at %s",
		r(exported), r(lastImport), r(lastImport-exported), r(imported), r(imported-lastImport), r(ok))
	return m
}

// loadAverage is the 1-minute load average (the machine is shared), or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
