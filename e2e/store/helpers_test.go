// Package store_test is the evidence that ferry's local content store keeps
// its promise (issue 4): a second copy fetches nothing it already has, an
// interrupted download continues at the byte where it stopped (in the same
// run and in the next, after a cut connection or a killed process), and
// several ferry processes can share one store. A counting, fault-injecting
// proxy stands in front of the source registry; ferry runs as a binary with
// FERRY_STORE pointing at a store the test keeps between runs.
package store_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const mib = 1 << 20

// world is a source registry behind a counting proxy, a destination
// registry, and one store directory shared by every ferry run of a test.
type world struct {
	src   *harness.Registry
	proxy *harness.Proxy
	dst   *harness.Registry
	store string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	return &world{
		src:   src,
		proxy: harness.StartProxy(t, src.Host),
		dst:   harness.StartRegistry(t, harness.RegistryOptions{}),
		store: t.TempDir() + "/store",
	}
}

// env is the environment of a ferry run on the world's store.
func (w *world) env() []string { return []string{"FERRY_STORE=" + w.store} }

// ferry runs ferry on the world's store.
func (w *world) ferry(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return harness.Run(t, w.env(), args...)
}

// ferryOK runs ferry on the world's store and fails the test unless it
// exits with status 0.
func (w *world) ferryOK(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return harness.RunOK(t, w.env(), args...)
}

// image pushes an image with pseudo-random layers of the given sizes to
// repo on the source and returns its reference through the proxy and its
// graph: manifest, config, layers.
func (w *world) image(ctx context.Context, t *testing.T, b *harness.Builder, repo string, layers ...int) (string, []ocispec.Descriptor) {
	t.Helper()
	desc := b.Image(ctx, t, w.src.Ref(repo), harness.ImageSpec{Layers: layers})
	return w.proxy.Ref(repo) + "@" + desc.Digest.String(), w.graphOf(ctx, t, b, repo, desc)
}

// bundle pushes a bundle listing images to repo on the source, tagged v1,
// and returns its "ref:v1" through the proxy, its manifest descriptor and
// its own graph (manifest, config, layer; not the images').
func (w *world) bundle(ctx context.Context, t *testing.T, b *harness.Builder, repo string, images []string) (string, ocispec.Descriptor, []ocispec.Descriptor) {
	t.Helper()
	desc := b.Bundle(ctx, t, w.src.Ref(repo), harness.BundleSpec{Images: images, Tag: "v1"})
	return w.proxy.Ref(repo) + ":v1", desc, w.graphOf(ctx, t, b, repo, desc)
}

// graphOf reads the manifest desc in repo on the source (not through the
// proxy) and returns it with its config and layers (Builder.ImageGraph).
func (w *world) graphOf(ctx context.Context, t *testing.T, b *harness.Builder, repo string, desc ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	return b.ImageGraph(ctx, t, w.src.Ref(repo), desc)
}

// checkDest checks that repo on the destination has tag v1 on bundle and
// holds every descriptor of the graphs with the right content (each one
// fetched and verified against its digest and size).
func (w *world) checkDest(ctx context.Context, t *testing.T, repo string, bundle ocispec.Descriptor, graphs ...[]ocispec.Descriptor) {
	t.Helper()
	r := w.dst.Repository(t, repo)
	got, err := r.Resolve(ctx, "v1")
	if err != nil {
		t.Fatalf("destination %s:v1: %v", repo, err)
	}
	if got.Digest != bundle.Digest {
		t.Errorf("destination %s:v1 is %s, want the bundle %s", repo, got.Digest, bundle.Digest)
	}
	for _, g := range graphs {
		for _, d := range g {
			if _, err := content.FetchAll(ctx, r, d); err != nil {
				t.Errorf("destination %s@%s (%d bytes): %v", repo, d.Digest, d.Size, err)
			}
		}
	}
}

// union returns the size of every descriptor of the graphs, by digest.
func union(graphs ...[]ocispec.Descriptor) map[digest.Digest]int64 {
	u := map[digest.Digest]int64{}
	for _, g := range graphs {
		for _, d := range g {
			u[d.Digest] = d.Size
		}
	}
	return u
}

// blobsOf is union without the manifests (the first descriptor of each
// graph): what the registry serves from /blobs/.
func blobsOf(graphs ...[]ocispec.Descriptor) map[digest.Digest]int64 {
	u := map[digest.Digest]int64{}
	for _, g := range graphs {
		for _, d := range g[1:] {
			u[d.Digest] = d.Size
		}
	}
	return u
}

func total(blobs map[digest.Digest]int64) int64 {
	var n int64
	for _, s := range blobs {
		n += s
	}
	return n
}

