package badinput_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// A bundle must have exactly one layer: one with none and one with two are
// refused, naming the bundle.
func TestBundleLayerCount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)

	cfg0 := w.bundleConfig(ctx, t, "b/zero", nil)
	zero, _ := w.pushJSON(ctx, t, "b/zero", ocispec.MediaTypeImageManifest, manifestOf(cfg0), "v1")

	l1, d1 := w.layer(ctx, t, "b/two", imagesYML(t))
	l2, d2 := w.layer(ctx, t, "b/two", map[string][]byte{".imgpkg/images.yml": []byte("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages: []\n"), "config/x.yml": []byte("x: 1\n")})
	cfg2 := w.bundleConfig(ctx, t, "b/two", []digest.Digest{d1, d2})
	two, _ := w.pushJSON(ctx, t, "b/two", ocispec.MediaTypeImageManifest, manifestOf(cfg2, l1, l2), "v1")

	for _, tc := range []struct {
		name, repo string
		desc       ocispec.Descriptor
	}{
		{"zero layers", "b/zero", zero},
		{"two layers", "b/two", two},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.failBoth(ctx, t, "-b", w.proxy.Ref(tc.repo)+":v1", tc.repo, tc.desc.Digest.String())
			w.failPull(t, "-b", w.proxy.Ref(tc.repo)+":v1", tc.repo, tc.desc.Digest.String())
		})
	}
}

// A layer descriptor claiming 1 TiB must not make ferry allocate it: the
// copy fails fast with a small RSS. One claiming fewer bytes than the blob
// has fails on the size mismatch.
func TestLyingLayerSize(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)

	for _, tc := range []struct {
		name  string
		delta func(real int64) int64
	}{
		{"claims 1 TiB", func(int64) int64 { return 1 << 40 }},
		{"claims fewer bytes", func(real int64) int64 { return real - 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "lie/" + strings.ToLower(strings.ReplaceAll(tc.name, " ", "-"))
			l, diffID := w.layer(ctx, t, repo, map[string][]byte{"data.bin": bytes.Repeat([]byte(tc.name), 100_000)})
			real := l.Size
			l.Size = tc.delta(real)
			cfg := w.imageConfig(ctx, t, repo, []digest.Digest{diffID})
			m, _ := w.pushJSON(ctx, t, repo, ocispec.MediaTypeImageManifest, manifestOf(cfg, l), "v1")
			t.Logf("layer %s: %d bytes, descriptor says %d; manifest %s", l.Digest, real, l.Size, m.Digest)

			src := w.proxy.Ref(repo) + ":v1"
			// To a repository, under /usr/bin/time for the peak RSS.
			res, rssKiB, took := w.timedRun(t, "copy", "-i", src, "--to-repo", w.dst.Ref("out/x"))
			t.Logf("to-repo: %s, max RSS %d KiB", took.Round(time.Millisecond), rssKiB)
			expectFailure(t, res, l.Digest.String(), repo)
			if took > 10*time.Second {
				t.Errorf("the copy took %s, want it to fail fast (< 10s)", took)
			}
			if rssKiB > 200*1024 {
				t.Errorf("max RSS %d KiB: the lying size was allocated?", rssKiB)
			}
			w.checkNothingTagged(ctx, t, "out/x")

			before := w.snapshot(t)
			res, rssKiB, took = w.timedRun(t, "copy", "-i", src, "--to-tar", filepath.Join(w.out, "x.tar"))
			t.Logf("to-tar: %s, max RSS %d KiB", took.Round(time.Millisecond), rssKiB)
			expectFailure(t, res, l.Digest.String(), repo)
			if took > 10*time.Second {
				t.Errorf("the copy took %s, want it to fail fast (< 10s)", took)
			}
			if rssKiB > 200*1024 {
				t.Errorf("max RSS %d KiB: the lying size was allocated?", rssKiB)
			}
			checkOutEmpty(t, w.out)
			w.checkUnchanged(t, before, "copy --to-tar")

			// Pulled into a directory: the layer is extracted as it streams.
			before = w.snapshot(t)
			res, rssKiB, took = w.timedRun(t, "pull", "-i", src, "-o", w.pulled)
			t.Logf("pull: %s, max RSS %d KiB", took.Round(time.Millisecond), rssKiB)
			expectFailure(t, res, l.Digest.String(), repo)
			if took > 10*time.Second {
				t.Errorf("the pull took %s, want it to fail fast (< 10s)", took)
			}
			if rssKiB > 200*1024 {
				t.Errorf("max RSS %d KiB: the lying size was allocated?", rssKiB)
			}
			w.checkUnchanged(t, before, "pull -o")
			w.verifyStore(t)
		})
	}
}

