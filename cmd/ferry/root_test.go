package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("FERRY_STORE", t.TempDir()) // never the user's store
	var out, errOut bytes.Buffer
	code = Execute(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersionPrintsToStdout(t *testing.T) {
	code, out, errOut := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "ferry version ") || errOut != "" {
		t.Fatalf("version: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestUsageErrors checks the output convention: a usage mistake exits 1 with
// one "ferry: Error: ..." line on stderr that says what is wrong, and nothing
// on stdout. None of these cases reaches a registry.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"nope"}, `unknown command "nope"`},
		{"push without ref", []string{"push", "-f", dir}, "exactly one of --bundle (-b) or --image (-i)"},
		{"push with both refs", []string{"push", "-b", "127.0.0.1:1/a:v1", "-i", "127.0.0.1:1/b:v1", "-f", dir}, "exactly one of --bundle"},
		{"push without files", []string{"push", "-b", "127.0.0.1:1/a:v1"}, "at least one --file"},
		{"push lock output with -i", []string{"push", "-i", "127.0.0.1:1/a:v1", "-f", dir, "--lock-output", dir + "/l.yml"}, "--lock-output is only available with --bundle"},
		{"push bad label", []string{"push", "-i", "127.0.0.1:1/a:v1", "-f", dir, "-l", "novalue"}, `label "novalue"`},
		{"push to digest", []string{"push", "-i", "127.0.0.1:1/a@sha256:" + strings.Repeat("a", 64), "-f", dir}, "names a digest"},
		{"push -b without .imgpkg", []string{"push", "-b", "127.0.0.1:1/a:v1", "-f", dir}, ".imgpkg"},
		{"copy without source", []string{"copy", "--to-repo", "127.0.0.1:1/a"}, "exactly one source"},
		{"copy with two sources", []string{"copy", "-b", "127.0.0.1:1/a:v1", "-i", "127.0.0.1:1/b:v1", "--to-repo", "127.0.0.1:1/c"}, "exactly one source"},
		{"copy without destination", []string{"copy", "-b", "127.0.0.1:1/a:v1"}, "--to-repo"},
		{"copy to tagged repo", []string{"copy", "-b", "127.0.0.1:1/a:v1", "--to-repo", "127.0.0.1:1/c:v2"}, "without tag or digest"},
		{"copy with two destinations", []string{"copy", "-b", "127.0.0.1:1/a:v1", "--to-repo", "127.0.0.1:1/c", "--to-tar", dir + "/x.tar"}, "exactly one destination"},
		{"copy lock output to tar", []string{"copy", "-b", "127.0.0.1:1/a:v1", "--to-tar", dir + "/x.tar", "--lock-output", dir + "/l.yml"}, "only available with --to-repo"},
		{"copy from missing tar", []string{"copy", "--tar", dir + "/missing.tar", "--to-repo", "127.0.0.1:1/c"}, "missing.tar"},
		{"copy from a directory that is not a layout", []string{"copy", "--oci-layout", dir, "--to-repo", "127.0.0.1:1/c"}, dir},
		{"copy missing lock", []string{"copy", "--lock", dir + "/missing.yml", "--to-repo", "127.0.0.1:1/c"}, "missing.yml"},
		{"pull to root", []string{"pull", "-b", "127.0.0.1:1/a:v1", "-o", "/"}, "refusing to replace"},
		{"pull to dot", []string{"pull", "-b", "127.0.0.1:1/a:v1", "-o", "."}, "refusing to replace"},
		{"pull without output", []string{"pull", "-b", "127.0.0.1:1/a:v1"}, "--output"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, c.args...)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.HasPrefix(errOut, "ferry: Error: ") || !strings.Contains(errOut, c.want) {
				t.Errorf("stderr %q, want a ferry: Error: line containing %q", errOut, c.want)
			}
		})
	}
}

func TestCompletionIsAvailable(t *testing.T) {
	code, out, _ := run(t, "completion", "bash")
	if code != 0 || !strings.Contains(out, "ferry") {
		t.Fatalf("completion bash: code %d, output %.80q", code, out)
	}
}
