// Package ferry_test holds project-wide checks. This file enforces the import
// rules of ARCHITECTURE.md: which package may import what.
package ferry_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/ferry-oci/ferry"

// Shared groups of allowed third-party imports.
var (
	imageSpec = []string{"github.com/opencontainers/image-spec", "github.com/opencontainers/go-digest"}
	orasGo    = []string{"oras.land/oras-go/v2"}
)

// allowedImports lists, for every package of the main module, the module
// packages and third-party path prefixes it may import. The standard library
// is always allowed. A package missing from this table fails the test, so a
// new package has to be given its rules.
var allowedImports = map[string][]string{
	"lockfile": {"go.yaml.in/yaml/v3"},
	"bundle": join(imageSpec,
		module+"/lockfile", "github.com/klauspost/compress"),
	"graph": join(imageSpec, orasGo,
		module+"/lockfile", module+"/bundle", "golang.org/x/sync"),
	"store": join(imageSpec, orasGo,
		"github.com/containerd/containerd/v2", "github.com/containerd/errdefs", "github.com/gofrs/flock"),
	"ocilayout":         join(imageSpec, orasGo, "golang.org/x/sys"),
	"internal/registry": join(imageSpec, orasGo),
	"cmd/ferry":         {module + "/", "github.com/spf13/", "github.com/sirupsen/logrus", "go.yaml.in/yaml/v3", "oras.land/", "github.com/opencontainers/", "github.com/vbauerster/mpb/v8", "golang.org/x/"},
}

func join(groups ...any) []string {
	var out []string
	for _, g := range groups {
		switch v := g.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	pkgs := packageImports(t, ".")
	if len(pkgs) == 0 {
		t.Fatal("found no packages; is the test running at the module root?")
	}
	for pkg, imports := range pkgs {
		allowed, ok := allowedImports[pkg]
		if !ok {
			t.Errorf("package %s has no import rules; add it to allowedImports in imports_test.go", pkg)
			continue
		}
		for _, imp := range imports {
			if !importAllowed(imp, allowed) {
				t.Errorf("package %s imports %s, which ARCHITECTURE.md does not allow", pkg, imp)
			}
		}
	}
}

func importAllowed(imp string, allowed []string) bool {
	if isStdlib(imp) {
		return true
	}
	if strings.HasPrefix(imp, module+"/cmd/") {
		return false // nothing imports cmd
	}
	for _, a := range allowed {
		if imp == a || strings.HasPrefix(imp, strings.TrimSuffix(a, "/")+"/") {
			return true
		}
	}
	return false
}

func isStdlib(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// packageImports parses the non-test Go files of every package under root
// (skipping the e2e module and testdata) and returns their imports by
// package directory relative to root.
func packageImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (name == "e2e" || name == "testdata" || strings.HasPrefix(name, ".") || name == "bin" || name == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		if dir == "." {
			dir = ""
		}
		seen := map[string]bool{}
		for _, imp := range out[dir] {
			seen[imp] = true
		}
		for _, s := range f.Imports {
			imp := strings.Trim(s.Path.Value, `"`)
			if strings.HasPrefix(imp, module+"/"+dir+"/") && dir != "" {
				continue // own sub-package
			}
			if !seen[imp] {
				seen[imp] = true
				out[dir] = append(out[dir], imp)
			}
		}
		sort.Strings(out[dir])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImportRulesCatchViolations proves the checker can fail: a lockfile
// importing oras-go, or a store importing graph, must be refused.
func TestImportRulesCatchViolations(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lockfile/a.go", "package lockfile\nimport _ \"oras.land/oras-go/v2\"\n")
	write("store/a.go", "package store\nimport _ \""+module+"/graph\"\n")
	write("graph/a.go", "package graph\nimport _ \""+module+"/cmd/ferry\"\n")
	pkgs := packageImports(t, dir)
	cases := []struct{ pkg, imp string }{
		{"lockfile", "oras.land/oras-go/v2"},
		{"store", module + "/graph"},
		{"graph", module + "/cmd/ferry"},
	}
	for _, c := range cases {
		got := pkgs[c.pkg]
		if len(got) != 1 || got[0] != c.imp {
			t.Fatalf("package %s: parsed imports %v, want [%s]", c.pkg, got, c.imp)
		}
		if importAllowed(c.imp, allowedImports[c.pkg]) {
			t.Errorf("%s importing %s was allowed; the rule checker is broken", c.pkg, c.imp)
		}
	}
}
