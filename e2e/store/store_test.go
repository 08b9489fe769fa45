package store_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// bigFile is the size of the file in the large layer; the blob is a little
// larger (a tar in an uncompressed gzip).
const bigFile = 32 * mib

// bigFixture is a bundle of one image whose only layer is large.
type bigFixture struct {
	ref    string // bundle:v1 through the proxy
	bundle ocispec.Descriptor
	graphs [][]ocispec.Descriptor // the bundle's and the image's
	big    ocispec.Descriptor     // the large layer
}

func newBigFixture(ctx context.Context, t *testing.T, w *world, seed uint64) bigFixture {
	t.Helper()
	b := w.src.Builder(seed)
	img, imgGraph := w.image(ctx, t, b, "src/big", bigFile)
	ref, bundle, bundleGraph := w.bundle(ctx, t, b, "src/bundle", []string{img})
	return bigFixture{ref: ref, bundle: bundle, graphs: [][]ocispec.Descriptor{bundleGraph, imgGraph}, big: imgGraph[2]}
}

// A second copy of a bundle, into another empty repository, is served from
// the store: not one blob byte comes from the source. --no-store, for
// contrast, fetches every blob again, and the store is left as it was.
func TestSecondCopyFetchesNothing(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(1)
	app, appGraph := w.image(ctx, t, b, "src/app", 300_000, 2000)
	db, dbGraph := w.image(ctx, t, b, "src/db", 500_000)
	ref, bundle, bundleGraph := w.bundle(ctx, t, b, "src/bundle", []string{app, db})
	blobs := blobsOf(bundleGraph, appGraph, dbGraph)

	w.ferryOK(t, "copy", "-b", ref, "--to-repo", w.dst.Ref("apps/one"))
	s := w.proxy.Stats()
	for d, size := range blobs {
		if got := s.BlobBytesServedByDigest[d]; got != size {
			t.Errorf("first copy: blob %s: %d bytes served, want %d", d, got, size)
		}
	}
	w.checkDest(ctx, t, "apps/one", bundle, bundleGraph, appGraph, dbGraph)

	w.proxy.Reset()
	w.ferryOK(t, "copy", "-b", ref, "--to-repo", w.dst.Ref("apps/two"))
	s = w.proxy.Stats()
	if s.BlobBytesServed != 0 || s.Count(http.MethodGet, harness.ClassBlob) != 0 {
		t.Errorf("second copy into an empty repository: %d blob bytes in %d GETs from the source, want 0: %v",
			s.BlobBytesServed, s.Count(http.MethodGet, harness.ClassBlob), s.BlobBytesServedByDigest)
	}
	for _, rec := range s.Log {
		t.Logf("second copy: source request %s %s -> %d", rec.Method, rec.Path, rec.Status)
	}
	w.checkDest(ctx, t, "apps/two", bundle, bundleGraph, appGraph, dbGraph)

	// The counter is not blind: without the store every blob comes again
	// (the small ones that discovery reads, configs and the bundle layer,
	// even twice: once to discover, once to copy).
	w.proxy.Reset()
	w.ferryOK(t, "copy", "-b", ref, "--to-repo", w.dst.Ref("apps/three"), "--no-store")
	s = w.proxy.Stats()
	for d, size := range blobs {
		if got := s.BlobBytesServedByDigest[d]; got != size && (size > 64<<10 || got != 2*size) {
			t.Errorf("--no-store copy: blob %s: %d bytes served, want %d (or twice that for a small blob)", d, got, size)
		}
	}
	w.checkDest(ctx, t, "apps/three", bundle, bundleGraph, appGraph, dbGraph)
	w.checkStoreHolds(t, union(bundleGraph, appGraph, dbGraph))
}

