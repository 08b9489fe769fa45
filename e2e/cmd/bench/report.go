package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// results is everything a bench run measured; results.json is this.
type results struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Machine  machine           `json:"machine"`
	Config   reportConfig      `json:"config"`
	Tools    []string          `json:"tools"`
	Skipped  map[string]string `json:"skipped,omitempty"`
	Fixtures []fixtureRecord   `json:"fixtures"`
	// Commands are the command lines per tool and kind of run, with
	// placeholders for the references and paths.
	Commands map[string][]commandRecord `json:"commands"`
	Runs     []runRecord                `json:"runs"`
}

// reportConfig records the knobs of the run.
type reportConfig struct {
	SizeBytes      int64    `json:"sizeBytes"`
	Rounds         int      `json:"rounds"`
	Cases          []string `json:"cases"`
	TimeoutSeconds float64  `json:"timeoutSeconds"`
	// LatencySeconds is the delay a proxy added before every request of a
	// tool to a registry (LATENCY); 0: the tools talked to the registries
	// directly.
	LatencySeconds float64 `json:"latencySeconds"`
}

// latency returns LatencySeconds as a duration.
func (c reportConfig) latency() time.Duration {
	return time.Duration(math.Round(c.LatencySeconds * float64(time.Second)))
}

// latencyPhrase says how far away the tools saw the registries, for the
// report and the chart title.
func (c reportConfig) latencyPhrase() string {
	if l := c.latency(); l > 0 {
		return fmt.Sprintf("registries %s away (LATENCY: a proxy waits %s before each request)", l, l)
	}
	return "registries on loopback, no added latency"
}

// fixtureRecord describes a fixture in the source registry.
type fixtureRecord struct {
	Name   string `json:"name"`
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	Bytes  int64  `json:"bytes"`
	Images int    `json:"images"`
}

// commandRecord is the command line a tool runs for a kind of run.
type commandRecord struct {
	Runs    string `json:"runs"`
	Command string `json:"command"`
}

// runRecord is one measured run: a row of the table, a tool, a sample.
type runRecord struct {
	Row    string `json:"row"`
	Tool   string `json:"tool"`
	Sample sample `json:"sample"`
}

// Targets: the largest ratio of ferry's median wall time to the best peer's
// per row, and ferry's peak RSS.
const ferryRSSTarget = 32 << 20

// ratioTarget returns the row's target ratio for ferry, or 0 for none.
func ratioTarget(row string) float64 {
	switch row {
	case rowA, rowBCold, rowC:
		return 1.0
	case rowBWarm, rowDRepo, rowDTar:
		return 0.5
	}
	return 0
}

// rowTitle describes a row for the table and the chart.
func rowTitle(row string) string {
	switch row {
	case rowA:
		return "registry → registry, big image"
	case rowBCold:
		return "registry → tar, cold store"
	case rowBWarm:
		return "registry → tar, warm store"
	case rowC:
		return "tar → registry"
	case rowDRepo:
		return "100-image bundle, registry → registry"
	case rowDTar:
		return "100-image bundle, registry → tar"
	case rowERepo:
		return "big bundle (4 images), registry → registry"
	case rowETar:
		return "big bundle (4 images), registry → tar"
	}
	return row
}

// stats summarises a set of values.
type stats struct {
	Median, Min, Max float64
}

