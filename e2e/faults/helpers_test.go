// Package faults_test is the evidence that ferry survives a bad network
// (issue 6, item 1): copies to a repository, to a tarball and from a
// tarball run through proxies that reset connections, answer 500/502/503
// and 429 with Retry-After, cut and slow bodies and flip bytes inside blobs.
// Each run either completes with verified output (the destination's content
// fetched and hashed, the tarball verified, the store verified) or fails
// after its retry budget with an error naming the registry and the digest,
// leaving no corrupt blob anywhere: not in the store, not at the
// destination, not in a tarball.
package faults_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/e2e/harness"
	"github.com/ferry-oci/ferry/ocilayout"
)

func TestMain(m *testing.M) { harness.Main(m) }

const mib = 1 << 20

// world is a source registry and a destination registry, each behind a
// fault-injecting proxy, and one store and work directory for the test.
type world struct {
	src, dst           *harness.Registry
	srcProxy, dstProxy *harness.Proxy
	store, work        string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	work := t.TempDir()
	return &world{
		src: src, dst: dst,
		srcProxy: harness.StartProxy(t, src.Host),
		dstProxy: harness.StartProxy(t, dst.Host),
		store:    filepath.Join(work, "store"),
		work:     work,
	}
}

func (w *world) env() []string { return []string{"FERRY_STORE=" + w.store} }

func (w *world) ferry(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return harness.Run(t, w.env(), args...)
}

func (w *world) ferryOK(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return harness.RunOK(t, w.env(), args...)
}

// fixture is a bundle (tag v1) of two images on the source registry; its
// images.yml names them through the source proxy, so every byte ferry
// reads from the source passes the proxy.
type fixture struct {
	ref    string             // the bundle's "proxy/src/bundle:v1"
	bundle ocispec.Descriptor // the bundle's manifest
	all    []ocispec.Descriptor
	big    ocispec.Descriptor // the largest layer
	sizes  map[digest.Digest]int64
}

func newFixture(ctx context.Context, t *testing.T, w *world, seed uint64) fixture {
	t.Helper()
	b := w.src.Builder(seed)
	var f fixture
	f.sizes = map[digest.Digest]int64{}
	var refs []string
	for _, img := range []struct {
		repo   string
		layers []int
	}{
		{"src/app", []int{300_000, 2000}},
		{"src/db", []int{3 * mib}},
	} {
		desc := b.Image(ctx, t, w.src.Ref(img.repo), harness.ImageSpec{Layers: img.layers})
		refs = append(refs, w.srcProxy.Ref(img.repo)+"@"+desc.Digest.String())
		f.all = append(f.all, b.ImageGraph(ctx, t, w.src.Ref(img.repo), desc)...)
	}
	f.bundle = b.Bundle(ctx, t, w.src.Ref("src/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	f.ref = w.srcProxy.Ref("src/bundle") + ":v1"
	f.all = append(f.all, b.ImageGraph(ctx, t, w.src.Ref("src/bundle"), f.bundle)...)
	for _, d := range f.all {
		f.sizes[d.Digest] = d.Size
		if d.Size > f.big.Size {
			f.big = d
		}
	}
	return f
}

// checkDest fetches every descriptor of f from repo on the destination
// registry (directly, not through the proxy), verifying digest and size,
// and checks that v1 names the bundle.
func (w *world) checkDest(ctx context.Context, t *testing.T, repo string, f fixture) {
	t.Helper()
	r := w.dst.Repository(t, repo)
	got, err := r.Resolve(ctx, "v1")
	if err != nil {
		t.Fatalf("destination %s:v1: %v", repo, err)
	}
	if got.Digest != f.bundle.Digest {
		t.Errorf("destination %s:v1 is %s, want the bundle %s", repo, got.Digest, f.bundle.Digest)
	}
	for _, d := range f.all {
		if _, err := content.FetchAll(ctx, r, d); err != nil {
			t.Errorf("destination %s@%s (%d bytes): %v", repo, d.Digest, d.Size, err)
		}
	}
}

// checkNoTag checks that repo on the destination has no tag v1 and that
// blob d is absent: a failed copy published nothing.
func (w *world) checkNoTag(ctx context.Context, t *testing.T, repo string, d ocispec.Descriptor) {
	t.Helper()
	w.checkNoTagOnly(ctx, t, repo)
	if ok, err := w.dst.Repository(t, repo).Blobs().Exists(ctx, d); err != nil || ok {
		t.Errorf("destination %s has blob %s after a failed copy (exists %v, err %v)", repo, d.Digest, ok, err)
	}
}

// checkNoTagOnly checks that repo on the destination has no tag v1.
func (w *world) checkNoTagOnly(ctx context.Context, t *testing.T, repo string) {
	t.Helper()
	if desc, err := w.dst.Repository(t, repo).Resolve(ctx, "v1"); err == nil {
		t.Errorf("destination %s:v1 exists (%s) after a failed copy", repo, desc.Digest)
	}
}

// verifyStore runs `ferry store verify` and fails the test unless every blob verifies.
func (w *world) verifyStore(t *testing.T) {
	t.Helper()
	res := w.ferry(t, "store", "verify")
	if res.ExitCode != 0 || !strings.Contains(res.Stderr, "every blob verified") {
		t.Errorf("ferry store verify: %s", res)
	}
}

// storeHas reports whether `ferry store ls` lists d.
func (w *world) storeHas(t *testing.T, d digest.Digest) bool {
	t.Helper()
	res := w.ferryOK(t, "store", "ls")
	sc := bufio.NewScanner(strings.NewReader(res.Stdout))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == d.String() {
			return true
		}
	}
	return false
}

// verifyTar checks a tarball with `ferry tar verify`, or with ocilayout
// when this ferry has no tar command.
func verifyTar(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	res := harness.Run(t, nil, "tar", "verify", path)
	if strings.Contains(res.Stderr, "unknown command") {
		tr, err := ocilayout.OpenTar(ctx, path)
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		defer tr.Close()
		problems, err := tr.Verify(ctx)
		if err != nil || len(problems) > 0 {
			t.Errorf("verify %s: %v %v", path, problems, err)
		}
		return
	}
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "OK") {
		t.Errorf("ferry tar verify %s: %s", path, res)
	}
}

