package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Tool names.
const (
	toolFerry  = "ferry"
	toolImgpkg = "imgpkg"
	toolCrane  = "crane"
	toolOras   = "oras"
	toolRegctl = "regctl"
	toolSkopeo = "skopeo"
)

// goBuild runs `go build -o out pkg` in dir (plain build: no -race).
func goBuild(ctx context.Context, dir, out, pkg string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s %s (in %s): %w\n%s", out, pkg, dir, err, b)
	}
	return nil
}

// findTool returns the path of a peer: bin/tools of the checkout first
// (where .ci/install-interop-tools and .ci/install-bench-tools put the
// pinned versions), then PATH.
func findTool(root, name string) (string, error) {
	p := filepath.Join(root, "bin", "tools", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}

// toolVersion asks a tool for its version and returns one line.
func toolVersion(ctx context.Context, name, bin string) string {
	var args []string
	switch name {
	case toolSkopeo:
		args = []string{"--version"}
	default:
		args = []string{"version"}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	switch name {
	case toolRegctl: // "VCSTag:     v0.11.7" among other lines
		for _, l := range lines {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "VCSTag:" {
				return f[1]
			}
		}
	case toolOras: // "Version:    1.3.6"
		for _, l := range lines {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Version:" {
				return f[1]
			}
		}
	}
	// "ferry version develop", "imgpkg version 0.46.1", "skopeo version 1.9.3"
	return strings.TrimPrefix(strings.TrimSpace(lines[0]), name+" version ")
}