// timedRun runs ferry like harness.Run, under /usr/bin/time when it exists,
// and returns the peak RSS in KiB (0 when unknown) and the wall time.
func (w *world) timedRun(t *testing.T, args ...string) (harness.Result, int64, time.Duration) {
	t.Helper()
	timeBin := "/usr/bin/time"
	if _, err := os.Stat(timeBin); err != nil {
		start := time.Now()
		res := w.ferry(t, args...)
		return res, 0, time.Since(start)
	}
	home := t.TempDir()
	rssFile := filepath.Join(t.TempDir(), "rss")
	cmd := exec.CommandContext(t.Context(), timeBin, append([]string{"-f", "%M", "-o", rssFile, harness.Ferry(t)}, args...)...)
	cmd.Env = append(harness.Env(home), w.env()...)
	cmd.Dir = home
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	res := harness.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.ExitCode = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ferry %v: %v", args, err)
	}
	t.Logf("ferry %s (%s): %s", strings.Join(args, " "), took.Round(time.Millisecond), res)
	raw, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatalf("time output: %v", err)
	}
	lines := strings.Fields(string(raw))
	rss, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("time output %q: %v", raw, err)
	}
	return res, rss, took
}

// A 5 MiB manifest (over the 4 MiB limit) is refused. The registry does not
// take such a manifest, so the proxy serves it for the tag and the digest.
func TestManifestOverSizeLimit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	l, diffID := w.layer(ctx, t, "big/img", map[string][]byte{"a": []byte("a")})
	cfg := w.imageConfig(ctx, t, "big/img", []digest.Digest{diffID})
	m := manifestOf(cfg, l)
	m.Annotations = map[string]string{"padding": strings.Repeat("p", 5*mib)}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(raw)
	t.Logf("manifest %s: %d bytes", d, len(raw))
	var served atomic.Int64
	w.proxy.SetFault(func(r *http.Request) harness.Fault {
		if harness.IsManifestRequest("big/img", "v1")(r) || harness.IsManifestRequest("big/img", d.String())(r) {
			served.Add(1)
			return harness.ServeManifest(raw, ocispec.MediaTypeImageManifest)
		}
		return harness.Fault{}
	})
	w.failBoth(ctx, t, "-i", w.proxy.Ref("big/img")+":v1", "big/img", d.String())
	w.failPull(t, "-i", w.proxy.Ref("big/img")+":v1", "big/img", d.String())
	if served.Load() == 0 {
		t.Error("the proxy never served the big manifest")
	}
}

// An index whose child manifest does not exist (404) fails naming the child.
func TestIndexChildMissing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(7)
	child := b.Image(ctx, t, w.src.Ref("idx/app"), harness.ImageSpec{})
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	other := b.Image(ctx, t, w.src.Ref("idx/app"), harness.ImageSpec{})
	other.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{child, other}}
	idx.SchemaVersion = 2
	w.pushJSON(ctx, t, "idx/app", ocispec.MediaTypeImageIndex, idx, "v1")
	// The registry checks children on push; delete one afterwards.
	if err := w.src.Repository(t, "idx/app").Delete(ctx, other); err != nil {
		t.Fatalf("delete child: %v", err)
	}
	w.failBoth(ctx, t, "-i", w.proxy.Ref("idx/app")+":v1", other.Digest.String())
}

