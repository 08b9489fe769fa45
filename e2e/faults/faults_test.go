package faults_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// The faults every reading request may meet; all are retried by ferry.
var readFaults = []faultKind{fReset, fResetMid, fCut, fSlow, f500, f502, f503, f503After, f429, f429NoAfter}

// Faults a registry may answer a write with that ferry retries: a 429 or
// 503 means the request was not processed.
var writeFaults = []faultKind{f503, f429NoAfter, f503After}

// A registry-to-registry copy through a source that resets, cuts, slows
// and refuses reads, and a destination that refuses writes with 429/503
// and reads with anything, completes; the destination holds every blob
// intact, and the store verifies.
func TestToRepoUnderFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	f := newFixture(ctx, t, w, 11)

	srcMix := newMixer(101, 14, 0.6, isRead, f.sizes, readFaults...)
	dstReads := newMixer(102, 6, 0.5, isRead, f.sizes, fReset, f500, f502, f503, f429NoAfter)
	dstWrites := newMixer(103, 6, 0.5, isWrite, f.sizes, writeFaults...)
	w.srcProxy.SetFault(srcMix.hook)
	w.dstProxy.SetFault(firstFault(dstReads.hook, dstWrites.hook))
	w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dstProxy.Ref("apps/bundle"))
	t.Logf("source faults: %d (%s); destination faults: reads %d (%s), writes %d (%s)",
		srcMix.total(), srcMix, dstReads.total(), dstReads, dstWrites.total(), dstWrites)
	if srcMix.total() < 6 || dstReads.total()+dstWrites.total() < 3 {
		t.Errorf("too few faults injected to mean anything: source %d, destination %d", srcMix.total(), dstReads.total()+dstWrites.total())
	}
	w.checkDest(ctx, t, "apps/bundle", f)
	w.verifyStore(t)
}

// A copy into a tarball under the same source faults completes and writes
// a tarball that verifies and is byte-identical to one written without
// faults.
func TestToTarUnderFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	f := newFixture(ctx, t, w, 12)

	mix := newMixer(201, 14, 0.6, isRead, f.sizes, readFaults...)
	w.srcProxy.SetFault(mix.hook)
	tarPath := filepath.Join(w.work, "bundle.tar")
	w.ferryOK(t, "copy", "-b", f.ref, "--to-tar", tarPath)
	t.Logf("source faults: %d (%s)", mix.total(), mix)
	if mix.total() < 6 {
		t.Errorf("only %d faults injected", mix.total())
	}
	verifyTar(ctx, t, tarPath)
	w.verifyStore(t)

	// The reference: a clean run with its own, empty store.
	w.srcProxy.SetFault(nil)
	ref := filepath.Join(w.work, "reference.tar")
	harness.RunOK(t, []string{"FERRY_STORE=" + filepath.Join(w.work, "clean-store")}, "copy", "-b", f.ref, "--to-tar", ref)
	got, _ := os.ReadFile(tarPath)
	want, _ := os.ReadFile(ref)
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Errorf("tarball written under faults (%d bytes) differs from the clean one (%d bytes)", len(got), len(want))
	}
}

// A copy from a tarball into a destination that refuses and resets reads
// and refuses writes with 429/503 completes with every blob intact.
func TestFromTarUnderFaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	f := newFixture(ctx, t, w, 13)
	tarPath := filepath.Join(w.work, "bundle.tar")
	w.ferryOK(t, "copy", "-b", f.ref, "--to-tar", tarPath)

	reads := newMixer(301, 8, 0.6, isRead, f.sizes, fReset, f500, f502, f503, f503After, f429)
	writes := newMixer(302, 8, 0.6, isWrite, f.sizes, writeFaults...)
	w.dstProxy.SetFault(firstFault(reads.hook, writes.hook))
	w.ferryOK(t, "copy", "--tar", tarPath, "--to-repo", w.dstProxy.Ref("apps/bundle"))
	t.Logf("destination faults: reads %d (%s), writes %d (%s)", reads.total(), reads, writes.total(), writes)
	if reads.total()+writes.total() < 6 {
		t.Errorf("only %d faults injected", reads.total()+writes.total())
	}
	w.checkDest(ctx, t, "apps/bundle", f)
	w.verifyStore(t)
}