// summarize returns the median (the mean of the two middle values for an
// even count), minimum and maximum of vs; zero for none.
func summarize(vs []float64) stats {
	if len(vs) == 0 {
		return stats{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// tableRow is one line of the table: a tool on a row (case).
type tableRow struct {
	Row, Tool string
	Runs      int // successful runs
	Failed    int
	Wall      stats
	CPUMedian float64
	RSSMax    int64
	Processes int     // per run (1, or one per image for a script)
	Ratio     float64 // median wall / best peer's; NaN when unknown
	Best      bool    // the best peer of its row
	Error     string  // the first failure's message
	SameAs    string  // the row whose runs these are (peers on b-warm)
}

// ok reports whether the row has at least one successful run.
func (r tableRow) ok() bool { return r.Runs > 0 }

// report is the table computed from the results.
type report struct {
	res  *results
	rows []tableRow
}

// buildReport computes the table: per row (in table order) and tool (in
// the results' tool order) the statistics of the successful runs and the
// ratio of the median wall time to the best peer's. Peers have no store:
// their b-warm rows are their b-cold runs.
func buildReport(res *results) report {
	var rowNames []string
	for _, c := range res.Config.Cases {
		rowNames = append(rowNames, rowsOf(c)...)
	}
	rep := report{res: res}
	for _, row := range rowNames {
		var group []tableRow
		for _, tool := range res.Tools {
			src := row
			if row == rowBWarm && tool != toolFerry {
				src = rowBCold
			}
			var wall, cpu []float64
			tr := tableRow{Row: row, Tool: tool, Ratio: math.NaN()}
			if src != row {
				tr.SameAs = src
			}
			found := false
			for _, r := range res.Runs {
				if r.Row != src || r.Tool != tool {
					continue
				}
				found = true
				if !r.Sample.ok() {
					tr.Failed++
					if tr.Error == "" {
						tr.Error = r.Sample.Error
					}
					continue
				}
				tr.Runs++
				wall = append(wall, r.Sample.WallSeconds)
				cpu = append(cpu, r.Sample.cpuSeconds())
				tr.RSSMax = max(tr.RSSMax, r.Sample.MaxRSSBytes)
				tr.Processes = max(tr.Processes, r.Sample.Processes)
			}
			if !found {
				continue
			}
			tr.Wall = summarize(wall)
			tr.CPUMedian = summarize(cpu).Median
			group = append(group, tr)
		}
		best := -1
		for i, tr := range group {
			if tr.Tool != toolFerry && tr.ok() && (best < 0 || tr.Wall.Median < group[best].Wall.Median) {
				best = i
			}
		}
		if best >= 0 && group[best].Wall.Median > 0 {
			group[best].Best = true
			for i := range group {
				if group[i].ok() {
					group[i].Ratio = group[i].Wall.Median / group[best].Wall.Median
				}
			}
		}
		rep.rows = append(rep.rows, group...)
	}
	return rep
}

// bestPeer returns the best peer's median wall time on row, or 0.
func (rep report) bestPeer(row string) float64 {
	for _, tr := range rep.rows {
		if tr.Row == row && tr.Best {
			return tr.Wall.Median
		}
	}
	return 0
}

// verdict says whether ferry meets its targets on a row: "" when the row
// has no target or no ratio.
func (tr tableRow) verdict() string {
	if tr.Tool != toolFerry {
		return ""
	}
	var parts []string
	if t := ratioTarget(tr.Row); t > 0 && !math.IsNaN(tr.Ratio) {
		parts = append(parts, fmt.Sprintf("ratio ≤ %.1f: %s", t, metWord(tr.Ratio <= t)))
	}
	if tr.ok() {
		parts = append(parts, fmt.Sprintf("RSS ≤ %d MiB: %s", ferryRSSTarget>>20, metWord(tr.RSSMax <= ferryRSSTarget)))
	}
	return strings.Join(parts, "; ")
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// markdown renders the report: machine facts, the table, the targets and
// the notes.
func (rep report) markdown() string {
	res := rep.res
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "# ferry benchmark, %s\n\n", res.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), %s RAM, %s\n", m.NumCPU, orUnknown(m.CPUModel), orUnknown(m.MemTotal), orUnknown(m.Kernel))
	fmt.Fprintf(&b, "- load average (1, 5, 15 min): %s before, %s after; %s to %s\n", m.LoadBefore, orUnknown(m.LoadAfter),
		res.Started.Format("15:04:05"), res.Finished.Format("15:04:05"))
	fmt.Fprintf(&b, "- %s; ferry built from commit %s\n", m.GoVersion, m.FerryCommit)
	var versions []string
	for _, t := range res.Tools {
		versions = append(versions, t+" "+m.ToolVersions[t])
	}
	fmt.Fprintf(&b, "- tools: %s\n", strings.Join(versions, ", "))
	for _, t := range slicesSortedKeys(res.Skipped) {
		fmt.Fprintf(&b, "- skipped: %s, %s\n", t, res.Skipped[t])
	}
	fmt.Fprintf(&b, "- %s\n", res.Config.latencyPhrase())
	fmt.Fprintf(&b, "- %d interleaved round(s): each round runs every tool once per case, the tool order rotated by one each round; at most %s per process; the disk is synced before each run, outside its time (no run pays for an earlier run's writeback)\n",
		res.Config.Rounds, time.Duration(res.Config.TimeoutSeconds*float64(time.Second)))
	for _, f := range res.Fixtures {
		fmt.Fprintf(&b, "- fixture: %s, `%s` (%s, %s)\n", f.Name, f.Ref, shortDigestString(f.Digest), mib(f.Bytes))
	}
	b.WriteString("\n| case | tool | runs | wall s, median (min–max) | CPU s, median | peak RSS MiB, max | ratio to best peer | ferry target |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, tr := range rep.rows {
		runs := fmt.Sprintf("%d", tr.Runs)
		if tr.Failed > 0 {
			runs = fmt.Sprintf("%d (%d failed)", tr.Runs, tr.Failed)
		}
		if tr.Processes > 1 {
			runs += fmt.Sprintf(" ×%d proc", tr.Processes)
		}
		tool := tr.Tool
		if tr.Tool == toolFerry {
			tool = "**ferry**"
		}
		if tr.SameAs != "" {
			tool += " (" + tr.SameAs + " runs)"
		}
		if !tr.ok() {
			fmt.Fprintf(&b, "| %s | %s | %s | failed: %s | | | | %s |\n", tr.Row, tool, runs, cell(firstLine(tr.Error), 160), tr.verdict())
			continue
		}
		ratio := "—"
		if !math.IsNaN(tr.Ratio) {
			ratio = fmt.Sprintf("%.2f", tr.Ratio)
			if tr.Best {
				ratio += " (best peer)"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f (%.2f–%.2f) | %.2f | %.1f | %s | %s |\n",
			tr.Row, tool, runs, tr.Wall.Median, tr.Wall.Min, tr.Wall.Max, tr.CPUMedian, float64(tr.RSSMax)/(1<<20), ratio, tr.verdict())
	}

	b.WriteString("\nferry against its targets:\n\n")
	for _, tr := range rep.rows {
		if tr.Tool != toolFerry {
			continue
		}
		switch t := ratioTarget(tr.Row); {
		case !tr.ok():
			fmt.Fprintf(&b, "- %s (%s): ferry failed\n", tr.Row, rowTitle(tr.Row))
		case t == 0 || math.IsNaN(tr.Ratio):
			fmt.Fprintf(&b, "- %s (%s): %.2f s, no peer ratio target; peak RSS %.1f MiB (%s)\n", tr.Row, rowTitle(tr.Row), tr.Wall.Median,
				float64(tr.RSSMax)/(1<<20), metWord(tr.RSSMax <= ferryRSSTarget))
		default:
			fmt.Fprintf(&b, "- %s (%s): ratio %.2f, target ≤ %.1f: %s; peak RSS %.1f MiB, target ≤ 32 MiB: %s\n", tr.Row, rowTitle(tr.Row),
				tr.Ratio, t, metWord(tr.Ratio <= t), float64(tr.RSSMax)/(1<<20), metWord(tr.RSSMax <= ferryRSSTarget))
		}
	}

	b.WriteString("\nNotes:\n\n")
	b.WriteString("- Cases: ")
	var cs []string
	for _, c := range res.Config.Cases {
		for _, r := range rowsOf(c) {
			cs = append(cs, fmt.Sprintf("%s = %s", r, rowTitle(r)))
		}
	}
	b.WriteString(strings.Join(cs, "; ") + ".\n")
	b.WriteString("- Every run is a separate process with a new HOME; a run into a registry gets a new, empty destination registry (so nothing is there before and no tool can mount blobs an earlier run left); wall time from start to exit, CPU = user + system time and peak RSS from the kernel's accounting of that process (wait4 rusage). The registries are separate processes: their CPU is not counted. Outputs are checked after each run (exit status 0, every manifest digest present at the destination, archives not empty and naming every manifest digest); a run that fails the check is reported as failed.\n")
	if l := res.Config.latency(); l > 0 {
		fmt.Fprintf(&b, "- LATENCY %s: every tool talks to every registry through a reverse proxy on 127.0.0.1 (in the bench process, so its CPU is not counted either) that waits %s before forwarding each request, once per request, as one round trip to a registry %s away would; bodies stream through unbuffered, and opening a connection is not delayed. Fixtures are pushed and outputs checked directly; the untimed preparation of b-warm's store and c's archives goes through the proxies.\n", l, l, l)
	}
	b.WriteString("- ratio to best peer = the tool's median wall time / the fastest peer's (not ferry) median wall time on that case.\n")
	b.WriteString("- ferry: cold = a new, empty `--store` per run (also in a, c, d, e); warm = a store filled once before the rounds. The peers keep no cache, so their b-warm rows repeat their b-cold runs.\n")
	b.WriteString("- c: each tool imports the archive it writes in b (made once before the rounds): ferry and regctl OCI layout tars, oras an OCI layout tar from `oras backup`, skopeo an oci-archive, crane an OCI layout directory (`crane pull --format oci`, it writes no OCI tar), imgpkg its own tar format.\n")
	b.WriteString("- d, e: crane, oras, regctl and skopeo cannot copy a bundle: they run a script that copies the bundle image and then every image its images.yml lists, one process per image, sequentially (as a simple user script would); wall and CPU are summed over the script, peak RSS is the largest of its processes. To a tar, such scripts fill one shared OCI layout directory (no single tar exists). ferry and imgpkg copy the bundle in one process.\n")
	b.WriteString("\nCommands ($SRC: the source reference, $DST: the destination repository, $OUT: the output path, $IN: the archive from b, $TAG: v1 or the image's tag in a script, $STORE: ferry's store):\n\n")
	for _, t := range res.Tools {
		for _, c := range res.Commands[t] {
			fmt.Fprintf(&b, "- %s, %s: `%s`\n", t, c.Runs, c.Command)
		}
	}
	return b.String()
}

// cell makes s safe for a Markdown table cell and at most n runes long.
func cell(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func shortDigestString(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func slicesSortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// chartTitle is the chart's title line: what it shows and the knobs that
// change the numbers.
func chartTitle(c reportConfig) string {
	latency := "loopback registries"
	if l := c.latency(); l > 0 {
		latency = fmt.Sprintf("%s latency per request", l)
	}
	return fmt.Sprintf("ferry and peers: median wall time in seconds (bars), min–max (whiskers); big image %s, %d round(s), %s",
		mib(c.SizeBytes), c.Rounds, latency)
}

// writeResults writes results.md, results.json and chart.png into dir.
func writeResults(dir string, res *results, rep report, md string) error {
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "chart.png"))
	if err != nil {
		return err
	}
	if err := writeChart(f, rep, chartTitle(res.Config)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