// A chain of 30 nested bundles (each lists the next) terminates: it is
// copied whole, or refused with a clear error.
func TestDeepBundleChain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(9)
	img := b.Image(ctx, t, w.src.Ref("deep/img"), harness.ImageSpec{})
	ref := w.proxy.Ref("deep/img") + "@" + img.Digest.String()
	const depth = 30
	var top ocispec.Descriptor
	for i := range depth {
		spec := harness.BundleSpec{Images: []string{ref}}
		if i == depth-1 {
			spec.Tag = "v1"
		}
		top = b.Bundle(ctx, t, w.src.Ref("deep/bundle"), spec)
		ref = w.proxy.Ref("deep/bundle") + "@" + top.Digest.String()
	}
	src := w.proxy.Ref("deep/bundle") + ":v1"
	for _, to := range []struct {
		name string
		args []string
	}{
		{"to-repo", []string{"--to-repo", w.dst.Ref("deep/bundle")}},
		{"to-tar", []string{"--to-tar", filepath.Join(w.out, "deep.tar")}},
	} {
		t.Run(to.name, func(t *testing.T) {
			start := time.Now()
			res := w.ferry(t, append([]string{"copy", "-b", src}, to.args...)...)
			took := time.Since(start)
			if strings.Contains(res.Stderr, "panic:") || strings.Contains(res.Stderr, "goroutine ") {
				t.Errorf("panic:\n%s", res.Stderr)
			}
			if took > 2*time.Minute {
				t.Errorf("%d nested bundles took %s", depth, took)
			}
			switch res.ExitCode {
			case 0:
				t.Logf("RESULT: %d nested bundles copied in %s", depth, took.Round(time.Millisecond))
				if to.name == "to-repo" {
					r := w.dst.Repository(t, "deep/bundle")
					got, err := r.Resolve(ctx, "v1")
					if err != nil || got.Digest != top.Digest {
						t.Errorf("destination deep/bundle:v1 = %v, %v; want %s", got.Digest, err, top.Digest)
					}
					// The innermost image reached the destination too.
					if _, err := content.FetchAll(ctx, r, img); err != nil {
						t.Errorf("innermost image %s at the destination: %v", img.Digest, err)
					}
				} else {
					res := harness.Run(t, nil, "tar", "verify", filepath.Join(w.out, "deep.tar"))
					if res.ExitCode != 0 {
						t.Errorf("tar verify: %s", res)
					}
				}
			default:
				expectFailure(t, res, "deep/bundle")
			}
			w.verifyStore(t)
		})
	}
}

// A manifest whose bytes change between requests (the proxy serves other
// bytes for the same digest URL) is refused naming the digest; nothing is
// committed.
func TestManifestChangesBetweenRequests(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(5)
	good := b.Image(ctx, t, w.src.Ref("chg/img"), harness.ImageSpec{Tag: "v1"})
	evil := b.Image(ctx, t, w.src.Ref("chg/other"), harness.ImageSpec{Layers: []int{2048}})
	_, evilRaw := b.FetchManifest(ctx, t, w.src.Ref("chg/other"), evil.Digest.String())

	for _, tc := range []struct {
		name   string
		honest int64 // GETs answered honestly before the lie
	}{
		{"every GET by digest lies", 0},
		{"second GET lies", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gets atomic.Int64
			w.proxy.SetFault(func(r *http.Request) harness.Fault {
				if r.Method != http.MethodGet || !(harness.IsManifestRequest("chg/img", good.Digest.String())(r) || harness.IsManifestRequest("chg/img", "v1")(r)) {
					return harness.Fault{}
				}
				if gets.Add(1) <= tc.honest {
					return harness.Fault{}
				}
				// Other bytes under the digest asked for.
				lie := harness.ServeManifest(evilRaw, ocispec.MediaTypeImageManifest)
				lie.Header.Set("Docker-Content-Digest", good.Digest.String())
				return lie
			})
			defer w.proxy.SetFault(nil)
			src := w.proxy.Ref("chg/img") + "@" + good.Digest.String()
			res := w.ferry(t, "copy", "-i", src, "--to-repo", w.dst.Ref("chg/x"))
			n := gets.Load()
			if tc.honest > 0 && n <= tc.honest && res.ExitCode == 0 {
				// ferry read the manifest once and never saw the lie; the
				// copy is then right to succeed with the true content.
				t.Logf("RESULT: ferry GETs the manifest %d time(s); the second GET never happens", n)
				if _, err := content.FetchAll(ctx, w.dst.Repository(t, "chg/x"), good); err != nil {
					t.Errorf("destination: %v", err)
				}
				return
			}
			expectFailure(t, res, good.Digest.String())
			if ok, _ := w.dst.Repository(t, "chg/x").Exists(ctx, good); ok {
				t.Errorf("destination has %s after a failed copy", good.Digest)
			}
			w.checkNothingTagged(ctx, t, "chg/x")
			gets.Store(0)
			before := w.snapshot(t)
			res = w.ferry(t, "copy", "-i", src, "--to-tar", filepath.Join(w.out, "x.tar"))
			expectFailure(t, res, good.Digest.String())
			checkOutEmpty(t, w.out)
			w.checkUnchanged(t, before, "copy --to-tar")
			w.verifyStore(t)
		})
	}
}

