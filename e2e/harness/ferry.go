package harness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RunTimeout bounds one Run of the ferry binary.
const RunTimeout = 5 * time.Minute

// The binary is built once per test process; Main removes it. This is the
// harness's only process-wide state besides the registry's logger.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// Main runs the tests of a package and removes the ferry binary built by
// Ferry. Call it from TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Ferry returns the path of a ferry binary built from this checkout
// (github.com/ferry-oci/ferry/cmd/ferry), building it on first use in the
// test process. FERRY_E2E_BINARY names a binary to use instead;
// FERRY_E2E_RACE=1 builds with the race detector. Safe for concurrent use.
func Ferry(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FERRY_E2E_BINARY"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("FERRY_E2E_BINARY: %v", err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("FERRY_E2E_BINARY: %v", err)
		}
		return abs
	}
	binOnce.Do(func() { binPath, binErr = buildFerry() })
	if binErr != nil {
		t.Fatalf("build ferry: %v", binErr)
	}
	return binPath
}

func buildFerry() (string, error) {
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return BuildFerry(ctx, dir, os.Getenv("FERRY_E2E_RACE") == "1")
}

// BuildFerry builds github.com/ferry-oci/ferry/cmd/ferry from this checkout
// (the main module above the e2e module, found from the working directory)
// into dir/ferry and returns the binary's path; race adds -race. It runs
// the go command in the main module, so the binary is the one a user would
// build. Safe for concurrent use with distinct dirs.
func BuildFerry(ctx context.Context, dir string, race bool) (string, error) {
	modDir, err := findModuleDir()
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(dir, "ferry"))
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ferry")
	cmd := exec.CommandContext(ctx, goTool(), args...)
	// Built in the main module, with its go.mod and go.sum: the binary a
	// user would build, even while the e2e module's requirements lag.
	cmd.Dir = filepath.Dir(modDir)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// findModuleDir walks up from the working directory (a test package
// directory) to the e2e module's root.
func findModuleDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/ferry-oci/ferry/e2e\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the e2e module (github.com/ferry-oci/ferry/e2e) is not above the working directory")
		}
		dir = parent
	}
}

// SourceRoot returns the root directory of the ferry checkout (the main
// module, parent of the e2e module).
func SourceRoot(t testing.TB) string {
	t.Helper()
	dir, err := FindSourceRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// FindSourceRoot returns the root of the ferry checkout: the parent of the
// e2e module, found by walking up from the working directory. It is
// SourceRoot for programs (the bench) that have no testing.TB.
func FindSourceRoot() (string, error) {
	dir, err := findModuleDir()
	if err != nil {
		return "", err
	}
	return filepath.Dir(dir), nil
}

// Result is the outcome of one ferry run.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// String formats the result for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.ExitCode, r.Stdout, r.Stderr)
}

// isolatedPrefixes select variables removed from the inherited environment so that the
// developer's configuration and credentials never reach the binary.
var isolatedPrefixes = []string{
	"HOME=", "DOCKER_CONFIG=", "XDG_", "IMGPKG_", "FERRY_", "REGISTRY_AUTH_FILE=",
	"HTTP_PROXY=", "HTTPS_PROXY=", "ALL_PROXY=", "NO_PROXY=",
	"http_proxy=", "https_proxy=", "all_proxy=", "no_proxy=",
	"SSL_CERT_FILE=", "SSL_CERT_DIR=",
}

// Run runs the ferry binary with args and returns its output and exit
// status, failing the test if it cannot be started or runs longer than
// RunTimeout. The environment is the test's minus anything that configures
// registries, credentials, proxies or ferry itself, with HOME,
// DOCKER_CONFIG ($HOME/.docker), XDG_CACHE_HOME and XDG_CONFIG_HOME in a
// fresh t.TempDir(); env entries ("KEY=value") are applied last and win.
// Every call gets a new home, so ferry's store starts empty unless env sets
// XDG_CACHE_HOME or FERRY_STORE to a directory shared between runs.
func Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	bin := Ferry(t)
	home := t.TempDir()
	full := append(Env(home), env...) // exec keeps the last value of a repeated key

	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = full
	cmd.Dir = home
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("ferry %s: timed out after %s\n%s", strings.Join(args, " "), RunTimeout, res)
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("ferry %s (%s): %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), res)
	return res
}

// RunOK is Run that fails the test unless ferry exits with status 0.
func RunOK(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	res := Run(t, env, args...)
	if res.ExitCode != 0 {
		t.Fatalf("ferry %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// Env returns the environment Run gives ferry: this process's environment
// minus anything that configures registries, credentials, proxies or ferry
// itself, plus HOME=home, DOCKER_CONFIG=home/.docker,
// XDG_CACHE_HOME=home/.cache and XDG_CONFIG_HOME=home/.config. The
// directories are not created.
func Env(home string) []string {
	full := make([]string, 0, len(os.Environ())+4)
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, isolatedPrefixes) {
			full = append(full, kv)
		}
	}
	return append(full,
		"HOME="+home,
		"DOCKER_CONFIG="+filepath.Join(home, ".docker"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
	)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Login is a user name and password for a Docker config entry.
type Login struct {
	Username string
	Password string
}

// WriteDockerConfig writes a config.json with an "auths" entry per registry
// host (the "auth" field is base64 of "user:password") into a new temp
// directory and returns the directory, to be passed as DOCKER_CONFIG.
func WriteDockerConfig(t testing.TB, logins map[string]Login) string {
	t.Helper()
	type authEntry struct {
		Auth string `json:"auth"`
	}
	cfg := struct {
		Auths map[string]authEntry `json:"auths"`
	}{Auths: map[string]authEntry{}}
	for host, l := range logins {
		cfg.Auths[host] = authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(l.Username + ":" + l.Password))}
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatalf("docker config: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o600); err != nil {
		t.Fatalf("docker config: %v", err)
	}
	return dir
}
