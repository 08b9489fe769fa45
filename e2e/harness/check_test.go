package harness_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// recorder is a testing.TB that records failures instead of reporting them;
// Fatalf ends the goroutine, as the real one does. Only Helper, Errorf and
// Fatalf may be called.
type recorder struct {
	testing.TB
	errors  []string
	stopped bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.stopped = true
	runtime.Goexit()
}

// record runs f with a recorder in its own goroutine and returns it.
func record(f func(tb testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestTagNames(t *testing.T) {
	d := digest.Digest("sha256:" + strings.Repeat("ab", 32))
	for _, tt := range []struct{ got, want string }{
		{harness.DigestRef("127.0.0.1:5000/team/app", d), "127.0.0.1:5000/team/app@sha256:" + strings.Repeat("ab", 32)},
		{harness.ImgpkgTag(d), "sha256-" + strings.Repeat("ab", 32) + ".imgpkg"},
		{harness.ImageLocationsTag(d), "sha256-" + strings.Repeat("ab", 32) + ".image-locations.imgpkg"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestErrorLine(t *testing.T) {
	const line = "ferry: Error: copy: blob sha256:00: digest mismatch"
	for _, tt := range []struct {
		name       string
		res        harness.Result
		want       string
		errors     int // failures recorded
		wantStop   bool
		wantInText string // in the first failure
	}{
		{"one line", harness.Result{ExitCode: 1, Stderr: "copy | progress\n" + line + "\n"}, line, 0, false, ""},
		{"exit 0", harness.Result{ExitCode: 0, Stderr: line + "\n"}, line, 1, false, "exit status 0"},
		{"two lines", harness.Result{ExitCode: 1, Stderr: line + "\nferry: Error: again\n"}, line, 1, false, "2 "},
		{"panic", harness.Result{ExitCode: 1, Stderr: line + "\npanic: boom\ngoroutine 1 [running]:\n"}, line, 1, false, "panic"},
		{"no line", harness.Result{ExitCode: 1, Stderr: "Error: something\n"}, "", 1, true, "no \"ferry: Error:\" line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			r := record(func(tb testing.TB) { got = harness.ErrorLine(tb, tt.res) })
			if got != tt.want || len(r.errors) != tt.errors || r.stopped != tt.wantStop {
				t.Fatalf("ErrorLine = %q, failures %q, stopped %v; want %q, %d failures, stopped %v", got, r.errors, r.stopped, tt.want, tt.errors, tt.wantStop)
			}
			if tt.errors > 0 && !strings.Contains(r.errors[0], tt.wantInText) {
				t.Errorf("failure %q does not say %q", r.errors[0], tt.wantInText)
			}
		})
	}
}

// TestRepositoryHelpers checks Tags, FetchAll, ImageGraph and AnonymousRepository
// against a registry, FetchAll also against wrong bytes from the proxy.
func TestRepositoryHelpers(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	b := reg.Builder(11)
	img := b.Image(ctx, t, reg.Ref("help/app"), harness.ImageSpec{Tag: "v2"})
	repo := harness.AnonymousRepository(t, p.Ref("help/app"))
	for _, tag := range []string{"v10", "a"} {
		if err := repo.Tag(ctx, img, tag); err != nil {
			t.Fatal(err)
		}
	}

	if got := harness.Tags(ctx, t, repo); strings.Join(got, ",") != "a,v10,v2" {
		t.Errorf("Tags = %q, want sorted a,v10,v2", got)
	}
	if got := harness.Tags(ctx, t, harness.AnonymousRepository(t, p.Ref("help/never-pushed"))); got != nil {
		t.Errorf("Tags of an unknown repository = %q, want nil", got)
	}

	raw := harness.FetchAll(ctx, t, repo, img)
	layer := decode[ocispec.Manifest](t, raw).Layers[0]
	if got := harness.FetchAll(ctx, t, repo, layer); int64(len(got)) != layer.Size {
		t.Errorf("FetchAll(layer) = %d bytes, want %d", len(got), layer.Size)
	}
	g := b.ImageGraph(ctx, t, reg.Ref("help/app"), ocispec.Descriptor{Digest: img.Digest})
	if len(g) != 3 || g[0].Digest != img.Digest || g[0].MediaType != ocispec.MediaTypeImageManifest ||
		g[1].Digest != decode[ocispec.Manifest](t, raw).Config.Digest || g[2].Digest != layer.Digest {
		t.Errorf("ImageGraph = %+v, want the manifest (with its media type), config and layer", g)
	}

	p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.CorruptAt(10)))
	defer p.SetFault(nil)
	r := record(func(tb testing.TB) { harness.FetchAll(ctx, tb, repo, layer) })
	if !r.stopped || len(r.errors) != 1 || !strings.Contains(r.errors[0], "content has digest") {
		t.Errorf("FetchAll of corrupted bytes: failures %q, stopped %v; want a stop naming the digest", r.errors, r.stopped)
	}
}

// TestFaultCycleServeManifest makes a tag answer with two manifests in
// turn: the registry's and one served by the proxy.
func TestFaultCycleServeManifest(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	b := reg.Builder(12)
	a := b.Image(ctx, t, reg.Ref("cycle/app"), harness.ImageSpec{Tag: "v1"})
	other := b.Image(ctx, t, reg.Ref("cycle/app"), harness.ImageSpec{Layers: []int{100}, Tag: "other"})
	_, otherRaw := b.FetchManifest(ctx, t, reg.Ref("cycle/app"), other.Digest.String())

	p.SetFault(harness.FaultCycle(harness.IsManifestRequest("cycle/app", "v1"),
		harness.Fault{}, harness.ServeManifest(otherRaw, ocispec.MediaTypeImageManifest)))
	repo := harness.AnonymousRepository(t, p.Ref("cycle/app"))
	var got []digest.Digest
	for i := range 4 {
		if i%2 == 0 {
			d, err := repo.Resolve(ctx, "v1") // HEAD
			if err != nil {
				t.Fatalf("resolve %d: %v", i, err)
			}
			got = append(got, d.Digest)
			continue
		}
		d, rc, err := repo.FetchReference(ctx, "v1") // GET
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		rc.Close()
		got = append(got, d.Digest)
	}
	want := []digest.Digest{a.Digest, other.Digest, a.Digest, other.Digest}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("v1 resolved to %v, want %v (registry and proxy in turn)", got, want)
	}
	// Other references are not matched.
	if d, err := repo.Resolve(ctx, "other"); err != nil || d.Digest != other.Digest {
		t.Errorf("other = %v, %v", d.Digest, err)
	}
	if d, err := repo.Resolve(ctx, a.Digest.String()); err != nil || d.Digest != a.Digest {
		t.Errorf("%s = %v, %v", a.Digest, d.Digest, err)
	}
	s := p.Stats()
	var statuses []string
	for _, rec := range s.Log {
		if rec.Path == "/v2/cycle/app/manifests/v1" {
			statuses = append(statuses, fmt.Sprintf("%s %d %s", rec.Method, rec.Status, rec.Fault))
		}
	}
	if want := "HEAD 200 none,GET 200 status,HEAD 200 none,GET 200 status"; strings.Join(statuses, ",") != want {
		t.Errorf("requests for v1: %q, want %q", statuses, want)
	}

	// No faults: nothing is injected.
	if f := harness.FaultCycle(nil)(&http.Request{}); f.Kind != harness.FaultNone {
		t.Errorf("FaultCycle with no faults injected %v", f.Kind)
	}
}

func TestLayerFilesAndReadFile(t *testing.T) {
	var tb bytes.Buffer
	zw := gzip.NewWriter(&tb)
	tw := tar.NewWriter(zw)
	for _, e := range []struct {
		h    tar.Header
		body string
	}{
		{tar.Header{Typeflag: tar.TypeDir, Name: "./b/", Mode: 0o755}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: "./a", Mode: 0o644}, "first"},
		{tar.Header{Typeflag: tar.TypeReg, Name: "b/c", Mode: 0o644}, "second"},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "a"}, ""},
	} {
		e.h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&e.h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	got := harness.LayerFiles(t, tb.Bytes())
	if len(got) != 2 || string(got["a"]) != "first" || string(got["b/c"]) != "second" {
		t.Errorf("LayerFiles = %q, want a and b/c only", got)
	}
	if r := record(func(tb testing.TB) { harness.LayerFiles(tb, []byte("not gzip")) }); !r.stopped {
		t.Errorf("LayerFiles of a non-gzip blob did not stop the test: %q", r.errors)
	}

	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := harness.ReadFile(t, path); string(got) != "content" {
		t.Errorf("ReadFile = %q", got)
	}
}
