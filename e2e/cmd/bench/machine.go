package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine records the facts that make a measurement comparable.
type machine struct {
	NumCPU       int               `json:"numCPU"`
	CPUModel     string            `json:"cpuModel"`
	MemTotal     string            `json:"memTotal"`
	Kernel       string            `json:"kernel"`
	GoVersion    string            `json:"goVersion"`
	FerryCommit  string            `json:"ferryCommit"`
	LoadBefore   string            `json:"loadBefore"`
	LoadAfter    string            `json:"loadAfter"`
	ToolVersions map[string]string `json:"toolVersions"`
}

// collectMachine reads the machine facts from /proc, `go version` and git.
func collectMachine(ctx context.Context, root string) machine {
	m := machine{NumCPU: runtime.NumCPU(), LoadBefore: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kib, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.GoVersion = commandLine(ctx, root, "go", "version")
	m.FerryCommit = commandLine(ctx, root, "git", "rev-parse", "--short", "HEAD")
	if st := commandLine(ctx, root, "git", "status", "--porcelain", "--untracked-files=no"); st != "" && !strings.HasPrefix(st, "unknown") {
		m.FerryCommit += " (with uncommitted changes)"
	}
	return m
}

// commandLine runs a command in dir and returns the first line of its
// output, or "unknown".
func commandLine(ctx context.Context, dir, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return firstLine(strings.TrimSpace(string(out)))
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