// A run that fails after receiving half of a large layer leaves the half in
// the store; the next run fetches only the rest, by a Range request.
func TestResumeInNextRun(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	f := newBigFixture(ctx, t, w, 2)
	half := f.big.Size / 2

	// Run 1: the first GET of the layer is cut at half, every later one
	// fails, and ferry is told not to retry requests: the run fails.
	var first atomic.Bool
	isBig := isGetOf(f.big.Digest)
	w.proxy.SetFault(func(r *http.Request) harness.Fault {
		if !isBig(r) {
			return harness.Fault{}
		}
		if first.CompareAndSwap(false, true) {
			return harness.CutAfter(half)
		}
		return harness.RespondStatus(http.StatusInternalServerError, nil)
	})
	res := w.ferry(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/app"), "--registry-retry-count", "0")
	if res.ExitCode == 0 {
		t.Fatalf("run 1 succeeded although every request after the cut failed: %s", res)
	}
	if got := w.proxy.Stats().BlobBytesServedByDigest[f.big.Digest]; got != half {
		t.Fatalf("run 1 received %d bytes of the large layer, want %d (the cut)", got, half)
	}
	u := w.du(t)
	if u.Partials != 1 || humanMiB(t, u.PartialHuman) < float64(half)/mib-0.1 {
		t.Errorf("after run 1: %d partials (%s), want 1 of about %.1f MiB", u.Partials, u.PartialHuman, float64(half)/mib)
	}

	// Run 2, without faults: only the rest of the layer is fetched.
	w.proxy.SetFault(nil)
	w.proxy.Reset()
	w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/app"))
	s := w.proxy.Stats()
	got, rest := s.BlobBytesServedByDigest[f.big.Digest], f.big.Size-half
	t.Logf("large layer %d bytes; run 1 cut at %d; run 2 fetched %d (ranges %q)", f.big.Size, half, got, rangesOf(s, f.big.Digest))
	if got < rest || got > rest+f.big.Size/100 {
		t.Errorf("run 2 fetched %d bytes of the large layer, want the rest (%d) plus at most 1%%", got, rest)
	}
	if want := fmt.Sprintf("bytes=%d-", half); !hasRangePrefix(rangesOf(s, f.big.Digest), want) {
		t.Errorf("run 2: no GET of the large layer with a range %s...: %q", want, rangesOf(s, f.big.Digest))
	}
	w.checkDest(ctx, t, "apps/app", f.bundle, f.graphs...)
	w.verifyStore(t)
	w.checkStoreHolds(t, union(f.graphs...))
}

// A connection cut in the middle of a large layer is survived within the
// run: the download continues from the byte reached.
func TestCutResumedInRun(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	f := newBigFixture(ctx, t, w, 3)
	half := f.big.Size / 2

	w.proxy.SetFault(harness.FaultFirst(1, isGetOf(f.big.Digest), harness.CutAfter(half)))
	w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/app"))
	s := w.proxy.Stats()
	got := s.BlobBytesServedByDigest[f.big.Digest]
	ranges := rangesOf(s, f.big.Digest)
	t.Logf("large layer %d bytes, cut at %d: %d bytes fetched in all (ranges %q)", f.big.Size, half, got, ranges)
	if got < f.big.Size || got > f.big.Size+f.big.Size/100 {
		t.Errorf("fetched %d bytes of the large layer in all, want its size (%d) plus at most 1%%", got, f.big.Size)
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], fmt.Sprintf("bytes=%d-", half)) {
		t.Errorf("GETs of the large layer: ranges %q, want a whole GET then one from byte %d", ranges, half)
	}
	w.checkDest(ctx, t, "apps/app", f.bundle, f.graphs...)
	w.verifyStore(t)
	w.checkStoreHolds(t, union(f.graphs...))
}

