package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// bench is the state of one bench run: binaries, registries, fixtures and
// the prepared inputs. It is used by one goroutine.
type bench struct {
	cfg    config
	root   string // the ferry checkout
	tmp    string // everything temporary, removed at the end
	stderr io.Writer

	bins    map[string]string // tool → binary
	rusage  string            // the rusage helper every tool runs under
	tools   []string          // the tools that run, in allTools order
	skipped map[string]string // tool → why it does not run

	registryBin string        // cmd/registry, built
	src         *registryProc // the source registry, for the whole run
	fx          fixtures

	warmStore string            // ferry's store filled before the rounds
	inputs    map[string]string // tool → what its case-c run reads
	inputErrs map[string]error  // tool → why it has no input
}

// logf prints a progress line to standard error.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
}

// run runs the whole bench: setup, rounds, report. The table goes to
// stdout, progress to stderr.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	root, err := harness.FindSourceRoot()
	if err != nil {
		return err
	}
	started := time.Now().UTC()
	resultsDir := cfg.results
	if resultsDir == "" {
		resultsDir = filepath.Join("bench", "results", started.Format("20060102T150405Z"))
	}
	if !filepath.IsAbs(resultsDir) {
		resultsDir = filepath.Join(root, resultsDir)
	}
	tmp, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return err
	}
	b := &bench{
		cfg: cfg, root: root, tmp: tmp, stderr: stderr,
		bins: map[string]string{}, skipped: map[string]string{},
		inputs: map[string]string{}, inputErrs: map[string]error{},
	}
	defer func() {
		b.src.stop()
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()

	res := &results{Started: started, Config: reportConfig{
		SizeBytes: cfg.size, Rounds: cfg.rounds, Cases: cfg.cases, TimeoutSeconds: cfg.timeout.Seconds(),
		LatencySeconds: cfg.latency.Seconds(),
	}}
	res.Machine = collectMachine(ctx, root)
	b.logf("machine: %d CPUs, load average %s; scratch directory %s", res.Machine.NumCPU, res.Machine.LoadBefore, tmp)

	if err := b.setup(ctx, res); err != nil {
		return err
	}
	if err := b.rounds(ctx, res); err != nil {
		return err
	}
	res.Machine.LoadAfter = loadAverage()
	res.Finished = time.Now().UTC()

	rep := buildReport(res)
	if err := os.MkdirAll(resultsDir, 0o755); err != nil {
		return err
	}
	md := rep.markdown()
	if err := writeResults(resultsDir, res, rep, md); err != nil {
		return err
	}
	fmt.Fprint(stdout, md)
	b.logf("results in %s (results.md, results.json, chart.png)", resultsDir)
	return nil
}

