// Package crash_test is the crash matrix of issue 6 (item 2): ferry is
// killed with SIGKILL at about twenty points spread over the copy
// directions (registry to registry, registry to tarball, tarball to
// registry), chosen by what the proxies in front of the registries have
// seen (the N-th request, or N bytes of a throttled blob). After each kill
// the same command runs again without faults, with the same store: it must
// complete, `ferry store verify` must be clean, and the output must be what
// an uninterrupted run gives: the same tags naming the same digests at the
// destination, or a byte-identical tarball.
package crash_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const mib = 1 << 20

// world is a source and a destination registry behind proxies, and a
// fixture on the source.
type world struct {
	src, dst           *harness.Registry
	srcProxy, dstProxy *harness.Proxy
	work               string

	bundleRef string // through the source proxy, tag v1
	all       []ocispec.Descriptor
	big       ocispec.Descriptor // the largest layer
	small     int64              // bytes of every blob but big
}

func newWorld(ctx context.Context, t *testing.T, seed uint64) *world {
	t.Helper()
	w := &world{
		src:  harness.StartRegistry(t, harness.RegistryOptions{}),
		dst:  harness.StartRegistry(t, harness.RegistryOptions{}),
		work: t.TempDir(),
	}
	w.srcProxy = harness.StartProxy(t, w.src.Host)
	w.dstProxy = harness.StartProxy(t, w.dst.Host)
	b := w.src.Builder(seed)
	var refs []string
	for _, img := range []struct {
		repo   string
		layers []int
	}{
		{"src/app", []int{200_000, 2000}},
		{"src/db", []int{3 * mib / 2}},
	} {
		desc := b.Image(ctx, t, w.src.Ref(img.repo), harness.ImageSpec{Layers: img.layers})
		refs = append(refs, w.srcProxy.Ref(img.repo)+"@"+desc.Digest.String())
		w.all = append(w.all, b.ImageGraph(ctx, t, w.src.Ref(img.repo), desc)...)
	}
	bundle := b.Bundle(ctx, t, w.src.Ref("src/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	w.bundleRef = w.srcProxy.Ref("src/bundle") + ":v1"
	w.all = append(w.all, b.ImageGraph(ctx, t, w.src.Ref("src/bundle"), bundle)...)
	for _, d := range w.all {
		if d.Size > w.big.Size {
			w.big = d
		}
	}
	for _, d := range w.all {
		if d.Digest != w.big.Digest {
			w.small += d.Size
		}
	}
	return w
}

// direction is one way of copying, with the arguments of a run that writes
// to out (a repository name or a tarball path).
type direction struct {
	name string
	args func(w *world, out string) []string
	// outFor names the output of kill point i.
	outFor func(w *world, i int) string
}

// killPoint says when to kill ferry.
type killPoint struct {
	name string
	// onRequest, when set, kills at the n-th request (from 1) the proxy
	// sees that matches (nil matches all).
	proxy     func(w *world) *harness.Proxy
	n         int
	match     func(*http.Request) bool
	throttled func(*http.Request) bool // requests slowed to 2 MiB/s
	// bytes, when set, kills once the proxy's counter reaches it.
	bytes func(w *world, s harness.Stats) bool
	// tempFile kills as soon as the temporary tarball appears next to the
	// output (best effort: a small tarball is written in milliseconds).
	tempFile bool
}

// process is a ferry binary started in the background.
type process struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	done   chan struct{}
	killed atomic.Bool
}

func start(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	home := t.TempDir()
	p := &process{cmd: exec.Command(harness.Ferry(t), args...), done: make(chan struct{})}
	p.cmd.Env = append(harness.Env(home), env...)
	p.cmd.Dir = home
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ferry: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
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

// kill sends SIGKILL once.
func (p *process) kill() {
	if p.killed.CompareAndSwap(false, true) {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (p *process) signaled() bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// outcome is what a destination repository holds: every tag and the
// digest it names.
func (w *world) outcome(ctx context.Context, t *testing.T, repo string) map[string]digest.Digest {
	t.Helper()
	r := w.dst.Repository(t, repo)
	out := map[string]digest.Digest{}
	var tags []string
	if err := r.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil }); err != nil {
		t.Fatalf("tags of %s: %v", repo, err)
	}
	for _, tag := range tags {
		desc, err := r.Resolve(ctx, tag)
		if err != nil {
			t.Fatalf("%s:%s: %v", repo, tag, err)
		}
		out[tag] = desc.Digest
	}
	for _, d := range w.all {
		if _, err := content.FetchAll(ctx, r, d); err != nil {
			t.Errorf("%s@%s: %v", repo, d.Digest, err)
		}
	}
	return out
}

// leftovers lists the files in dir other than keep.
func leftovers(t *testing.T, dir string, keep ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// report collects the figures of the matrix for the log.
type report struct {
	mu      sync.Mutex
	points  int
	killed  int
	results []string
}

func (r *report) missed(dir, point string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points++
	r.results = append(r.results, fmt.Sprintf("%-22s %-38s not reached (ferry finished first)", dir, point))
}

func (r *report) add(dir, point string, killedAt string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points++
	r.killed++
	r.results = append(r.results, fmt.Sprintf("%-22s %-38s killed %s; re-run complete, store clean, output identical", dir, point, killedAt))
}

func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }
func isBlobGetOf(d digest.Digest) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return harness.IsBlobGet(r) && strings.HasSuffix(r.URL.Path, "/"+d.String())
	}
}

