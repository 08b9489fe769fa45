package harness_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// rawGet sends one GET for a blob through the proxy with a client that
// neither retries nor reuses connections, and returns the body read and the
// error that ended it.
func rawGet(t *testing.T, url string) (*http.Response, []byte, error) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestProxyResetCorruptSeq(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	b := reg.Builder(5)
	b.Image(ctx, t, reg.Ref("faulty"), harness.ImageSpec{Layers: []int{10000}, Tag: "v1"})
	_, raw := b.FetchManifest(ctx, t, reg.Ref("faulty"), "v1")
	layer := decode[ocispec.Manifest](t, raw).Layers[0]
	blobURL := "http://" + p.Host + "/v2/faulty/blobs/" + layer.Digest.String()

	t.Run("reset before forwarding", func(t *testing.T) {
		p.Reset()
		p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.Reset()))
		defer p.SetFault(nil)
		_, _, err := rawGet(t, blobURL)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("error %v, want a connection reset", err)
		}
		s := waitLog(t, p, 1)
		if len(s.Log) != 1 || s.Log[0].Fault != harness.FaultReset || s.Log[0].Status != 0 || s.BlobBytesServed != 0 {
			t.Errorf("log %+v, served %d", s.Log, s.BlobBytesServed)
		}
	})

	t.Run("reset after bytes", func(t *testing.T) {
		p.Reset()
		p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.ResetAfter(3000)))
		defer p.SetFault(nil)
		resp, got, err := rawGet(t, blobURL)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("error %v, want a connection reset", err)
		}
		if resp == nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("response %v, want 200 before the reset", resp)
		}
		// Bytes sent before the RST may be dropped by the client's kernel.
		if len(got) > 3000 {
			t.Errorf("read %d bytes, want at most 3000", len(got))
		}
		s := waitLog(t, p, 1)
		if s.BlobBytesServed != 3000 || len(s.Log) != 1 || s.Log[0].Fault != harness.FaultReset {
			t.Errorf("served %d bytes, want 3000; log %+v", s.BlobBytesServed, s.Log)
		}
		// The next request is not faulted.
		_, got, err = rawGet(t, blobURL)
		if err != nil || digest.FromBytes(got) != layer.Digest {
			t.Errorf("second GET: %d bytes, %v", len(got), err)
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		p.Reset()
		p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.CorruptAt(5000)))
		defer p.SetFault(nil)
		_, got, err := rawGet(t, blobURL)
		if err != nil {
			t.Fatal(err)
		}
		_, want, err := rawGet(t, blobURL)
		if err != nil || digest.FromBytes(want) != layer.Digest {
			t.Fatalf("clean GET: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("corrupt body has %d bytes, want %d", len(got), len(want))
		}
		var diff []int
		for i := range got {
			if got[i] != want[i] {
				diff = append(diff, i)
			}
		}
		if len(diff) != 1 || diff[0] != 5000 || got[5000] != want[5000]^0xff {
			t.Errorf("differing bytes at %v, want only byte 5000 flipped", diff)
		}
	})

	t.Run("sequence and timestamps", func(t *testing.T) {
		p.Reset()
		retryAfter := http.Header{"Retry-After": {"1"}}
		p.SetFault(harness.FaultSeq(harness.IsBlobGet,
			harness.RespondStatus(http.StatusTooManyRequests, retryAfter),
			harness.Fault{},
			harness.RespondStatus(http.StatusBadGateway, nil),
		))
		defer p.SetFault(nil)
		var statuses []int
		for range 4 {
			resp, _, err := rawGet(t, blobURL)
			if err != nil {
				t.Fatal(err)
			}
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "1" {
				t.Errorf("429 without its Retry-After: %v", resp.Header)
			}
		}
		want := []int{429, 200, 502, 200}
		if !slices.Equal(statuses, want) {
			t.Errorf("statuses %v, want %v", statuses, want)
		}
		s := waitLog(t, p, 4)
		for i, rec := range s.Log {
			if rec.Start.IsZero() || rec.End.Before(rec.Start) {
				t.Errorf("record %d: start %v end %v", i, rec.Start, rec.End)
			}
		}
		// The log is in completion order: a handler may return after the
		// client has read its response and sent the next request. In start
		// order the records are the requests as sent.
		byStart := slices.Clone(s.Log)
		slices.SortStableFunc(byStart, func(a, b harness.RequestRecord) int { return a.Start.Compare(b.Start) })
		var logged []int
		for _, rec := range byStart {
			logged = append(logged, rec.Status)
		}
		if !slices.Equal(logged, want) {
			t.Errorf("logged statuses in start order %v, want %v", logged, want)
		}
	})

	t.Run("throttled upload", func(t *testing.T) {
		p.Reset()
		isPut := func(r *http.Request) bool {
			return r.Method == http.MethodPut && harness.ClassOf(r) == harness.ClassUpload
		}
		p.SetFault(harness.FaultFirst(1, isPut, harness.Throttle(40000)))
		defer p.SetFault(nil)
		repo := b.Repository(t, p.Ref("up"))
		blob := bytes.Repeat([]byte("upload under throttle\n"), 1000) // 22 KB: about half a second
		desc := content.NewDescriptorFromBytes("application/octet-stream", blob)
		start := time.Now()
		if err := repo.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
			t.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
			t.Errorf("throttled upload of %d bytes at 40000 B/s took %s", len(blob), elapsed)
		}
		if s := p.Stats(); s.BlobBytesUploaded != int64(len(blob)) {
			t.Errorf("uploaded %d bytes, want %d", s.BlobBytesUploaded, len(blob))
		}
	})
}