// Blob uploads cut or refused with a server error (the PUT that carries the
// bytes, or the POST that opens the upload) are retried: the blob is sent
// again. ARCHITECTURE.md: "An upload that is cut restarts that blob".
func TestUploadFaultsRestartBlob(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, dir := range []string{"registry", "tar"} {
		t.Run("from "+dir, func(t *testing.T) {
			w := newWorld(t)
			f := newFixture(ctx, t, w, 14)
			src := []string{"-b", f.ref}
			if dir == "tar" {
				tarPath := filepath.Join(w.work, "bundle.tar")
				w.ferryOK(t, "copy", "-b", f.ref, "--to-tar", tarPath)
				src = []string{"--tar", tarPath}
			}
			isBigPut := func(r *http.Request) bool {
				return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassUpload && strings.Contains(r.URL.RawQuery, f.big.Digest.Encoded())
			}
			w.dstProxy.SetFault(harness.FaultSeq(isBigPut,
				harness.RespondStatus(http.StatusInternalServerError, nil),
				harness.Reset(),
				harness.RespondStatus(http.StatusServiceUnavailable, nil)))
			w.ferryOK(t, append([]string{"copy"}, append(src, "--to-repo", w.dstProxy.Ref("apps/bundle"))...)...)
			s := w.dstProxy.Stats()
			t.Logf("faults on the uploads of %s: %v", f.big.Digest, tally(s))
			if n := tally(s)[harness.FaultStatus] + tally(s)[harness.FaultReset]; n != 3 {
				t.Errorf("%d upload faults injected, want 3", n)
			}
			w.checkDest(ctx, t, "apps/bundle", f)
			w.verifyStore(t)
		})
	}
}

// Retry-After is honoured: the retry of a request answered 429 or 503 with
// Retry-After: N starts at least N seconds after the refusal ended (a lower
// bound only; the machine may be slow).
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	f := newFixture(ctx, t, w, 15)

	isBundleTag := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/src/bundle/manifests/v1")
	}
	isBigGet := isBlobGetOf(f.big.Digest)
	tagHook := harness.FaultFirst(1, isBundleTag, harness.RespondStatus(http.StatusTooManyRequests, http.Header{"Retry-After": {"2"}}))
	var bigDone atomic.Bool
	bigHook := func(r *http.Request) harness.Fault {
		if !isBigGet(r) || !bigDone.CompareAndSwap(false, true) {
			return harness.Fault{}
		}
		// Dated when the request comes: 3 s from now, to the second.
		date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
		return harness.RespondStatus(http.StatusServiceUnavailable, http.Header{"Retry-After": {date}})
	}
	w.srcProxy.SetFault(firstFault(tagHook, bigHook))
	w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/bundle"))
	s := w.srcProxy.Stats()
	for _, c := range []struct {
		name  string
		match func(harness.RequestRecord) bool
		min   time.Duration
	}{
		{"429 Retry-After: 2 on the bundle's tag", func(rec harness.RequestRecord) bool {
			return rec.Method == http.MethodGet && strings.HasSuffix(rec.Path, "/src/bundle/manifests/v1")
		}, 2 * time.Second},
		// An HTTP date has a resolution of one second: at least 2 s remain.
		{"503 Retry-After: <date in 3 s> on the large layer", func(rec harness.RequestRecord) bool {
			return rec.Method == http.MethodGet && blobDigest(rec.Path) == f.big.Digest
		}, 2 * time.Second},
	} {
		var recs []harness.RequestRecord
		for _, rec := range s.Log {
			if c.match(rec) {
				recs = append(recs, rec)
			}
		}
		if len(recs) < 2 || recs[0].Fault != harness.FaultStatus {
			t.Errorf("%s: requests %+v, want the refusal then the retry", c.name, recs)
			continue
		}
		gap := recs[1].Start.Sub(recs[0].End)
		t.Logf("%s: retried %s after the refusal", c.name, gap.Round(time.Millisecond))
		if gap < c.min {
			t.Errorf("%s: retried after %s, want at least %s", c.name, gap, c.min)
		}
	}
	w.checkDest(ctx, t, "apps/bundle", f)
}