func TestCrashMatrix(t *testing.T) {
	ctx := t.Context()
	var rep report
	t.Cleanup(func() {
		t.Logf("crash matrix: %d kill points tried, %d killed by SIGKILL, every re-run after a kill verified", rep.points, rep.killed)
		for _, line := range rep.results {
			t.Log(line)
		}
	})

	regToReg := direction{
		name: "registry -> registry",
		args: func(w *world, out string) []string {
			return []string{"copy", "-b", w.bundleRef, "--to-repo", w.dstProxy.Ref(out)}
		},
		outFor: func(_ *world, i int) string { return fmt.Sprintf("apps/k%d", i) },
	}
	regToTar := direction{
		name: "registry -> tar",
		args: func(w *world, out string) []string {
			return []string{"copy", "-b", w.bundleRef, "--to-tar", out}
		},
		outFor: func(w *world, i int) string { return filepath.Join(w.work, fmt.Sprintf("k%d", i), "bundle.tar") },
	}
	tarToReg := direction{
		name: "tar -> registry",
		args: func(w *world, out string) []string {
			return []string{"copy", "--tar", filepath.Join(w.work, "reference", "bundle.tar"), "--to-repo", w.dstProxy.Ref(out)}
		},
		outFor: func(_ *world, i int) string { return fmt.Sprintf("apps/k%d", i) },
	}

	src := func(w *world) *harness.Proxy { return w.srcProxy }
	dst := func(w *world) *harness.Proxy { return w.dstProxy }
	nth := func(p func(*world) *harness.Proxy, n int, match func(*http.Request) bool, what string) killPoint {
		return killPoint{name: fmt.Sprintf("%s #%d", what, n), proxy: p, n: n, match: match}
	}
	midDownload := killPoint{
		name:      "mid-download of the large layer",
		proxy:     src,
		throttled: func(r *http.Request) bool { return harness.IsBlobGet(r) },
		bytes: func(w *world, s harness.Stats) bool {
			return s.BlobBytesServedByDigest[w.big.Digest] >= w.big.Size*2/5
		},
	}
	midUpload := killPoint{
		name:  "mid-upload of the large layer",
		proxy: dst,
		throttled: func(r *http.Request) bool {
			return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassUpload
		},
		bytes: func(w *world, s harness.Stats) bool {
			return s.BlobBytesUploaded >= w.small+w.big.Size/2
		},
	}

	matrix := []struct {
		dir    direction
		points []killPoint
	}{
		{regToReg, []killPoint{
			nth(src, 1, nil, "source request"),
			nth(src, 4, nil, "source request"),
			nth(src, 8, nil, "source request"),
			nth(src, 12, isGet, "source read"),
			midDownload,
			nth(dst, 1, nil, "destination request"),
			nth(dst, 5, nil, "destination request"),
			nth(dst, 10, nil, "destination request"),
			nth(dst, 1, func(r *http.Request) bool {
				return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassManifest
			}, "manifest PUT"),
			nth(dst, 3, func(r *http.Request) bool {
				return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassManifest
			}, "manifest PUT"),
			midUpload,
		}},
		{regToTar, []killPoint{
			nth(src, 1, nil, "source request"),
			nth(src, 4, nil, "source request"),
			nth(src, 8, nil, "source request"),
			nth(src, 12, nil, "source request"),
			midDownload,
		}},
		{tarToReg, []killPoint{
			nth(dst, 1, nil, "destination request"),
			nth(dst, 4, nil, "destination request"),
			nth(dst, 9, nil, "destination request"),
			nth(dst, 1, func(r *http.Request) bool {
				return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassManifest
			}, "manifest PUT"),
			nth(dst, 4, func(r *http.Request) bool {
				return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassManifest
			}, "manifest PUT"),
			midUpload,
		}},
	}

	for mi, m := range matrix {
		t.Run(strings.ReplaceAll(m.dir.name, " ", ""), func(t *testing.T) {
			t.Parallel()
			w := newWorld(ctx, t, uint64(40+mi))
			// The reference: an uninterrupted run with its own store.
			refEnv := []string{"FERRY_STORE=" + filepath.Join(w.work, "reference", "store")}
			refTar := filepath.Join(w.work, "reference", "bundle.tar")
			if err := os.MkdirAll(filepath.Dir(refTar), 0o755); err != nil {
				t.Fatal(err)
			}
			if m.dir.name == tarToReg.name {
				// The tarball to import, written with a store of its own.
				harness.RunOK(t, []string{"FERRY_STORE=" + filepath.Join(w.work, "tar-store")}, regToTar.args(w, refTar)...)
			}
			refOut := "apps/reference"
			if m.dir.name == regToTar.name {
				refOut = refTar
			}
			w.srcProxy.Reset()
			w.dstProxy.Reset()
			harness.RunOK(t, refEnv, m.dir.args(w, refOut)...)
			// The last request each proxy saw in the reference run is a
			// kill point too: the very end of the copy.
			points := slices.Clone(m.points)
			if n := w.srcProxy.Stats().Count("", ""); n > 0 {
				points = append(points, nth(src, n, nil, "last source request"))
			}
			if n := w.dstProxy.Stats().Count("", ""); n > 0 {
				points = append(points, nth(dst, n, nil, "last destination request"))
			}
			if m.dir.name == regToTar.name {
				points = append(points, killPoint{name: "while the tarball is written", tempFile: true})
			}
			var refTags map[string]digest.Digest
			var refBytes []byte
			if m.dir.name == regToTar.name {
				var err error
				if refBytes, err = os.ReadFile(refTar); err != nil {
					t.Fatal(err)
				}
			} else {
				refTags = w.outcome(ctx, t, refOut)
			}
			w.srcProxy.Reset()
			w.dstProxy.Reset()

			for i, kp := range points {
				out := m.dir.outFor(w, i)
				if m.dir.name == regToTar.name {
					if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				env := []string{"FERRY_STORE=" + filepath.Join(w.work, fmt.Sprintf("k%d-store", i))}
				killedAt, killed := crashAt(t, w, kp, env, m.dir.args(w, out), out)
				if !killed {
					t.Logf("%s: ferry finished before the kill point; not counted", kp.name)
					rep.missed(m.dir.name, kp.name)
					continue
				}

				// Re-run without faults: complete, store clean, same output.
				w.srcProxy.SetFault(nil)
				w.dstProxy.SetFault(nil)
				harness.RunOK(t, env, m.dir.args(w, out)...)
				if res := harness.Run(t, env, "store", "verify"); res.ExitCode != 0 || !strings.Contains(res.Stderr, "every blob verified") {
					t.Errorf("%s: store verify after the re-run: %s", kp.name, res)
				}
				if m.dir.name == regToTar.name {
					got, err := os.ReadFile(out)
					if err != nil || !bytes.Equal(got, refBytes) {
						t.Errorf("%s: tarball after kill and re-run differs from the reference (%d vs %d bytes, %v)", kp.name, len(got), len(refBytes), err)
					}
					if left := leftovers(t, filepath.Dir(out), filepath.Base(out)); len(left) > 0 {
						t.Errorf("%s: the re-run left files next to the tarball (a killed run's temporaries must be removed): %v", kp.name, left)
					}
				} else if got := w.outcome(ctx, t, out); !mapsEqual(got, refTags) {
					t.Errorf("%s: destination after kill and re-run\n%v\nwant (uninterrupted run)\n%v", kp.name, got, refTags)
				}
				rep.add(m.dir.name, kp.name, killedAt)
			}
		})
	}
}

// crashAt runs ferry with args and kills it at kp; it fails the test unless
// the process died of SIGKILL, and returns where it was killed.
func crashAt(t *testing.T, w *world, kp killPoint, env, args []string, out string) (string, bool) {
	t.Helper()
	if kp.tempFile {
		return crashWhileWriting(t, env, args, out)
	}
	p := kp.proxy(w)
	p.Reset()
	var proc atomic.Pointer[process]
	var seen atomic.Int64
	p.SetFault(func(r *http.Request) harness.Fault {
		var f harness.Fault
		if kp.throttled != nil && kp.throttled(r) {
			f = harness.Throttle(2 * mib)
		}
		if kp.bytes == nil && (kp.match == nil || kp.match(r)) && seen.Add(1) == int64(kp.n) {
			for proc.Load() == nil {
				time.Sleep(time.Millisecond)
			}
			proc.Load().kill()
		}
		return f
	})
	pr := start(t, env, args...)
	proc.Store(pr)
	deadline := time.After(60 * time.Second)
	for kp.bytes != nil && !pr.killed.Load() {
		select {
		case <-pr.done:
			t.Fatalf("%s: ferry ended before the kill point:\n%s", kp.name, pr.out.String())
		case <-deadline:
			t.Fatalf("%s: kill point not reached in 60 s", kp.name)
		case <-time.After(2 * time.Millisecond):
		}
		if kp.bytes(w, p.Stats()) {
			pr.kill()
		}
	}
	select {
	case <-pr.done:
	case <-deadline:
		t.Fatalf("%s: ferry still running after 60 s", kp.name)
	}
	if !pr.signaled() {
		t.Fatalf("%s: ferry was not killed (the kill point was not reached; %d matching requests): %v\n%s", kp.name, seen.Load(), pr.cmd.ProcessState, pr.out.String())
	}
	s := p.Stats()
	return fmt.Sprintf("after %d requests, %d blob bytes served, %d uploaded", s.Count("", ""), s.BlobBytesServed, s.BlobBytesUploaded), true
}

// crashWhileWriting kills ferry as soon as a temporary file for the
// tarball out appears. It reports false when ferry finished first.
func crashWhileWriting(t *testing.T, env, args []string, out string) (string, bool) {
	t.Helper()
	dir, prefix := filepath.Dir(out), "."+filepath.Base(out)+".tmp-"
	pr := start(t, env, args...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-pr.done:
			if pr.signaled() {
				return "while the temporary tarball existed", true
			}
			return "", false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry still running after 60 s:\n%s", pr.out.String())
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				pr.kill()
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func mapsEqual(a, b map[string]digest.Digest) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
