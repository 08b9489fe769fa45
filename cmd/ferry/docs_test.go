package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra/doc"
)

// updateDocs rewrites docs/ instead of checking it: `go tool task docs`.
var updateDocs = flag.Bool("update-docs", false, "rewrite docs/ from the command tree")

// docsDir is where the Markdown reference of every command lives.
var docsDir = filepath.Join("..", "..", "docs")

// generateDocs renders the Markdown page of every command (cobra/doc, one
// file per command, no date footer so the output is reproducible) and
// returns the pages by file name.
func generateDocs(t *testing.T) map[string][]byte {
	t.Helper()
	root := NewRootCmd(streams{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
	root.DisableAutoGenTag = true
	root.InitDefaultCompletionCmd() // cobra adds it only when executing
	dir := t.TempDir()
	if err := doc.GenMarkdownTree(root, dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pages := make(map[string][]byte, len(entries))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		pages[e.Name()] = data
	}
	return pages
}

// TestDocsAreUpToDate fails when docs/ differs from what the command tree
// generates: a command, flag or help text changed without `go tool task docs`.
func TestDocsAreUpToDate(t *testing.T) {
	want := generateDocs(t)
	for _, name := range []string{"ferry.md", "ferry_describe.md", "ferry_tag_list.md", "ferry_tag_resolve.md", "ferry_version.md", "ferry_completion_bash.md"} {
		if _, ok := want[name]; !ok {
			t.Errorf("generated docs lack %s", name)
		}
	}
	if *updateDocs {
		writeDocs(t, want)
		return
	}
	have := map[string][]byte{}
	entries, err := os.ReadDir(docsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !isCommandPage(e.Name()) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(docsDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		have[e.Name()] = data
	}
	const fix = "; run `go tool task docs` to regenerate docs/"
	for _, name := range sortedKeys(want) {
		got, ok := have[name]
		switch {
		case !ok:
			t.Errorf("docs/%s is missing%s", name, fix)
		case !bytes.Equal(got, want[name]):
			t.Errorf("docs/%s is stale%s", name, fix)
		}
	}
	for _, name := range sortedKeys(have) {
		if _, ok := want[name]; !ok {
			t.Errorf("docs/%s documents no command%s", name, fix)
		}
	}
}

// writeDocs replaces the Markdown files of docs/ with pages.
func writeDocs(t *testing.T, pages map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(docsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, err := filepath.Glob(filepath.Join(docsDir, "ferry*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range old {
		if _, keep := pages[filepath.Base(f)]; !keep {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, data := range pages {
		if err := os.WriteFile(filepath.Join(docsDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d pages into %s", len(pages), docsDir)
}

// isCommandPage reports whether a file of docs/ is a generated command page
// (ferry.md, ferry_<command>.md); other files there are left alone.
func isCommandPage(name string) bool {
	return strings.HasPrefix(name, "ferry") && strings.HasSuffix(name, ".md")
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