// A large layer whose connection is reset in the middle is continued from
// the byte reached, by a Range request, in the same run; so is one whose
// body was cut.
func TestResumeFromByteReached(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, c := range []struct {
		name  string
		fault func(size int64) harness.Fault
		exact bool // the range starts exactly at the fault
	}{
		{"reset", func(size int64) harness.Fault { return harness.ResetAfter(size / 2) }, false},
		{"cut", func(size int64) harness.Fault { return harness.CutAfter(size / 2) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			f := newFixture(ctx, t, w, 16)
			half := f.big.Size / 2
			w.srcProxy.SetFault(harness.FaultFirst(1, isBlobGetOf(f.big.Digest), c.fault(f.big.Size)))
			w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/bundle"))
			s := w.srcProxy.Stats()
			starts := rangeStarts(s, f.big.Digest)
			served := s.BlobBytesServedByDigest[f.big.Digest]
			t.Logf("layer of %d bytes, %s after %d: ranged GETs from %v, %d bytes served in all", f.big.Size, c.name, half, starts, served)
			// The download continues from the byte ferry had received:
			// exactly the cut; for a reset, the bytes still in flight
			// in the kernel when the RST came are lost, so the range
			// may start before the byte the proxy sent.
			if len(starts) != 1 || starts[0] <= 0 || starts[0] > half || (c.exact && starts[0] != half) {
				t.Fatalf("ranged GETs of the large layer from %v, want one from byte %d (or before, for a reset)", starts, half)
			}
			// Nothing but the rest was fetched again.
			if want := half + f.big.Size - starts[0]; served != want {
				t.Errorf("%d bytes of the large layer served, want %d: %d before the fault, then the rest from byte %d", served, want, half, starts[0])
			}
			w.checkDest(ctx, t, "apps/bundle", f)
			w.verifyStore(t)
		})
	}
}

// With --registry-retry-count 1, a registry that keeps failing makes the
// copy fail after two attempts with an error that names the registry and
// the digest; nothing is left behind: no tag at the destination, no
// tarball, and the store verifies.
func TestRetryBudgetExhausted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	f := newFixture(ctx, t, w, 17)
	// One fault, cycled: every GET of the layer is refused.
	always503 := harness.FaultCycle(isBlobGetOf(f.big.Digest), harness.RespondStatus(http.StatusServiceUnavailable, nil))

	t.Run("to repo", func(t *testing.T) {
		w.srcProxy.Reset()
		w.srcProxy.SetFault(always503)
		res := w.ferry(t, "copy", "-b", f.ref, "--to-repo", w.dst.Ref("apps/bundle"), "--registry-retry-count", "1")
		checkFailure(t, res, w.srcProxy.Host, f.big.Digest.String())
		if n := w.srcProxy.Stats().Count(http.MethodGet, harness.ClassBlob) - countOthers(w.srcProxy.Stats(), f.big.Digest.String()); n != 2 {
			t.Errorf("%d GETs of the failing layer, want 2 (one retry)", n)
		}
		w.checkNoTag(ctx, t, "apps/bundle", f.big)
		w.verifyStore(t)
	})
	t.Run("to tar", func(t *testing.T) {
		w.srcProxy.SetFault(always503)
		tarPath := w.outTar(t)
		res := w.ferry(t, "copy", "-b", f.ref, "--to-tar", tarPath, "--registry-retry-count", "1")
		checkFailure(t, res, w.srcProxy.Host, f.big.Digest.String())
		checkNoTar(t, tarPath)
		w.verifyStore(t)
	})
	t.Run("from tar", func(t *testing.T) {
		w.srcProxy.SetFault(nil)
		tarPath := filepath.Join(w.work, "good.tar")
		w.ferryOK(t, "copy", "-b", f.ref, "--to-tar", tarPath)
		w.dstProxy.SetFault(harness.FaultCycle(isManifestPut, harness.RespondStatus(http.StatusServiceUnavailable, nil)))
		res := w.ferry(t, "copy", "--tar", tarPath, "--to-repo", w.dstProxy.Ref("apps/from-tar"), "--registry-retry-count", "1")
		checkFailure(t, res, w.dstProxy.Host, "sha256:")
		w.checkNoTagOnly(ctx, t, "apps/from-tar")
	})
}