// A ferry process killed with SIGKILL in the middle of a large layer leaves
// a partial download that the next run continues; the result verifies.
func TestKilledRunResumes(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	f := newBigFixture(ctx, t, w, 4)

	// 16 MiB/s: about two seconds for the layer, time to kill ferry.
	w.proxy.SetFault(func(r *http.Request) harness.Fault {
		if isGetOf(f.big.Digest)(r) {
			return harness.Throttle(16 * mib)
		}
		return harness.Fault{}
	})
	p := w.start(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/app"))
	deadline := time.Now().Add(30 * time.Second)
	for w.proxy.Stats().BlobBytesServedByDigest[f.big.Digest] < 8*mib {
		select {
		case <-p.done:
			t.Fatalf("ferry ended before the kill:\n%s", p)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the large layer did not start within 30 s:\n%s", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	killedAt := w.proxy.Stats().BlobBytesServedByDigest[f.big.Digest]
	if ws, ok := p.cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
		t.Fatalf("ferry was not killed by a signal: %v\n%s", p.cmd.ProcessState, p)
	}
	u := w.du(t)
	t.Logf("killed after %d bytes of %d served; store: %+v", killedAt, f.big.Size, u)
	if u.Partials != 1 {
		t.Errorf("after the kill: %d partial downloads, want 1", u.Partials)
	}

	w.proxy.SetFault(nil)
	w.proxy.Reset()
	w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/app"))
	s := w.proxy.Stats()
	got := s.BlobBytesServedByDigest[f.big.Digest]
	t.Logf("run after the kill fetched %d bytes of the large layer (ranges %q)", got, rangesOf(s, f.big.Digest))
	// What the killed process had received but not yet written is
	// fetched again: allow 1% of the layer and 1 MiB in flight.
	if rest := f.big.Size - killedAt; got > rest+f.big.Size/100+mib {
		t.Errorf("run after the kill fetched %d bytes of the large layer, want at most the rest (%d) plus 1%% and 1 MiB", got, rest)
	}
	w.verifyStore(t)
	w.checkDest(ctx, t, "apps/app", f.bundle, f.graphs...)
	w.checkStoreHolds(t, union(f.graphs...))
}

// Two ferry processes copy overlapping bundles (sharing an image) at the
// same time through one store: both complete, and the store verifies.
func TestConcurrentCopiesShareStore(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	b := w.src.Builder(5)
	shared, sharedGraph := w.image(ctx, t, b, "src/shared", 8*mib, 4000)
	onlyA, aGraph := w.image(ctx, t, b, "src/only-a", 1*mib)
	onlyB, bGraph := w.image(ctx, t, b, "src/only-b", 1*mib)
	refA, bundleA, bundleAGraph := w.bundle(ctx, t, b, "src/bundle-a", []string{shared, onlyA})
	refB, bundleB, bundleBGraph := w.bundle(ctx, t, b, "src/bundle-b", []string{onlyB, shared})
	big := sharedGraph[2]

	// The shared layer comes slowly (half a second), so that both
	// processes want it while it is being downloaded.
	w.proxy.SetFault(func(r *http.Request) harness.Fault {
		if isGetOf(big.Digest)(r) {
			return harness.Throttle(16 * mib)
		}
		return harness.Fault{}
	})
	begin := time.Now()
	pa := w.start(t, "copy", "-b", refA, "--to-repo", w.dst.Ref("apps/a"))
	pb := w.start(t, "copy", "-b", refB, "--to-repo", w.dst.Ref("apps/b"))
	if code := pa.wait(t, time.Minute); code != 0 {
		t.Errorf("copy of bundle a: exit %d\n%s", code, pa)
	}
	t.Logf("copy of bundle a ended after %s", time.Since(begin).Round(time.Millisecond))
	if code := pb.wait(t, time.Minute); code != 0 {
		t.Errorf("copy of bundle b: exit %d\n%s", code, pb)
	}
	t.Logf("copy of bundle b ended after %s", time.Since(begin).Round(time.Millisecond))
	s := w.proxy.Stats()
	t.Logf("shared layer (%d bytes) served %d bytes in all (ranges %q)", big.Size, s.BlobBytesServedByDigest[big.Digest], rangesOf(s, big.Digest))
	// Each process may fetch it itself, never more.
	if got := s.BlobBytesServedByDigest[big.Digest]; got > 2*big.Size {
		t.Errorf("shared layer served %d bytes, want at most twice its size %d", got, big.Size)
	}
	w.verifyStore(t)
	w.checkStoreHolds(t, union(sharedGraph, aGraph, bGraph, bundleAGraph, bundleBGraph))
	w.checkDest(ctx, t, "apps/a", bundleA, bundleAGraph, sharedGraph, aGraph)
	w.checkDest(ctx, t, "apps/b", bundleB, bundleBGraph, sharedGraph, bGraph)
}

// ferry store path, du, ls and prune report the real content of the store.
func TestStoreCommands(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)

	// path: --store, then FERRY_STORE, then XDG_CACHE_HOME, then HOME.
	cache := t.TempDir()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"flag", []string{"FERRY_STORE=/elsewhere"}, []string{"--store", w.store}, w.store},
		{"FERRY_STORE", nil, nil, w.store},
		{"XDG_CACHE_HOME", []string{"FERRY_STORE=", "XDG_CACHE_HOME=" + cache}, nil, filepath.Join(cache, "ferry", "store")},
		{"HOME", []string{"FERRY_STORE=", "XDG_CACHE_HOME=", "HOME=" + cache}, nil, filepath.Join(cache, ".cache", "ferry", "store")},
	} {
		res := harness.RunOK(t, append(w.env(), tc.env...), append([]string{"store", "path"}, tc.args...)...)
		if got := strings.TrimSpace(res.Stdout); got != tc.want {
			t.Errorf("%s: ferry store path = %q, want %q", tc.name, got, tc.want)
		}
	}

	b := w.src.Builder(6)
	app, appGraph := w.image(ctx, t, b, "src/app", 100_000, 3000)
	ref, bundle, bundleGraph := w.bundle(ctx, t, b, "src/bundle", []string{app})
	w.ferryOK(t, "copy", "-b", ref, "--to-repo", w.dst.Ref("apps/app"))
	w.checkDest(ctx, t, "apps/app", bundle, bundleGraph, appGraph)

	want := union(bundleGraph, appGraph)
	sum := total(want)
	if sum < 1<<10 || sum >= mib {
		t.Fatalf("fixture of %d bytes: the checks below expect KiB", sum)
	}
	w.checkStoreHolds(t, want)
	u := w.du(t)
	if wantHuman := fmt.Sprintf("%.1f KiB", float64(sum)/(1<<10)); u.BlobsHuman != wantHuman || u.PartialHuman != "0 B" {
		t.Errorf("ferry store du: %+v, want %d blobs (%s) and no partial", u, len(want), wantHuman)
	}

	// Dry runs report everything and remove nothing.
	everything := fmt.Sprintf("would remove %d blobs (%.1f KiB) and 0 partials (0 B)\n", len(want), float64(sum)/(1<<10))
	for _, args := range [][]string{
		{"--older-than", "1ns", "--dry-run"},
		{"--max-size", "1B", "--dry-run"},
		{"--older-than", "1ns", "--stale-partials", "1ns", "--dry-run"},
	} {
		res := w.ferryOK(t, append([]string{"store", "prune"}, args...)...)
		if res.Stdout != everything {
			t.Errorf("ferry store prune %s: %q, want %q", strings.Join(args, " "), res.Stdout, everything)
		}
	}
	res := w.ferryOK(t, "store", "prune", "--older-than", "1h", "--dry-run")
	if want := "would remove 0 blobs (0 B) and 0 partials (0 B)\n"; res.Stdout != want {
		t.Errorf("ferry store prune --older-than 1h --dry-run: %q, want %q", res.Stdout, want)
	}
	if res := w.ferry(t, "store", "prune"); res.ExitCode != 1 || !strings.Contains(res.Stderr, "--older-than") {
		t.Errorf("ferry store prune without a criterion: %s", res)
	}
	w.checkStoreHolds(t, want)

	// A real prune empties the store, and the next copy fetches every blob again.
	res = w.ferryOK(t, "store", "prune", "--older-than", "1ns")
	if want := strings.Replace(everything, "would remove", "removed", 1); res.Stdout != want {
		t.Errorf("ferry store prune --older-than 1ns: %q, want %q", res.Stdout, want)
	}
	w.checkStoreHolds(t, nil)
	w.proxy.Reset()
	w.ferryOK(t, "copy", "-b", ref, "--to-repo", w.dst.Ref("apps/again"))
	s := w.proxy.Stats()
	for d, size := range blobsOf(bundleGraph, appGraph) {
		if got := s.BlobBytesServedByDigest[d]; got != size {
			t.Errorf("copy after prune: blob %s: %d bytes served, want %d", d, got, size)
		}
	}
	w.checkStoreHolds(t, want)
}

func hasRangePrefix(ranges []string, prefix string) bool {
	for _, r := range ranges {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}
