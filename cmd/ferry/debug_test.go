package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// --debug is a persistent flag: any command that talks to registries logs
// its HTTP exchanges to stderr, and nothing to stdout; without it there is
// no debug log. Port 1 on loopback refuses connections at once.
func TestDebugFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"pull", "-b", "127.0.0.1:1/app:v1", "-o", out, "--registry-retry-count", "0"}

	code, stdout, stderr := run(t, append([]string{"--debug"}, args...)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if !strings.Contains(stderr, "debug | #1 --> GET https://127.0.0.1:1/v2/") {
		t.Errorf("stderr lacks the logged request:\n%s", stderr)
	}
	if !strings.Contains(stderr, "connection refused") {
		t.Errorf("stderr lacks the logged error:\n%s", stderr)
	}

	// The flag may also come after the command, and be turned off.
	if _, _, stderr := run(t, append(args, "--debug")...); !strings.Contains(stderr, "debug | ") {
		t.Errorf("--debug after the command: no debug log:\n%s", stderr)
	}
	for _, a := range [][]string{args, append(args, "--debug=false")} {
		if _, _, stderr := run(t, a...); strings.Contains(stderr, "debug | ") {
			t.Errorf("%v: debug log without --debug:\n%s", a, stderr)
		}
	}
}

// Every command with registry flags binds them to its own flag set, where
// the root's persistent --debug is merged at run time: the wiring that
// gives its registry client the debug log.
func TestDebugReachesEveryRegistryCommand(t *testing.T) {
	var errOut strings.Builder
	root := NewRootCmd(streams{In: strings.NewReader(""), Out: &strings.Builder{}, Err: &errOut})
	var walk func(c *cobra.Command)
	found := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Flags().Lookup("registry-retry-count") == nil {
			return
		}
		found++
		if c.LocalNonPersistentFlags().Lookup("registry-retry-count") == nil {
			t.Errorf("%s: registry flags are not bound to the command's own flags; --debug would not reach its client", c.CommandPath())
		}
		if err := c.ParseFlags([]string{"--debug"}); err != nil {
			t.Fatalf("%s: %v", c.CommandPath(), err)
		}
		if w, ok := debugLog(c.Flags()).(*strings.Builder); !ok || w != &errOut {
			t.Errorf("%s: --debug not found in its flags", c.CommandPath())
		}
	}
	walk(root)
	if found < 3 {
		t.Errorf("only %d commands with registry flags found", found)
	}
}
