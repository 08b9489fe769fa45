package plan_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// runInTerminal runs ferry with a pseudo-terminal as its stdin, stdout and
// stderr (cols x rows) and returns everything it wrote there.
func runInTerminal(t *testing.T, env []string, args ...string) string {
	t.Helper()
	bin := harness.Ferry(t)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), harness.RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(harness.Env(home), append([]string{"TERM=xterm-256color"}, env...)...)
	cmd.Dir = home
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 150})
	if err != nil {
		t.Fatalf("start ferry in a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, ptmx)
		copied <- err
	}()
	werr := cmd.Wait()
	// Once the child is gone, reading the master ends with EIO on Linux.
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
		t.Fatal("the pseudo-terminal did not drain")
	}
	if werr != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), werr, screen(out.String(), 60))
	}
	return out.String()
}

// cursorUpErase is what mpb writes before each new frame: cursor up N
// lines, erase to the end of the screen.
var cursorUpErase = regexp.MustCompile(`^\x1b\[(\d+)A\x1b\[J`)

// screen replays a terminal session well enough for mpb's output (lines,
// carriage returns, cursor-up-and-erase) and returns its last n lines as
// they would be on the screen at the end.
func screen(raw string, n int) string {
	var lines []string
	var cur strings.Builder
	for i := 0; i < len(raw); i++ {
		if m := cursorUpErase.FindStringSubmatch(raw[i:]); m != nil {
			up, _ := strconv.Atoi(m[1])
			if cur.Len() > 0 {
				lines = append(lines, cur.String())
				cur.Reset()
				up-- // the cursor was on an unfinished line
			}
			lines = lines[:max(len(lines)-up, 0)]
			i += len(m[0]) - 1
			continue
		}
		switch c := raw[i]; c {
		case '\n':
			lines = append(lines, cur.String())
			cur.Reset()
		case '\r':
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// TestProgressOnTerminal copies through throttled proxies in a
// pseudo-terminal, in each direction, and checks that mpb drew bars (bytes,
// percentage, rate) and that the same copy without a terminal prints only
// the plain lines. The last screen goes to the test log.
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1_500_000)
	// One blob at 1 MiB/s each: the copy lasts a few seconds.
	w.srcProxy.SetFault(func(r *http.Request) harness.Fault {
		if harness.IsBlobGet(r) {
			return harness.Throttle(1 << 20)
		}
		return harness.Fault{}
	})
	tarPath := filepath.Join(t.TempDir(), "bundle.tar")

	// Reading a tarball is instant, and an upload is paced only once the
	// sockets' buffers (several MiB on loopback) are full: large layers
	// and a throttled destination keep that copy in flight for seconds.
	big := newWorld(t, 20_000_000)
	bigTar := filepath.Join(t.TempDir(), "big.tar")
	harness.RunOK(t, nil, "copy", "-b", big.bundleRef(), "--to-tar", bigTar)

	tests := []struct {
		name string
		args []string
		// phases are the overall bars' names.
		phases []string
		setup  func()
	}{
		{name: "registry to registry", args: []string{"copy", "-b", w.bundleRef(), "--to-repo", w.dstProxy.Ref("apps/one")}, phases: []string{"copy"}},
		{name: "registry to tar", args: []string{"copy", "-b", w.bundleRef(), "--to-tar", tarPath}, phases: []string{"fetch", "write"}},
		{
			name: "tar to registry", args: []string{"copy", "--tar", bigTar, "--to-repo", big.dstProxy.Ref("apps/two")}, phases: []string{"copy"},
			setup: func() {
				big.dstProxy.SetFault(func(r *http.Request) harness.Fault {
					if harness.ClassOf(r) == harness.ClassUpload && (r.Method == http.MethodPut || r.Method == http.MethodPatch) {
						return harness.Throttle(4 << 20)
					}
					return harness.Fault{}
				})
			},
		},
	}
	for _, tt := range tests {
		if tt.setup != nil {
			tt.setup()
		}
		// A fresh store each time (Run and runInTerminal give a new home),
		// so every direction transfers its layers.
		raw := runInTerminal(t, nil, tt.args...)
		last := screen(raw, 14)
		// FERRY_E2E_RAW=DIR keeps the raw terminal output, escape
		// sequences included, for a look at every frame.
		if dir := os.Getenv("FERRY_E2E_RAW"); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".raw"), []byte(raw), 0o644); err != nil {
				t.Error(err)
			}
		}
		t.Logf("%s: last screen:\n%s", tt.name, last)
		for _, want := range []string{"\x1b[", "MiB/s", " %", "Succeeded"} {
			if !strings.Contains(raw, want) {
				t.Errorf("%s: terminal output lacks %q", tt.name, want)
			}
		}
		// A blob bar was drawn while a layer was in flight: a percentage
		// short of 100 next to a byte count.
		if !regexp.MustCompile(`\b([0-9]|[1-9][0-9]) % +[0-9.]+ (KiB|MiB) / [0-9.]+ MiB`).MatchString(raw) {
			t.Errorf("%s: no bar frame with a partial percentage", tt.name)
		}
		for _, phase := range tt.phases {
			if !regexp.MustCompile(`(?m)^` + phase + ` +\[=+\] +100 % .* done`).MatchString(last) {
				t.Errorf("%s: the last screen has no finished %q bar:\n%s", tt.name, phase, last)
			}
		}
		if !strings.Contains(last, "copy | ") {
			t.Errorf("%s: the plain lines are not on the terminal:\n%s", tt.name, last)
		}
	}

	t.Run("no terminal, no bars", func(t *testing.T) {
		w.srcProxy.SetFault(nil)
		w.dstProxy.SetFault(nil)
		res := harness.RunOK(t, nil, "copy", "-b", w.bundleRef(), "--to-repo", w.dstProxy.Ref("apps/three"))
		if strings.Contains(res.Stderr, "\x1b") || strings.Contains(res.Stderr, "MiB/s") {
			t.Errorf("bars without a terminal:\n%q", res.Stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(res.Stderr), "\n") {
			if !strings.HasPrefix(line, "copy | ") && !strings.HasPrefix(line, "Warning: ") && line != "Succeeded" {
				t.Errorf("unexpected stderr line %q", line)
			}
		}
	})
}
