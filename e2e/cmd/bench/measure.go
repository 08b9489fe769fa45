package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sample is one measured run of a tool on a case: one process, or the sum
// of a per-image script's processes.
type sample struct {
	Round       int     `json:"round"`
	WallSeconds float64 `json:"wallSeconds"`
	UserSeconds float64 `json:"userSeconds"`
	SysSeconds  float64 `json:"sysSeconds"`
	// MaxRSSBytes is the peak resident set size (the largest over a script).
	MaxRSSBytes int64 `json:"maxRSSBytes"`
	// Processes is how many processes the run took (1, or one per image).
	Processes int `json:"processes"`
	// Error says why the run failed (exit status, timeout, wrong output);
	// the measurements of a failed run are not used.
	Error string `json:"error,omitempty"`
}

// cpuSeconds is user plus system time.
func (s sample) cpuSeconds() float64 { return s.UserSeconds + s.SysSeconds }

// ok reports whether the run succeeded.
func (s sample) ok() bool { return s.Error == "" }

// add accumulates one process of a script: wall and CPU add up, the peak
// RSS is the maximum.
func (s *sample) add(p sample) {
	s.WallSeconds += p.WallSeconds
	s.UserSeconds += p.UserSeconds
	s.SysSeconds += p.SysSeconds
	s.MaxRSSBytes = max(s.MaxRSSBytes, p.MaxRSSBytes)
	s.Processes += p.Processes
}

// process is one command to run: argv, extra environment and directory.
type process struct {
	argv []string
	env  []string
	dir  string
}

func (p process) String() string {
	args := make([]string, len(p.argv))
	for i, a := range p.argv {
		args[i] = a
		if i == 0 {
			args[i] = filepath.Base(a)
		}
	}
	return strings.Join(args, " ")
}

// runMeasured runs p to completion (killed after timeout) through the
// rusage helper (cmd/bench/rusage at rusageBin) and returns the wall time
// from start to exit, the user and system CPU time and the peak RSS of p's
// process as the kernel accounted them (wait4). A non-zero exit, a timeout
// or a signal is an error that includes the end of the output.
func runMeasured(ctx context.Context, rusageBin string, p process, timeout time.Duration) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	outFile, err := os.CreateTemp("", "ferry-bench-rusage-")
	if err != nil {
		return sample{}, err
	}
	outFile.Close()
	defer os.Remove(outFile.Name())
	cmd := exec.CommandContext(ctx, rusageBin, append([]string{outFile.Name()}, p.argv...)...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	// Its own process group, so that a timeout or Ctrl-C ends the tool too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, fmt.Errorf("%s: %w", p, err)
	}
	err = cmd.Wait()
	s := sample{WallSeconds: time.Since(start).Seconds(), Processes: 1}
	if raw, rerr := os.ReadFile(outFile.Name()); rerr == nil {
		if parsed, perr := parseRusage(string(raw)); perr == nil {
			parsed.Processes = 1
			s = parsed
		}
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return s, fmt.Errorf("%s: killed after %s\n%s", p, timeout, out)
	case err != nil:
		return s, fmt.Errorf("%s: %w\n%s", p, err, out)
	}
	return s, nil
}

// parseRusage reads the rusage helper's line: "wall_ns user_ns sys_ns
// maxrss_kib".
func parseRusage(line string) (sample, error) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return sample{}, fmt.Errorf("rusage output %q: want 4 fields", line)
	}
	var n [4]int64
	for i, v := range f {
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil || x < 0 {
			return sample{}, fmt.Errorf("rusage output %q: field %d is not a count", line, i+1)
		}
		n[i] = x
	}
	return sample{
		WallSeconds: float64(n[0]) / 1e9,
		UserSeconds: float64(n[1]) / 1e9,
		SysSeconds:  float64(n[2]) / 1e9,
		MaxRSSBytes: n[3] * 1024,
	}, nil
}

// tailBuffer keeps the last max bytes written to it. Safe for concurrent
// use (exec copies stdout and stderr from two goroutines).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