// setup builds ferry and the registry, finds the peers, starts the
// registries, pushes the fixtures and prepares ferry's warm store and every
// tool's input for case c.
func (b *bench) setup(ctx context.Context, res *results) error {
	binDir := filepath.Join(b.tmp, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	if b.cfg.ferryBinary != "" {
		abs, err := filepath.Abs(b.cfg.ferryBinary)
		if err != nil {
			return err
		}
		b.bins[toolFerry] = abs
	} else {
		b.logf("building ferry from %s", b.root)
		b.bins[toolFerry] = filepath.Join(binDir, "ferry")
		if err := goBuild(ctx, b.root, b.bins[toolFerry], "./cmd/ferry"); err != nil {
			return err
		}
	}
	b.registryBin = filepath.Join(binDir, "registry")
	if err := goBuild(ctx, filepath.Join(b.root, "e2e"), b.registryBin, "./cmd/registry"); err != nil {
		return err
	}
	b.rusage = filepath.Join(binDir, "rusage")
	if err := goBuild(ctx, filepath.Join(b.root, "e2e"), b.rusage, "./cmd/bench/rusage"); err != nil {
		return err
	}

	res.Machine.ToolVersions = map[string]string{}
	for _, tool := range b.cfg.tools {
		if tool != toolFerry {
			p, err := findTool(b.root, tool)
			if err != nil {
				b.skipped[tool] = "not installed (run .ci/install-bench-tools)"
				b.logf("%s: not found in bin/tools or PATH; skipped (.ci/install-bench-tools installs it)", tool)
				continue
			}
			b.bins[tool] = p
		}
		b.tools = append(b.tools, tool)
		res.Machine.ToolVersions[tool] = toolVersion(ctx, tool, b.bins[tool])
		b.logf("%s %s (%s)", tool, res.Machine.ToolVersions[tool], b.bins[tool])
	}
	res.Tools, res.Skipped = b.tools, b.skipped
	res.Commands = commandTemplates(b.tools)

	var err error
	if b.src, err = startRegistry(ctx, b.registryBin, "source", filepath.Join(b.tmp, "registry-src"), b.cfg.latency); err != nil {
		return err
	}
	b.logf("source registry: %s (each run into a registry gets a new, empty destination registry)", b.src.host)
	if b.cfg.latency > 0 {
		b.logf("latency: the tools talk to every registry through a proxy on 127.0.0.1 that waits %s before forwarding each request (source: %s); fixtures and output checks go to the registries directly",
			b.cfg.latency, b.src.toolHost())
	}

	if err := b.pushFixtures(ctx, res); err != nil {
		return err
	}
	return b.prepareInputs(ctx)
}

// needs reports whether one of the selected cases is in cs.
func (b *bench) needs(cs ...string) bool {
	return slices.ContainsFunc(b.cfg.cases, func(c string) bool { return slices.Contains(cs, c) })
}

// pushFixtures pushes the fixtures the selected cases need.
func (b *bench) pushFixtures(ctx context.Context, res *results) error {
	var err error
	if b.needs(caseA, caseB, caseC, caseERepo, caseETar) {
		start := time.Now()
		if b.fx.big, err = pushBigImage(ctx, b.src, b.cfg.size); err != nil {
			return fmt.Errorf("big image: %w", err)
		}
		b.logf("fixture: %s@%s, %s in 10 layers, pushed in %s", b.src.ref(bigRepo), b.fx.big.desc.Digest, mib(b.fx.big.bytes), since(start))
		res.Fixtures = append(res.Fixtures, fixtureRecord{Name: "big image", Ref: bigRepo + ":" + fixtureTag, Digest: b.fx.big.desc.Digest.String(), Bytes: b.fx.big.bytes, Images: 1})
	}
	if b.needs(caseDRepo, caseDTar) {
		start := time.Now()
		if b.fx.many, err = pushManyBundle(ctx, b.src, b.tmp, 100, 1<<20, 10<<10); err != nil {
			return fmt.Errorf("bundle of 100 images: %w", err)
		}
		b.logf("fixture: %s@%s, 100 images (1 MiB shared base + 10 KiB each), %s, pushed in %s",
			b.src.ref(manyBundleRepo), b.fx.many.bundle.desc.Digest, mib(b.fx.many.totalBytes()), since(start))
		res.Fixtures = append(res.Fixtures, fixtureRecord{Name: "bundle of 100 small images", Ref: manyBundleRepo + ":" + fixtureTag,
			Digest: b.fx.many.bundle.desc.Digest.String(), Bytes: b.fx.many.totalBytes(), Images: 100})
	}
	if b.needs(caseERepo, caseETar) {
		start := time.Now()
		if b.fx.mid, err = pushMidBundle(ctx, b.src, b.tmp, b.fx.big, max(b.cfg.size/16, 1024)); err != nil {
			return fmt.Errorf("bundle of the big image and 3 smaller ones: %w", err)
		}
		b.logf("fixture: %s@%s, the big image + 3 images of %s, pushed in %s",
			b.src.ref(midBundleRepo), b.fx.mid.bundle.desc.Digest, mib(b.fx.mid.images[1].bytes), since(start))
		res.Fixtures = append(res.Fixtures, fixtureRecord{Name: "bundle of the big image + 3 smaller ones", Ref: midBundleRepo + ":" + fixtureTag,
			Digest: b.fx.mid.bundle.desc.Digest.String(), Bytes: b.fx.mid.totalBytes(), Images: 4})
	}
	return nil
}

// prepareInputs runs, once and untimed, what fills ferry's warm store (for
// b) and every tool's export of the big image (for c: each tool imports
// what it exports itself).
func (b *bench) prepareInputs(ctx context.Context) error {
	if !b.needs(caseB, caseC) {
		return nil
	}
	b.warmStore = filepath.Join(b.tmp, "warm-store")
	for _, tool := range b.tools {
		if tool != toolFerry && !b.needs(caseC) {
			continue
		}
		dir := filepath.Join(b.tmp, "inputs", tool)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		env, err := toolEnv(dir)
		if err != nil {
			return err
		}
		out := filepath.Join(dir, archiveName(tool))
		a := opArgs{src: b.src.ref(b.fx.big.repo) + ":" + b.fx.big.tag, dst: out, tag: fixtureTag, store: b.warmStore}
		start := time.Now()
		_, err = runMeasured(ctx, b.rusage, process{argv: b.argv(tool, opToArchive, a), env: env, dir: dir}, b.cfg.timeout)
		if err == nil {
			err = checkArchive(out, b.fx.big)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			b.inputErrs[tool] = err
			b.logf("%s: preparing its archive for case c failed: %v", tool, firstLine(err.Error()))
			continue
		}
		b.inputs[tool] = out
		what := "its archive for case c"
		if tool == toolFerry {
			what = "the warm store and " + what
		}
		b.logf("%s: prepared %s in %s", tool, what, since(start))
	}
	return nil
}

// rounds runs every selected case for every tool, cfg.rounds times; in
// round r the tools start at the r-th (rotated) so none always runs first.
func (b *bench) rounds(ctx context.Context, res *results) error {
	for r := 1; r <= b.cfg.rounds; r++ {
		b.logf("round %d of %d, load average %s", r, b.cfg.rounds, loadAverage())
		order := rotate(b.tools, r-1)
		for _, c := range b.cfg.cases {
			for _, tool := range order {
				variants := []string{""}
				if c == caseB && tool == toolFerry {
					variants = []string{"cold", "warm"}
				}
				for _, v := range variants {
					s := b.runOnce(ctx, c, tool, v, r)
					if ctx.Err() != nil {
						return ctx.Err()
					}
					row := c
					if c == caseB {
						row = rowBCold
						if v == "warm" {
							row = rowBWarm
						}
					}
					res.Runs = append(res.Runs, runRecord{Row: row, Tool: tool, Sample: s})
					if s.ok() {
						b.logf("round %d %-6s %-6s %5.2f s wall, %5.2f s CPU, %5.1f MiB peak RSS%s",
							r, row, tool, s.WallSeconds, s.cpuSeconds(), float64(s.MaxRSSBytes)/(1<<20), plural(s.Processes))
					} else {
						b.logf("round %d %-6s %-6s FAILED: %s", r, row, tool, firstLine(s.Error))
					}
				}
			}
		}
	}
	return nil
}

// runOnce measures one run in a new scratch directory, checks its output
// and removes the directory.
func (b *bench) runOnce(ctx context.Context, c, tool, variant string, round int) sample {
	s := sample{Round: round}
	dir, err := os.MkdirTemp(b.tmp, fmt.Sprintf("run-%s-%s-", c, tool))
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer os.RemoveAll(dir)
	// A new destination registry per run: nothing there before, and no tool
	// can mount blobs that an earlier run left in another repository (skopeo,
	// run as root, remembers blob locations across runs in
	// /var/lib/containers/cache).
	var dst *registryProc
	if writesRegistry(c) {
		if dst, err = startRegistry(ctx, b.registryBin, "destination", filepath.Join(dir, "registry"), b.cfg.latency); err != nil {
			s.Error = err.Error()
			return s
		}
		defer dst.stop()
	}
	p, err := b.plan(c, tool, variant, round, dir, dst)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	// Every run starts on a quiet disk: what earlier runs (and the
	// fixtures) left to write back is written now, outside the time.
	syscall.Sync()
	for i, proc := range p.procs {
		ps, err := runMeasured(ctx, b.rusage, proc, b.cfg.timeout)
		s.add(ps)
		if err != nil {
			if len(p.procs) > 1 {
				s.Error = fmt.Sprintf("image %d of %d: %v", i+1, len(p.procs), err)
			} else {
				s.Error = err.Error()
			}
			return s
		}
	}
	if err := p.check(ctx); err != nil {
		s.Error = "output check: " + err.Error()
	}
	return s
}

// rotate returns s starting at index k (mod len).
func rotate(s []string, k int) []string {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}

func plural(processes int) string {
	if processes <= 1 {
		return ""
	}
	return fmt.Sprintf(" (%d processes)", processes)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
