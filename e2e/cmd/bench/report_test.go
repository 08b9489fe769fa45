package main

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want stats
	}{
		{"none", nil, stats{}},
		{"one", []float64{3}, stats{3, 3, 3}},
		{"odd", []float64{5, 1, 3}, stats{3, 1, 5}},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, stats{2.5, 1, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := summarize(in); got != tt.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("summarize modified its input: %v, was %v", in, tt.in)
			}
		})
	}
}

// okRun is a successful sample of round r.
func okRun(row, tool string, r int, wall, cpu float64, rssMiB int64) runRecord {
	return runRecord{Row: row, Tool: tool, Sample: sample{Round: r, WallSeconds: wall, UserSeconds: cpu, MaxRSSBytes: rssMiB << 20, Processes: 1}}
}

func failed(row, tool string, r int, msg string) runRecord {
	return runRecord{Row: row, Tool: tool, Sample: sample{Round: r, WallSeconds: 0.1, Processes: 1, Error: msg}}
}

// testResults: ferry, crane and oras on a, b-cold and b-warm, three rounds.
// a: ferry 1,2,3 s; crane 4,5,6 s; oras fails every round.
// b: ferry cold 2,2,2, warm 0.5,1,0.25; crane 4,4,4 (one failure); oras 8,8,8.
func testResults() *results {
	res := &results{
		Config: reportConfig{Rounds: 3, Cases: []string{caseA, caseB}, SizeBytes: 64 << 20, TimeoutSeconds: 600},
		Tools:  []string{toolFerry, toolCrane, toolOras},
	}
	for r := 1; r <= 3; r++ {
		fr := float64(r)
		res.Runs = append(res.Runs,
			okRun(rowA, toolFerry, r, fr, fr/2, 10+int64(r)),
			okRun(rowA, toolCrane, r, 3+fr, 1, 20),
			failed(rowA, toolOras, r, "oras cp: exit status 1\nmore detail"),
			okRun(rowBCold, toolFerry, r, 2, 1, 30),
			okRun(rowBWarm, toolFerry, r, []float64{0.5, 1, 0.25}[r-1], 0.2, 40),
			okRun(rowBCold, toolOras, r, 8, 2, 12),
		)
		if r == 2 {
			res.Runs = append(res.Runs, failed(rowBCold, toolCrane, r, "crane pull: killed"))
		} else {
			res.Runs = append(res.Runs, okRun(rowBCold, toolCrane, r, 4, 2, 15))
		}
	}
	return res
}

func findRow(t *testing.T, rep report, row, tool string) tableRow {
	t.Helper()
	for _, tr := range rep.rows {
		if tr.Row == row && tr.Tool == tool {
			return tr
		}
	}
	t.Fatalf("no row %s/%s in %+v", row, tool, rep.rows)
	return tableRow{}
}

