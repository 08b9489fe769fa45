//go:build interop

package interop_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// toolTimeout bounds one run of another tool.
const toolTimeout = 2 * time.Minute

// installScript installs every interop tool; go tool task test:interop runs it.
const installScript = ".ci/install-interop-tools"

// debianPackage names the Debian package of the tools installed with apt-get.
var debianPackage = map[string]string{
	"umoci": "umoci", "skopeo": "skopeo", "ctr": "containerd", "containerd": "containerd",
}

// goPackage names the package of the tools installed with go install.
var goPackage = map[string]string{
	"oras":   "oras.land/oras/cmd/oras",
	"regctl": "github.com/regclient/regclient/cmd/regctl",
	"crane":  "github.com/google/go-containerregistry/cmd/crane",
}

// ciStrict reports whether a missing tool must fail the test (CI=true).
func ciStrict() bool { return os.Getenv("CI") == "true" }

// unavailable skips the test with how to get what is missing, or fails it
// under CI=true.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ciStrict() {
		t.Fatalf("%s (CI=true: the interoperability tests need it)", msg)
	}
	t.Skip(msg)
}

// tool returns the path of an interop tool: in bin/tools of the checkout,
// where .ci/install-interop-tools puts the Go tools at their pinned
// versions, else on PATH.
func tool(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(harness.SourceRoot(t), "bin", "tools", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	how := "run " + installScript + " (go tool task test:interop runs it)"
	switch {
	case debianPackage[name] != "":
		how += fmt.Sprintf(", or as root: apt-get install -y --no-install-recommends %s", debianPackage[name])
	case goPackage[name] != "":
		how += fmt.Sprintf(", or: GOBIN=$PWD/bin/tools go install %s@<the version %s pins>", goPackage[name], installScript)
	}
	unavailable(t, "%s is not installed; to install it, %s", name, how)
	return ""
}

// toolEnv returns an environment for other tools: the test's, without
// registry credentials, proxies or ferry settings, with a fresh HOME.
func toolEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return append(harness.Env(home), "TMPDIR="+t.TempDir())
}

// run runs bin with args in env and returns stdout, stderr and the error
// (an *exec.ExitError when it ran and failed). It fails the test if bin
// cannot be started or runs longer than toolTimeout.
func run(t *testing.T, env []string, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	line := filepath.Base(bin) + " " + strings.Join(args, " ")
	if ctx.Err() != nil {
		t.Fatalf("%s: timed out after %s\nstdout:\n%s\nstderr:\n%s", line, toolTimeout, &stdout, &stderr)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("%s: %v", line, err)
	}
	t.Logf("%s (%s): err=%v\nstdout:\n%s\nstderr:\n%s", line, time.Since(start).Round(time.Millisecond), err, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// mustRun is run that fails the test unless the tool exits with status 0;
// it returns stdout.
func mustRun(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	stdout, stderr, err := run(t, env, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// readIndex reads index.json of a layout directory.
func readIndex(t *testing.T, dir string) (ocispec.Index, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	return idx, raw
}

// extractTar extracts a layout tar written by ferry into a new directory
// (regular files and directories only; ferry writes nothing else).
func extractTar(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, dir+string(filepath.Separator)) {
			t.Fatalf("%s: entry %q escapes", path, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			out, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: entry %q has type %q", path, h.Name, h.Typeflag)
		}
	}
}

// resolve returns the digest a tag or digest resolves to in repo of reg,
// failing the test if it does not resolve.
func resolve(t *testing.T, reg *harness.Registry, repo, reference string) digest.Digest {
	t.Helper()
	desc, err := reg.Repository(t, repo).Resolve(t.Context(), reference)
	if err != nil {
		t.Fatalf("resolve %s:%s: %v", reg.Ref(repo), reference, err)
	}
	return desc.Digest
}

// containerd is a containerd daemon started by a test.
type containerd struct {
	socket string
	ctr    string
	env    []string
}

// startContainerd starts containerd as root with its root, state and socket
// in temporary directories, waits (bounded) until it answers, and stops it
// at cleanup. The CRI plugin and the snapshotters are off: images are
// imported without unpacking.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	bin := tool(t, "containerd")
	ctr := tool(t, "ctr")
	if os.Geteuid() != 0 {
		unavailable(t, "containerd must run as root: run the interoperability tests as root")
	}
	dir := t.TempDir()
	// A unix socket path must stay under 108 bytes; t.TempDir() may be deep.
	sockDir, err := os.MkdirTemp("", "ferry-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "c.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, socket+".ttrpc", filepath.Join(dir, "opt"))
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := toolEnv(t)
	logPath := filepath.Join(dir, "containerd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	logs := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	cmd := exec.Command(bin, "--config", configPath, "--log-level", "warn")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("containerd log:\n%s", logs())
		}
	})

	c := &containerd{socket: socket, ctr: ctr, env: env}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("containerd exited: %v\n%s", err, logs())
		default:
		}
		if _, err := os.Stat(socket); err == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err := exec.CommandContext(ctx, ctr, "--address", socket, "version").Run()
			cancel()
			if err == nil {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 20s\n%s", socket, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs ctr against the daemon in the namespace "ferry-interop".
func (c *containerd) run(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, c.env, c.ctr, append([]string{"--address", c.socket, "--namespace", "ferry-interop"}, args...)...)
}
