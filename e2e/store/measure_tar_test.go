package store_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// tarCase is one row of TestMeasureTar1GiB's table: a command and its runs.
type tarCase struct {
	name    string // what is measured
	command string // the command line, with $REG, $STORE and file names as placeholders
	runs    []timing
}

// copyJSONResult is the part of `ferry copy --json` the measurement checks.
type copyJSONResult struct {
	Roots []struct {
		Digest string   `json:"digest"`
		Tags   []string `json:"tags"`
	} `json:"roots"`
	Destination struct {
		SHA256 string `json:"sha256"`
	} `json:"destination"`
	Total struct {
		Moved     int64 `json:"moved"`
		Mounted   int64 `json:"mounted"`
		Fetched   int64 `json:"fetched"`
		FromStore int64 `json:"fromStore"`
	} `json:"total"`
}

// TestMeasureTar1GiB measures, as separate processes under GNU time, the
// wall time, peak RSS and CPU time of moving the 1 GiB image of
// TestMeasure1GiB (4 layers of 256 MiB of pseudo-random data) between one
// local registry (filesystem storage under the test's temp directory, no
// proxy) and an OCI image layout:
//
//   - ferry copy -i REF --to-tar F, with an empty store (cold) and again
//     with the store it filled (warm, a new file);
//   - regctl image export REF F;
//   - oras cp --from-plain-http REF --to-oci-layout DIR:v1 (oras writes no
//     tar, only a directory);
//
// and back, each tool reading what it wrote, into a new, empty registry
// each time (as across an air gap; back into the source registry ferry
// would mount the layers from the repository its tar names):
//
//   - ferry copy --tar F --to-repo REPO (a fresh, empty store);
//   - regctl image import REPO:v1 F;
//   - oras cp --from-oci-layout DIR:v1 --to-plain-http REPO:v1.
//
// The rounds are interleaved (every command once per round, in the order
// above) and each round's files are removed at its end. regctl and oras
// come from bin/tools of the checkout (.ci/install-interop-tools pins them)
// or PATH. It only runs with FERRY_E2E_MEASURE=1 and needs GNU time
// (apt-get install -y time); FERRY_E2E_MEASURE_REPS sets the rounds
// (default 3), FERRY_E2E_BINARY a prebuilt ferry, FERRY_E2E_MEASURE_OUT a
// file that receives the Markdown table also written to the test log,
// FERRY_E2E_CPUPROFILE_DIR a directory that receives a CPU profile of every
// ferry run (for go tool pprof):
//
//	cd e2e && FERRY_E2E_MEASURE=1 go test -count=1 -v -timeout 30m -run TestMeasureTar1GiB ./store/
func TestMeasureTar1GiB(t *testing.T) {
	if os.Getenv("FERRY_E2E_MEASURE") != "1" {
		t.Skip("measurement; run with FERRY_E2E_MEASURE=1 go test -count=1 -v -timeout 30m -run TestMeasureTar1GiB ./store/")
	}
	if _, err := exec.LookPath("/usr/bin/time"); err != nil {
		t.Fatalf("the measurement needs GNU time for the peak RSS of each process (apt-get install -y time): %v", err)
	}
	regctl, oras := measureTool(t, "regctl"), measureTool(t, "oras")
	ferry := harness.Ferry(t)
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})

	loadStart := loadAvg(t)
	start := time.Now()
	graph, size := push1GiB(ctx, t, reg, "src/big", "v1")
	var layers int64
	for _, d := range graph[2:] {
		layers += d.Size
	}
	ref := reg.Ref("src/big:v1")
	t.Logf("fixture: image %s of %d bytes (%d layers) pushed to %s in %s; registry storage under %s",
		graph[0].Digest, size, len(graph)-2, ref, time.Since(start).Round(time.Millisecond), reg.RootDir)

	cases := []*tarCase{
		{name: "registry → tar: ferry, cold store", command: "FERRY_STORE=$EMPTY ferry copy -i $REG/src/big:v1 --to-tar cold.tar --json"},
		{name: "registry → tar: ferry, warm store", command: "FERRY_STORE=$FILLED ferry copy -i $REG/src/big:v1 --to-tar warm.tar --json"},
		{name: "registry → tar: regctl image export", command: "regctl --host reg=$REG,tls=disabled image export $REG/src/big:v1 regctl.tar"},
		{name: "registry → layout dir: oras cp", command: "oras cp --no-tty --from-plain-http $REG/src/big:v1 --to-oci-layout oras:v1"},
		{name: "tar → registry: ferry", command: "FERRY_STORE=$EMPTY ferry copy --tar cold.tar --to-repo $DST/big --json"},
		{name: "tar → registry: regctl image import", command: "regctl --host reg=$DST,tls=disabled image import $DST/big:v1 regctl.tar"},
		{name: "layout dir → registry: oras cp", command: "oras cp --no-tty --from-oci-layout oras:v1 --to-plain-http $DST/big:v1"},
	}
	coldTar, warmTar, regctlExport, orasExport, ferryImport, regctlImport, orasImport :=
		cases[0], cases[1], cases[2], cases[3], cases[4], cases[5], cases[6]
	regctlHost := "--host=reg=" + reg.Host + ",tls=disabled"

	// run runs one command of c as a separate process with a fresh HOME
	// and returns its standard output.
	run := func(round int, c *tarCase, env []string, bin string, args ...string) []byte {
		t.Helper()
		home := t.TempDir()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(harness.Env(home), env...)
		if bin == ferry {
			cmd.Env = append(cmd.Env, profileEnv(t, fmt.Sprintf("tar-round%d-%s", round, c.name))...)
		}
		cmd.Dir = home
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		tm, err := runTimed(t, cmd)
		if err != nil {
			t.Fatalf("%s %s: %v\n--- stdout\n%s--- stderr\n%s", filepath.Base(bin), strings.Join(args, " "), err, &stdout, &stderr)
		}
		c.runs = append(c.runs, tm)
		t.Logf("MEASURE round %d %-38s %6.2f s wall, %7.1f MiB/s, peak RSS %5.1f MiB, CPU %5.2f s user + %5.2f s sys",
			round, c.name, tm.wall.Seconds(), float64(size)/mib/tm.wall.Seconds(), float64(tm.maxRSS)/1024, tm.user.Seconds(), tm.sys.Seconds())
		return stdout.Bytes()
	}
	parse := func(c *tarCase, out []byte) copyJSONResult {
		t.Helper()
		var res copyJSONResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%s: --json output %q: %v", c.name, out, err)
		}
		return res
	}
	// pushed checks that repo on dst holds the image: the manifest by digest (and
	// under tag when not empty) and every blob.
	pushed := func(c *tarCase, dst *harness.Registry, repo, tag string) {
		t.Helper()
		r := dst.Repository(t, repo)
		for _, reference := range []string{graph[0].Digest.String(), tag} {
			if reference == "" {
				continue
			}
			got, err := r.Resolve(ctx, reference)
			if err != nil || got.Digest != graph[0].Digest {
				t.Errorf("%s: %s:%s is %s (%v), want %s", c.name, repo, reference, got.Digest, err, graph[0].Digest)
			}
		}
		for _, d := range graph[1:] {
			if ok, err := r.Exists(ctx, d); !ok || err != nil {
				t.Errorf("%s: %s lacks blob %s (%d bytes): %v", c.name, repo, d.Digest, d.Size, err)
			}
		}
	}

	reps := 3
	if v, err := strconv.Atoi(os.Getenv("FERRY_E2E_MEASURE_REPS")); err == nil && v > 0 {
		reps = v
	}
	base := t.TempDir()
	for i := 1; i <= reps; i++ {
		t.Logf("round %d: load average %s", i, loadAvg(t))
		dir := filepath.Join(base, fmt.Sprintf("round%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		file := func(name string) string { return filepath.Join(dir, name) }
		store := []string{"FERRY_STORE=" + file("store")}

		cold := parse(coldTar, run(i, coldTar, store, ferry, "copy", "-i", ref, "--to-tar", file("cold.tar"), "--json"))
		if cold.Total.Fetched < layers {
			t.Errorf("cold run fetched %d bytes, want at least the %d bytes of the layers", cold.Total.Fetched, layers)
		}
		warm := parse(warmTar, run(i, warmTar, store, ferry, "copy", "-i", ref, "--to-tar", file("warm.tar"), "--json"))
		if warm.Total.Fetched >= mib {
			t.Errorf("warm run fetched %d bytes from the registry, want only manifests", warm.Total.Fetched)
		}
		if cold.Destination.SHA256 == "" || warm.Destination.SHA256 != cold.Destination.SHA256 {
			t.Errorf("the warm tar's sha256 is %q, the cold tar's %q: want the same bytes", warm.Destination.SHA256, cold.Destination.SHA256)
		}
		run(i, regctlExport, nil, regctl, regctlHost, "image", "export", ref, file("regctl.tar"))
		run(i, orasExport, nil, oras, "cp", "--no-tty", "--from-plain-http", ref, "--to-oci-layout", file("oras")+":v1")
		if i == 1 {
			t.Logf("outputs: ferry tar %d bytes, regctl tar %d bytes, oras directory %d bytes (the image is %d bytes)",
				fileSize(t, file("cold.tar")), fileSize(t, file("regctl.tar")), treeSize(t, file("oras")), size)
		}

		// Each import goes to a new, empty registry, as across an air gap:
		// pushed back to the source registry, ferry mounts every layer from
		// the repository its annotations name and moves nothing.
		dst := harness.StartRegistry(t, harness.RegistryOptions{Dir: file("dst-ferry")})
		imported := parse(ferryImport, run(i, ferryImport, []string{"FERRY_STORE=" + file("import-store")}, ferry,
			"copy", "--tar", file("cold.tar"), "--to-repo", dst.Ref("big"), "--json"))
		if imported.Total.Moved < layers || imported.Total.Mounted != 0 {
			t.Errorf("ferry --tar --to-repo moved %d bytes and mounted %d, want all %d bytes of the layers moved",
				imported.Total.Moved, imported.Total.Mounted, layers)
		}
		pushed(ferryImport, dst, "big", "v1")
		dst.Stop()
		dst = harness.StartRegistry(t, harness.RegistryOptions{Dir: file("dst-regctl")})
		run(i, regctlImport, nil, regctl, "--host=reg="+dst.Host+",tls=disabled", "image", "import", dst.Ref("big:v1"), file("regctl.tar"))
		pushed(regctlImport, dst, "big", "v1")
		dst.Stop()
		dst = harness.StartRegistry(t, harness.RegistryOptions{Dir: file("dst-oras")})
		run(i, orasImport, nil, oras, "cp", "--no-tty", "--from-oci-layout", file("oras")+":v1", "--to-plain-http", dst.Ref("big:v1"))
		pushed(orasImport, dst, "big", "v1")
		dst.Stop()

		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	loadEnd := loadAvg(t)

	table := tarTable(cases, size, reps, loadStart, loadEnd)
	t.Logf("MEASURE table:\n%s", table)
	if out := os.Getenv("FERRY_E2E_MEASURE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			t.Errorf("FERRY_E2E_MEASURE_OUT: %v", err)
		}
	}
}

// tarTable formats the cases as a Markdown table: per case the median and
// the range of the wall time, the throughput at the median, and the median
// and range of the peak RSS and of the CPU time (user + system).
func tarTable(cases []*tarCase, size int64, reps int, loadStart, loadEnd string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "1 GiB image (%d bytes, 4 layers of 256 MiB), %d rounds; load average at start %s, at end %s\n\n", size, reps, loadStart, loadEnd)
	b.WriteString("| case | wall median (min–max) s | MiB/s at median | peak RSS median (min–max) MiB | CPU user+sys median s |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, c := range cases {
		wall := make([]float64, len(c.runs))
		rss := make([]float64, len(c.runs))
		cpu := make([]float64, len(c.runs))
		for i, r := range c.runs {
			wall[i], rss[i], cpu[i] = r.wall.Seconds(), float64(r.maxRSS)/1024, (r.user + r.sys).Seconds()
		}
		mw := median(wall)
		fmt.Fprintf(&b, "| %s | %.2f (%.2f–%.2f) | %.0f | %.1f (%.1f–%.1f) | %.2f |\n",
			c.name, mw, slices.Min(wall), slices.Max(wall), float64(size)/mib/mw, median(rss), slices.Min(rss), slices.Max(rss), median(cpu))
	}
	b.WriteString("\nCommands ($REG the source registry, $DST a new empty registry per import, $EMPTY a new store directory, $FILLED the store the cold run filled):\n\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "- %s: `%s`\n", c.name, c.command)
	}
	return b.String()
}

// median returns the median of vs (the mean of the two middle values when
// their number is even); vs is not modified.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measureTool returns the path of regctl or oras: in bin/tools of the
// checkout, where .ci/install-interop-tools puts them at their pinned
// versions, else on PATH. The test fails without it.
func measureTool(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(harness.SourceRoot(t), "bin", "tools", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed; run .ci/install-interop-tools: %v", name, err)
	}
	return p
}

// loadAvg returns the first three fields of /proc/loadavg (the 1, 5 and 15
// minute load averages), or "unknown".
func loadAvg(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// treeSize sums the sizes of the regular files under dir.
func treeSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