func TestBuildReport(t *testing.T) {
	rep := buildReport(testResults())

	var order []string
	for _, tr := range rep.rows {
		order = append(order, tr.Row+"/"+tr.Tool)
	}
	wantOrder := []string{
		"a/ferry", "a/crane", "a/oras",
		"b-cold/ferry", "b-cold/crane", "b-cold/oras",
		"b-warm/ferry", "b-warm/crane", "b-warm/oras",
	}
	if !slices.Equal(order, wantOrder) {
		t.Fatalf("rows %v, want %v", order, wantOrder)
	}

	tests := []struct {
		row, tool      string
		runs, failures int
		wall           stats
		cpu            float64
		rssMiB         int64
		ratio          float64 // NaN: none
		best           bool
		sameAs         string
		verdict        string
	}{
		{rowA, toolFerry, 3, 0, stats{2, 1, 3}, 1, 13, 0.4, false, "", "ratio ≤ 1.0: met; RSS ≤ 32 MiB: met"},
		{rowA, toolCrane, 3, 0, stats{5, 4, 6}, 1, 20, 1, true, "", ""},
		{rowA, toolOras, 0, 3, stats{}, 0, 0, math.NaN(), false, "", ""},
		{rowBCold, toolFerry, 3, 0, stats{2, 2, 2}, 1, 30, 0.5, false, "", "ratio ≤ 1.0: met; RSS ≤ 32 MiB: met"},
		{rowBCold, toolCrane, 2, 1, stats{4, 4, 4}, 2, 15, 1, true, "", ""},
		{rowBCold, toolOras, 3, 0, stats{8, 8, 8}, 2, 12, 2, false, "", ""},
		// Peers have no store: b-warm repeats their b-cold runs.
		{rowBWarm, toolFerry, 3, 0, stats{0.5, 0.25, 1}, 0.2, 40, 0.125, false, "", "ratio ≤ 0.5: met; RSS ≤ 32 MiB: **missed**"},
		{rowBWarm, toolCrane, 2, 1, stats{4, 4, 4}, 2, 15, 1, true, rowBCold, ""},
		{rowBWarm, toolOras, 3, 0, stats{8, 8, 8}, 2, 12, 2, false, rowBCold, ""},
	}
	for _, tt := range tests {
		t.Run(tt.row+"/"+tt.tool, func(t *testing.T) {
			tr := findRow(t, rep, tt.row, tt.tool)
			if tr.Runs != tt.runs || tr.Failed != tt.failures {
				t.Errorf("runs %d, failed %d; want %d, %d", tr.Runs, tr.Failed, tt.runs, tt.failures)
			}
			if tr.Wall != tt.wall {
				t.Errorf("wall %+v, want %+v", tr.Wall, tt.wall)
			}
			if tr.CPUMedian != tt.cpu {
				t.Errorf("CPU median %v, want %v", tr.CPUMedian, tt.cpu)
			}
			if tr.RSSMax != tt.rssMiB<<20 {
				t.Errorf("RSS max %d MiB, want %d MiB", tr.RSSMax>>20, tt.rssMiB)
			}
			if math.IsNaN(tt.ratio) != math.IsNaN(tr.Ratio) || (!math.IsNaN(tt.ratio) && math.Abs(tr.Ratio-tt.ratio) > 1e-9) {
				t.Errorf("ratio %v, want %v", tr.Ratio, tt.ratio)
			}
			if tr.Best != tt.best || tr.SameAs != tt.sameAs {
				t.Errorf("best %v, same as %q; want %v, %q", tr.Best, tr.SameAs, tt.best, tt.sameAs)
			}
			if got := tr.verdict(); got != tt.verdict {
				t.Errorf("verdict %q, want %q", got, tt.verdict)
			}
		})
	}
	if tr := findRow(t, rep, rowA, toolOras); !strings.HasPrefix(tr.Error, "oras cp: exit status 1") {
		t.Errorf("failed row's error %q, want the first failure's message", tr.Error)
	}
	if got := rep.bestPeer(rowBWarm); got != 4 {
		t.Errorf("best peer on b-warm: %v s, want crane's 4 s", got)
	}
}

func TestBuildReportWithoutPeers(t *testing.T) {
	res := &results{Config: reportConfig{Cases: []string{caseA}}, Tools: []string{toolFerry}}
	res.Runs = []runRecord{okRun(rowA, toolFerry, 1, 2, 1, 10)}
	tr := findRow(t, buildReport(res), rowA, toolFerry)
	if !math.IsNaN(tr.Ratio) {
		t.Errorf("ratio %v with no peer, want NaN", tr.Ratio)
	}
	if got, want := tr.verdict(), "RSS ≤ 32 MiB: met"; got != want {
		t.Errorf("verdict %q, want %q", got, want)
	}
}

func TestMarkdown(t *testing.T) {
	res := testResults()
	res.Machine = machine{NumCPU: 2, LoadBefore: "1.00 1.00 1.00", LoadAfter: "2.00 2.00 2.00", ToolVersions: map[string]string{toolFerry: "develop", toolCrane: "v0.22.1", toolOras: "1.3.6"}}
	res.Skipped = map[string]string{toolImgpkg: "not installed"}
	res.Commands = commandTemplates(res.Tools)
	md := buildReport(res).markdown()
	for _, want := range []string{
		"| a | **ferry** | 3 | 2.00 (1.00–3.00) | 1.00 | 13.0 | 0.40 | ratio ≤ 1.0: met; RSS ≤ 32 MiB: met |",
		"| a | crane | 3 | 5.00 (4.00–6.00) | 1.00 | 20.0 | 1.00 (best peer) |  |",
		"| a | oras | 0 (3 failed) | failed: oras cp: exit status 1 |",
		"| b-cold | crane | 2 (1 failed) | 4.00 (4.00–4.00) |",
		"| b-warm | crane (b-cold runs) | 2 (1 failed) |",
		"- b-warm (registry → tar, warm store): ratio 0.12, target ≤ 0.5: met; peak RSS 40.0 MiB, target ≤ 32 MiB: **missed**",
		"- skipped: imgpkg, not installed",
		"load average (1, 5, 15 min): 1.00 1.00 1.00 before, 2.00 2.00 2.00 after",
		"- crane, a: `crane copy --insecure $SRC $DST:$TAG`",
		"- ferry, b: `ferry copy -i $SRC --to-tar $OUT --store $STORE`",
		"- registries on loopback, no added latency\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "more detail") {
		t.Errorf("the table cell should hold only the first line of an error:\n%s", md)
	}
	if strings.Contains(md, "LATENCY") {
		t.Errorf("a run without LATENCY should not describe the delay proxy:\n%s", md)
	}
}