// outTar returns the path of bundle.tar in a new directory out in the
// work directory, so that checkNoTar sees only what a copy left there.
func (w *world) outTar(t *testing.T) string {
	t.Helper()
	path := filepath.Join(w.work, "out", "bundle.tar")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkNoTar checks that neither path nor a temporary file for it exists.
func checkNoTar(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed copy (stat: %v)", path, err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), filepath.Base(path)) {
			t.Errorf("%s left in %s after a failed copy", e.Name(), filepath.Dir(path))
		}
	}
}

// blobDigest returns the digest a blob request names, or "".
func blobDigest(path string) digest.Digest {
	i := strings.LastIndex(path, "/blobs/")
	if i < 0 || strings.Contains(path, "/blobs/uploads") {
		return ""
	}
	return digest.Digest(path[i+len("/blobs/"):])
}

// isBlobGetOf matches the GET requests of blob d.
func isBlobGetOf(d digest.Digest) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodGet && blobDigest(r.URL.Path) == d
	}
}

// mixer injects a seeded mix of faults: each request it matches gets, with
// probability prob, a fault drawn from kinds (built for that request, so a
// cut falls inside the body), until budget faults were injected. One
// resource (method and path) gets at most perKey faults, fewer than any
// retry budget of ferry, so a copy under the mix can always complete.
type mixer struct {
	match  func(*http.Request) bool
	kinds  []faultKind
	prob   float64
	perKey int
	sizes  map[digest.Digest]int64

	mu       sync.Mutex
	rnd      *rand.Rand
	budget   int
	byKey    map[string]int
	injected map[string]int // by fault name
}

// faultKind names a fault and builds it for a body of size bytes (0 when
// unknown, e.g. a manifest).
type faultKind struct {
	name  string
	build func(size int64) harness.Fault
}

var (
	fReset      = faultKind{"reset before response", func(int64) harness.Fault { return harness.Reset() }}
	fResetMid   = faultKind{"reset mid-body", func(size int64) harness.Fault { return harness.ResetAfter(third(size)) }}
	fCut        = faultKind{"body cut", func(size int64) harness.Fault { return harness.CutAfter(third(size)) }}
	fSlow       = faultKind{"slow body", func(int64) harness.Fault { return harness.Throttle(4 * mib) }}
	f500        = faultKind{"500", status(http.StatusInternalServerError, "")}
	f502        = faultKind{"502", status(http.StatusBadGateway, "")}
	f503        = faultKind{"503", status(http.StatusServiceUnavailable, "")}
	f503After   = faultKind{"503 Retry-After 1", status(http.StatusServiceUnavailable, "1")}
	f429        = faultKind{"429 Retry-After 1", status(http.StatusTooManyRequests, "1")}
	f429NoAfter = faultKind{"429", status(http.StatusTooManyRequests, "")}
)