// isGetOf matches GET requests of the blob d.
func isGetOf(d digest.Digest) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return harness.IsBlobGet(r) && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String())
	}
}

// rangesOf returns the Range headers of the GET requests of blob d in the log.
func rangesOf(s harness.Stats, d digest.Digest) []string {
	var out []string
	for _, rec := range s.Log {
		if rec.Method == http.MethodGet && rec.Class == harness.ClassBlob && strings.HasSuffix(rec.Path, "/"+d.String()) {
			out = append(out, rec.Range)
		}
	}
	return out
}

// usage is what `ferry store du` prints.
type usage struct {
	Blobs, Partials          int
	BlobsHuman, PartialHuman string
}

var duLine = regexp.MustCompile(`^blobs: +(\d+) \(([^)]*)\)\npartials: +(\d+) \(([^)]*)\)\n$`)

// du runs `ferry store du` and parses its output.
func (w *world) du(t *testing.T) usage {
	t.Helper()
	res := w.ferryOK(t, "store", "du")
	m := duLine.FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("ferry store du: unexpected output %q", res.Stdout)
	}
	blobs, _ := strconv.Atoi(m[1])
	partials, _ := strconv.Atoi(m[3])
	return usage{Blobs: blobs, BlobsHuman: m[2], Partials: partials, PartialHuman: m[4]}
}

// ls runs `ferry store ls` and returns the size of every blob listed.
func (w *world) ls(t *testing.T) map[digest.Digest]int64 {
	t.Helper()
	res := w.ferryOK(t, "store", "ls")
	sc := bufio.NewScanner(strings.NewReader(res.Stdout))
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "DIGEST") {
		t.Fatalf("ferry store ls: no header in %q", res.Stdout)
	}
	out := map[digest.Digest]int64{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("ferry store ls: line %q", sc.Text())
		}
		d, err := digest.Parse(f[0])
		if err != nil {
			t.Fatalf("ferry store ls: line %q: %v", sc.Text(), err)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("ferry store ls: line %q: %v", sc.Text(), err)
		}
		if _, err := time.Parse(time.RFC3339, f[2]); err != nil {
			t.Errorf("ferry store ls: line %q: last use: %v", sc.Text(), err)
		}
		out[d] = size
	}
	return out
}

// verifyStore runs `ferry store verify` and fails the test unless it exits
// 0 saying every blob verified.
func (w *world) verifyStore(t *testing.T) {
	t.Helper()
	res := w.ferry(t, "store", "verify")
	if res.ExitCode != 0 || !strings.Contains(res.Stderr, "store | every blob verified") {
		t.Errorf("ferry store verify: %s", res)
	}
}

// checkStoreHolds checks that the store holds exactly want, with no partial
// download left.
func (w *world) checkStoreHolds(t *testing.T, want map[digest.Digest]int64) {
	t.Helper()
	got := w.ls(t)
	for d, size := range want {
		if gs, ok := got[d]; !ok {
			t.Errorf("store: %s (%d bytes) missing", d, size)
		} else if gs != size {
			t.Errorf("store: %s has %d bytes, want %d", d, gs, size)
		}
	}
	for d, size := range got {
		if _, ok := want[d]; !ok {
			t.Errorf("store: unexpected %s (%d bytes)", d, size)
		}
	}
	if u := w.du(t); u.Blobs != len(want) || u.Partials != 0 {
		t.Errorf("ferry store du: %d blobs and %d partials, want %d blobs and 0 partials", u.Blobs, u.Partials, len(want))
	}
}

// humanMiB parses "12.3 MiB" as printed by ferry store du.
func humanMiB(t *testing.T, s string) float64 {
	t.Helper()
	v, ok := strings.CutSuffix(s, " MiB")
	if !ok {
		t.Fatalf("%q is not in MiB", s)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return f
}

// process is a ferry binary started in the background.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error // of Wait, set before done is closed
}

// start starts ferry with the world's store, in a fresh home like
// harness.Run, without waiting for it. The test's end kills it if it still runs.
func (w *world) start(t *testing.T, args ...string) *process {
	t.Helper()
	home := t.TempDir()
	p := &process{cmd: exec.Command(harness.Ferry(t), args...), done: make(chan struct{})}
	p.cmd.Env = append(harness.Env(home), w.env()...)
	p.cmd.Dir = home
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ferry %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits up to timeout for the process to end and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("ferry %s: still running after %s\n%s", strings.Join(p.cmd.Args[1:], " "), timeout, p)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) String() string {
	return fmt.Sprintf("--- stdout\n%s--- stderr\n%s", p.stdout.String(), p.stderr.String())
}