func TestMarkdownStatesLatency(t *testing.T) {
	res := testResults()
	res.Config.LatencySeconds = 0.02
	md := buildReport(res).markdown()
	for _, want := range []string{
		"- registries 20ms away (LATENCY: a proxy waits 20ms before each request)\n",
		"- LATENCY 20ms: every tool talks to every registry through a reverse proxy on 127.0.0.1",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"latencySeconds":0.02`) {
		t.Errorf("results.json lacks the latency: %s", raw)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1GiB", 1 << 30, false},
		{"64MiB", 64 << 20, false},
		{"256M", 256 << 20, false},
		{"512KiB", 512 << 10, false},
		{"1.5GiB", 3 << 29, false},
		{"1048576", 1 << 20, false},
		{"", 0, true},
		{"big", 0, true},
		{"-1MiB", 0, true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		cases   []string
		tools   []string
		size    int64
		rounds  int
		latency time.Duration
		wantErr string
	}{
		{name: "defaults", cases: defaultCases(), tools: allTools(), size: 1 << 30, rounds: 3},
		{name: "smoke", env: map[string]string{"SIZE": "64MiB", "ROUNDS": "1", "CASES": "a, b-warm", "TOOLS": "crane,oras"},
			cases: []string{caseA, caseB}, tools: []string{toolFerry, toolCrane, toolOras}, size: 64 << 20, rounds: 1},
		{name: "d and e", env: map[string]string{"CASES": "e,d-tar"}, cases: []string{caseDTar, caseERepo, caseETar}, tools: allTools(), size: 1 << 30, rounds: 3},
		{name: "all", env: map[string]string{"CASES": "all"}, cases: allCases(), tools: allTools(), size: 1 << 30, rounds: 3},
		{name: "latency", env: map[string]string{"CASES": "d", "LATENCY": "20ms"}, cases: []string{caseDRepo, caseDTar}, tools: allTools(), size: 1 << 30, rounds: 3, latency: 20 * time.Millisecond},
		{name: "latency 0", env: map[string]string{"LATENCY": "0"}, cases: defaultCases(), tools: allTools(), size: 1 << 30, rounds: 3},
		{name: "latency without a unit", env: map[string]string{"LATENCY": "20"}, wantErr: "LATENCY"},
		{name: "negative latency", env: map[string]string{"LATENCY": "-5ms"}, wantErr: "LATENCY"},
		{name: "unknown case", env: map[string]string{"CASES": "a,z"}, wantErr: `unknown case "z"`},
		{name: "unknown tool", env: map[string]string{"TOOLS": "docker"}, wantErr: `unknown tool "docker"`},
		{name: "zero rounds", env: map[string]string{"ROUNDS": "0"}, wantErr: "ROUNDS"},
		{name: "tiny size", env: map[string]string{"SIZE": "1KiB"}, wantErr: "at least 10KiB"},
		{name: "bad timeout", env: map[string]string{"TIMEOUT": "soon"}, wantErr: "TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := configFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.cases, tt.cases) || !slices.Equal(cfg.tools, tt.tools) || cfg.size != tt.size || cfg.rounds != tt.rounds || cfg.latency != tt.latency {
				t.Errorf("config %+v, want cases %v tools %v size %d rounds %d latency %s", cfg, tt.cases, tt.tools, tt.size, tt.rounds, tt.latency)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	for k, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(s, k); !slices.Equal(got, want) {
			t.Errorf("rotate(%v, %d) = %v, want %v", s, k, got, want)
		}
	}
	if !slices.Equal(s, []string{"a", "b", "c"}) {
		t.Errorf("rotate modified its input: %v", s)
	}
}

func TestParseRusage(t *testing.T) {
	got, err := parseRusage("2500000000 1250000000 250000000 16384\n")
	if err != nil {
		t.Fatal(err)
	}
	want := sample{WallSeconds: 2.5, UserSeconds: 1.25, SysSeconds: 0.25, MaxRSSBytes: 16 << 20}
	if got != want {
		t.Errorf("parseRusage = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "1 2 3", "1 2 3 x", "1 2 -3 4", "1 2 3 4 5"} {
		if _, err := parseRusage(bad); err == nil {
			t.Errorf("parseRusage(%q): no error", bad)
		}
	}
}

func TestSampleAdd(t *testing.T) {
	var s sample
	s.add(sample{WallSeconds: 1, UserSeconds: 0.5, SysSeconds: 0.25, MaxRSSBytes: 10, Processes: 1})
	s.add(sample{WallSeconds: 2, UserSeconds: 1, SysSeconds: 0.5, MaxRSSBytes: 30, Processes: 1})
	s.add(sample{WallSeconds: 3, UserSeconds: 1.5, SysSeconds: 0.75, MaxRSSBytes: 20, Processes: 1})
	want := sample{WallSeconds: 6, UserSeconds: 3, SysSeconds: 1.5, MaxRSSBytes: 30, Processes: 3}
	if s != want {
		t.Errorf("script sum %+v, want %+v (wall and CPU summed, RSS the largest)", s, want)
	}
}