// third is a third of a body of size bytes, or 64 bytes of one of unknown size.
func third(size int64) int64 {
	if size <= 0 {
		return 64
	}
	return size / 3
}

func status(code int, retryAfter string) func(int64) harness.Fault {
	return func(int64) harness.Fault {
		var h http.Header
		if retryAfter != "" {
			h = http.Header{"Retry-After": {retryAfter}}
		}
		return harness.RespondStatus(code, h)
	}
}

func newMixer(seed uint64, budget int, prob float64, match func(*http.Request) bool, sizes map[digest.Digest]int64, kinds ...faultKind) *mixer {
	return &mixer{
		match: match, kinds: kinds, prob: prob, perKey: 2, sizes: sizes,
		rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), budget: budget,
		byKey: map[string]int{}, injected: map[string]int{},
	}
}

func (m *mixer) hook(r *http.Request) harness.Fault {
	if m.match != nil && !m.match(r) {
		return harness.Fault{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := r.Method + " " + r.URL.Path
	if m.budget <= 0 || m.byKey[key] >= m.perKey || m.rnd.Float64() >= m.prob {
		return harness.Fault{}
	}
	k := m.kinds[m.rnd.IntN(len(m.kinds))]
	size := m.sizes[blobDigest(r.URL.Path)]
	if r.Method == http.MethodHead && (k.name == fResetMid.name || k.name == fCut.name || k.name == fSlow.name) {
		k = fReset // a HEAD has no body to cut
	}
	m.budget--
	m.byKey[key]++
	m.injected[k.name]++
	return k.build(size)
}

// total is the number of faults injected so far.
func (m *mixer) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, v := range m.injected {
		n += v
	}
	return n
}

func (m *mixer) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.injected))
	for k := range m.injected {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", k, m.injected[k])
	}
	return b.String()
}

// isRead matches the requests that read from a registry: GET and HEAD of
// manifests and blobs (the /v2/ probe and token requests are left alone).
func isRead(r *http.Request) bool {
	c := harness.ClassOf(r)
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (c == harness.ClassManifest || c == harness.ClassBlob)
}

// isManifestPut matches PUT of a manifest (or a tag).
func isManifestPut(r *http.Request) bool {
	return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassManifest
}

// isWrite matches the requests that write to a registry and that a
// registry may refuse with 429 or 503 before processing them: the POST that
// opens a blob upload and the PUT of a manifest (or a tag).
func isWrite(r *http.Request) bool {
	return (r.Method == http.MethodPost && harness.ClassOf(r) == harness.ClassUpload) || isManifestPut(r)
}

// firstFault returns a fault hook that asks hooks in turn and injects the
// first fault one of them returns.
func firstFault(hooks ...func(*http.Request) harness.Fault) func(*http.Request) harness.Fault {
	return func(r *http.Request) harness.Fault {
		for _, h := range hooks {
			if fault := h(r); fault.Kind != harness.FaultNone {
				return fault
			}
		}
		return harness.Fault{}
	}
}

// tally adds up the faults a proxy log recorded, by kind.
func tally(s harness.Stats) map[harness.FaultKind]int {
	out := map[harness.FaultKind]int{}
	for _, rec := range s.Log {
		if rec.Fault != harness.FaultNone {
			out[rec.Fault]++
		}
	}
	return out
}

// rangeStarts returns the start offsets of the ranged GETs of blob d.
func rangeStarts(s harness.Stats, d digest.Digest) []int64 {
	var out []int64
	for _, rec := range s.Log {
		if rec.Method != http.MethodGet || blobDigest(rec.Path) != d || rec.Range == "" {
			continue
		}
		v, ok := strings.CutPrefix(rec.Range, "bytes=")
		if !ok {
			continue
		}
		start, _, _ := strings.Cut(v, "-")
		if n, err := strconv.ParseInt(start, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}
