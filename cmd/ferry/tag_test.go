package main

import (
	"strings"
	"testing"
)

// TestInspectUsageErrors checks that describe and tag refuse bad flags with
// one "ferry: Error: ..." line, before reaching any registry.
func TestInspectUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"describe without bundle", []string{"describe"}, "expected --bundle (-b)"},
		{"describe bad output type", []string{"describe", "-b", "127.0.0.1:1/a:v1", "-o", "xml"}, "--output-type can only have the following values: [text, yaml, json]"},
		{"describe with an argument", []string{"describe", "127.0.0.1:1/a:v1"}, `unknown command "127.0.0.1:1/a:v1"`},
		{"describe without tag or digest", []string{"describe", "-b", "127.0.0.1:1/a"}, "need REPO:TAG or REPO@DIGEST"},
		{"tag list without image", []string{"tag", "list"}, "expected --image (-i)"},
		{"tag ls without image", []string{"tag", "ls", "--digests"}, "expected --image (-i)"},
		{"tag list bad reference", []string{"tag", "list", "-i", "https://127.0.0.1:1/a"}, "a reference has no scheme"},
		{"tag resolve without image", []string{"tag", "resolve"}, "expected --image (-i)"},
		{"tag resolve bad reference", []string{"tag", "resolve", "-i", "127.0.0.1:1/a:"}, "empty tag or digest"},
		{"tag resolve with an argument", []string{"tag", "resolve", "x"}, `unknown command "x"`},
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
			if !strings.HasPrefix(errOut, "ferry: Error: ") || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q, want one ferry: Error: line containing %q", errOut, c.want)
			}
		})
	}
}

func TestTagHelpListsSubcommands(t *testing.T) {
	code, out, _ := run(t, "tag")
	if code != 0 || !strings.Contains(out, "list") || !strings.Contains(out, "resolve") {
		t.Fatalf("ferry tag: code %d, output %q", code, out)
	}
}

func TestIsInternalTag(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	cases := map[string]bool{
		"v1":                        false,
		"latest":                    false,
		"sha256-" + hex + ".sig":    false,
		"sha256-" + hex + ".att":    false,
		"sha256-" + hex + ".imgpkg": true,
		"sha256-" + hex + ".image-locations.imgpkg": true,
		"tiny-app-sha256-" + hex + ".imgpkg":        true,
		"imgpkg":                                    false,
		"v1.imgpkg.backup":                          false,
	}
	for tag, want := range cases {
		if got := isInternalTag(tag); got != want {
			t.Errorf("isInternalTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestCompletionOfInspectCommands(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", ""}, []string{"describe", "tag", "version"}},
		{[]string{"__complete", "tag", ""}, []string{"list", "resolve"}},
		{[]string{"__complete", "describe", "-o", ""}, []string{"text", "yaml", "json"}},
		{[]string{"__complete", "tag", "list", "--imgpkg"}, []string{"--imgpkg-internal-tags"}},
	}
	for _, c := range cases {
		code, out, _ := run(t, c.args...)
		for _, w := range c.want {
			if code != 0 || !strings.Contains(out, w+"\t") && !strings.Contains(out, w+"\n") {
				t.Errorf("ferry %s: code %d, want %q offered in:\n%s", strings.Join(c.args, " "), code, w, out)
			}
		}
	}
}