// countOthers counts the blob GETs of digests other than d.
func countOthers(s harness.Stats, d string) int {
	n := 0
	for _, rec := range s.Log {
		if rec.Method == http.MethodGet && rec.Class == harness.ClassBlob && !strings.HasSuffix(rec.Path, d) {
			n++
		}
	}
	return n
}

// checkFailure checks a failed run: exit 1, one "ferry: Error:" line that
// names each of want.
func checkFailure(t *testing.T, res harness.Result, want ...string) {
	t.Helper()
	if res.ExitCode != 1 {
		t.Fatalf("exit %d, want 1: %s", res.ExitCode, res)
	}
	var line string
	for _, l := range strings.Split(res.Stderr, "\n") {
		if strings.HasPrefix(l, "ferry: Error: ") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no ferry: Error: line: %s", res)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("error %q does not name %q", line, w)
		}
	}
}

// A blob whose bytes are wrong (one byte flipped by the network) is never
// accepted: the copy fails naming the digest, the store does not keep it,
// the destination gets neither the blob nor the tag, no tarball is left;
// the next run, on a healthy network, completes.
func TestWrongBytesNeverAccepted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newWorld(t)
	f := newFixture(ctx, t, w, 18)
	isBigGet := isBlobGetOf(f.big.Digest)

	t.Run("to repo", func(t *testing.T) {
		w.srcProxy.SetFault(harness.FaultFirst(1, isBigGet, harness.CorruptAt(f.big.Size/2)))
		res := w.ferry(t, "copy", "-b", f.ref, "--to-repo", w.dstProxy.Ref("apps/bundle"))
		checkFailure(t, res, f.big.Digest.String())
		if !strings.Contains(res.Stderr, "digest") {
			t.Errorf("error does not say the digest did not match: %s", res.Stderr)
		}
		w.checkNoTag(ctx, t, "apps/bundle", f.big)
		if w.storeHas(t, f.big.Digest) {
			t.Errorf("the store kept %s after its bytes were wrong", f.big.Digest)
		}
		w.verifyStore(t)
		for _, rec := range w.dstProxy.Stats().Log {
			if rec.Method == http.MethodPut && rec.Class == harness.ClassUpload && strings.Contains(rec.Query, f.big.Digest.Encoded()) && rec.Status/100 == 2 {
				t.Errorf("the destination accepted an upload of %s: %+v", f.big.Digest, rec)
			}
		}
		w.srcProxy.SetFault(nil)
		w.ferryOK(t, "copy", "-b", f.ref, "--to-repo", w.dstProxy.Ref("apps/bundle"))
		w.checkDest(ctx, t, "apps/bundle", f)
		w.verifyStore(t)
	})
	t.Run("to tar", func(t *testing.T) {
		fresh := []string{"FERRY_STORE=" + filepath.Join(w.work, "store-tar")}
		w.srcProxy.SetFault(harness.FaultFirst(1, isBigGet, harness.CorruptAt(f.big.Size-1)))
		tarPath := w.outTar(t)
		res := harness.Run(t, fresh, "copy", "-b", f.ref, "--to-tar", tarPath)
		checkFailure(t, res, f.big.Digest.String())
		checkNoTar(t, tarPath)
		if v := harness.Run(t, fresh, "store", "verify"); v.ExitCode != 0 {
			t.Errorf("store verify: %s", v)
		}
		w.srcProxy.SetFault(nil)
		harness.RunOK(t, fresh, "copy", "-b", f.ref, "--to-tar", tarPath)
		verifyTar(ctx, t, tarPath)
	})
}
