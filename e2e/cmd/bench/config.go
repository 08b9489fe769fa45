package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Case names: the jobs the rounds run. Case b gives two rows of the table
// (b-cold and b-warm); every other case gives one row of the same name.
const (
	caseA     = "a"
	caseB     = "b"
	caseC     = "c"
	caseDRepo = "d-repo"
	caseDTar  = "d-tar"
	caseERepo = "e-repo"
	caseETar  = "e-tar"
)

// Row names of the table, in order.
const (
	rowA     = "a"
	rowBCold = "b-cold"
	rowBWarm = "b-warm"
	rowC     = "c"
	rowDRepo = "d-repo"
	rowDTar  = "d-tar"
	rowERepo = "e-repo"
	rowETar  = "e-tar"
)

// allCases lists every case in the order a round runs them.
func allCases() []string {
	return []string{caseA, caseB, caseC, caseDRepo, caseDTar, caseERepo, caseETar}
}

// defaultCases are the cases run when CASES is empty (e is opt-in).
func defaultCases() []string { return []string{caseA, caseB, caseC, caseDRepo, caseDTar} }

// allTools lists every tool the bench knows, ferry first.
func allTools() []string {
	return []string{toolFerry, toolImgpkg, toolCrane, toolOras, toolRegctl, toolSkopeo}
}

// allRows lists every table row in order.
func allRows() []string {
	return []string{rowA, rowBCold, rowBWarm, rowC, rowDRepo, rowDTar, rowERepo, rowETar}
}

// config holds the knobs of one bench run.
type config struct {
	size        int64         // bytes of the big image's layers (SIZE)
	rounds      int           // ROUNDS
	cases       []string      // cases to run, in allCases order (CASES)
	tools       []string      // tools to run, in allTools order (TOOLS)
	results     string        // RESULTS; "" is bench/results/<timestamp> under the root
	timeout     time.Duration // per process (TIMEOUT)
	latency     time.Duration // added before each request of a tool to a registry (LATENCY); 0: none
	ferryBinary string        // FERRY_BENCH_BINARY; "" builds ferry
}

// configFromEnv reads the knobs with getenv (os.Getenv in main).
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{size: 1 << 30, rounds: 3, timeout: 10 * time.Minute, results: getenv("RESULTS"), ferryBinary: getenv("FERRY_BENCH_BINARY")}
	var err error
	if v := getenv("SIZE"); v != "" {
		if cfg.size, err = parseSize(v); err != nil {
			return cfg, fmt.Errorf("SIZE: %w", err)
		}
		if cfg.size < 10<<10 {
			return cfg, fmt.Errorf("SIZE %s: want at least 10KiB (10 layers)", v)
		}
	}
	if v := getenv("ROUNDS"); v != "" {
		if cfg.rounds, err = strconv.Atoi(v); err != nil || cfg.rounds < 1 {
			return cfg, fmt.Errorf("ROUNDS %q: want a positive number", v)
		}
	}
	if v := getenv("TIMEOUT"); v != "" {
		if cfg.timeout, err = time.ParseDuration(v); err != nil || cfg.timeout <= 0 {
			return cfg, fmt.Errorf("TIMEOUT %q: want a positive duration such as 10m", v)
		}
	}
	if v := getenv("LATENCY"); v != "" {
		if cfg.latency, err = time.ParseDuration(v); err != nil || cfg.latency < 0 {
			return cfg, fmt.Errorf("LATENCY %q: want a duration such as 20ms (0: none)", v)
		}
	}
	if cfg.cases, err = parseCases(getenv("CASES")); err != nil {
		return cfg, err
	}
	if cfg.tools, err = parseTools(getenv("TOOLS")); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// parseSize reads "1GiB", "64MiB", "512KiB" or a number of bytes.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		factor int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, factor := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, factor = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a size such as 1GiB, 256MiB or a number of bytes", s)
	}
	return int64(n * float64(factor)), nil
}

// parseCases reads CASES: comma-separated case letters (a, b, c, d, e), row
// names (b-warm selects b, d-tar only d-tar) or "all". Empty gives
// defaultCases.
func parseCases(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return defaultCases(), nil
	}
	want := map[string]bool{}
	for _, tok := range strings.Split(s, ",") {
		switch tok = strings.ToLower(strings.TrimSpace(tok)); tok {
		case "":
		case "all":
			for _, c := range allCases() {
				want[c] = true
			}
		case "a":
			want[caseA] = true
		case "b", rowBCold, rowBWarm:
			want[caseB] = true
		case "c":
			want[caseC] = true
		case "d":
			want[caseDRepo], want[caseDTar] = true, true
		case "e":
			want[caseERepo], want[caseETar] = true, true
		case caseDRepo, caseDTar, caseERepo, caseETar:
			want[tok] = true
		default:
			return nil, fmt.Errorf("CASES: unknown case %q (cases: a, b, c, d, e, their rows %s, or all)", tok, strings.Join(allRows(), ", "))
		}
	}
	var out []string
	for _, c := range allCases() {
		if want[c] {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CASES %q selects no case", s)
	}
	return out, nil
}

// parseTools reads TOOLS: comma-separated tool names; empty means all. ferry
// is always measured (the table compares it with the peers).
func parseTools(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return allTools(), nil
	}
	want := map[string]bool{toolFerry: true}
	for _, tok := range strings.Split(s, ",") {
		tok = strings.ToLower(strings.TrimSpace(tok))
		if tok == "" {
			continue
		}
		if !slices.Contains(allTools(), tok) {
			return nil, fmt.Errorf("TOOLS: unknown tool %q (tools: %s)", tok, strings.Join(allTools(), ", "))
		}
		want[tok] = true
	}
	var out []string
	for _, t := range allTools() {
		if want[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

// rowsOf returns the table rows a case gives.
func rowsOf(c string) []string {
	if c == caseB {
		return []string{rowBCold, rowBWarm}
	}
	return []string{c}
}