// mountTmpfs mounts a tmpfs of size at dir, skipping the test when that is
// not permitted, and unmounts it at the end.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

func remount(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v: %s", dir, err, out)
	}
}

// A store on a full filesystem: a clear "no space" error, exit 1, a store
// that verifies; once the filesystem is bigger, the same copy completes.
func TestStoreOnFullFilesystem(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	w.store = filepath.Join(t.TempDir(), "tmpfs-store")
	mountTmpfs(t, w.store, "2m")
	img := w.src.Builder(3).Image(ctx, t, w.src.Ref("full/img"), harness.ImageSpec{Layers: []int{4 * mib}, Tag: "v1"})
	src := w.proxy.Ref("full/img") + ":v1"

	res := w.ferry(t, "copy", "-i", src, "--to-repo", w.dst.Ref("full/x"))
	expectFailure(t, res, "no space left on device")
	w.checkNothingTagged(ctx, t, "full/x")
	w.verifyStore(t)

	remount(t, w.store, "64m")
	res = w.ferry(t, "copy", "-i", src, "--to-repo", w.dst.Ref("full/x"))
	if res.ExitCode != 0 {
		t.Fatalf("re-run on a bigger filesystem: %s", res)
	}
	if got, err := w.dst.Repository(t, "full/x").Resolve(ctx, "v1"); err != nil || got.Digest != img.Digest {
		t.Errorf("destination full/x:v1 = %v, %v; want %s", got.Digest, err, img.Digest)
	}
	w.verifyStore(t)
}

// An output directory on a full filesystem: a clear "no space" error, exit
// 1, no tarball (or temporary file) left; once bigger, the copy completes.
func TestTarOnFullFilesystem(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	w.out = filepath.Join(t.TempDir(), "tmpfs-out")
	mountTmpfs(t, w.out, "2m")
	w.src.Builder(4).Image(ctx, t, w.src.Ref("full/img"), harness.ImageSpec{Layers: []int{4 * mib}, Tag: "v1"})
	src := w.proxy.Ref("full/img") + ":v1"
	tarPath := filepath.Join(w.out, "x.tar")

	res := w.ferry(t, "copy", "-i", src, "--to-tar", tarPath)
	expectFailure(t, res, "no space left on device")
	checkOutEmpty(t, w.out)
	w.verifyStore(t)

	remount(t, w.out, "64m")
	res = w.ferry(t, "copy", "-i", src, "--to-tar", tarPath)
	if res.ExitCode != 0 {
		t.Fatalf("re-run on a bigger filesystem: %s", res)
	}
	if res := harness.Run(t, nil, "tar", "verify", tarPath); res.ExitCode != 0 {
		t.Errorf("tar verify: %s", res)
	}
	w.verifyStore(t)
}
