package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// blobServer is a minimal registry that serves blobs: GET and HEAD of
// /v2/<name>/blobs/<digest>, with Range support and switches to misbehave.
type blobServer struct {
	srv *httptest.Server

	mu           sync.Mutex
	blobs        map[digest.Digest][]byte
	noRanges     bool          // neither advertise nor honour Range
	refuseRanges bool          // advertise Accept-Ranges, answer Range with 200 and the whole body
	cutAfter     int64         // cut bodies when they reach this offset of the blob...
	cuts         int           // ...for this many more responses
	corrupt      bool          // flip the first byte of every body
	chunkDelay   time.Duration // pause between 32 KiB chunks
	gets, heads  int
	bodyBytes    int64    // body bytes written by all GETs
	requests     []served // every GET, in order
}

type served struct {
	rangeHeader string
	status      int
	bytes       int64
}

func newBlobServer(t *testing.T, blobs ...[]byte) *blobServer {
	t.Helper()
	b := &blobServer{blobs: map[digest.Digest][]byte{}}
	for _, blob := range blobs {
		b.blobs[digest.FromBytes(blob)] = blob
	}
	b.srv = httptest.NewServer(b)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	i := strings.LastIndex(r.URL.Path, "/blobs/")
	if !strings.HasPrefix(r.URL.Path, "/v2/") || i < 0 {
		http.NotFound(w, r)
		return
	}
	d, err := digest.Parse(r.URL.Path[i+len("/blobs/"):])
	b.mu.Lock()
	blob, ok := b.blobs[d]
	noRanges, refuse, corrupt, delay := b.noRanges, b.refuseRanges, b.corrupt, b.chunkDelay
	cutAfter := int64(-1)
	if r.Method == http.MethodGet && b.cuts > 0 {
		cutAfter = b.cutAfter
		b.cuts--
	}
	if r.Method == http.MethodHead {
		b.heads++
	} else {
		b.gets++
	}
	b.mu.Unlock()
	if err != nil || !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	body := blob
	if corrupt && len(blob) > 0 {
		body = bytes.Clone(blob)
		body[0] ^= 0xff
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	if !noRanges {
		h.Set("Accept-Ranges", "bytes")
	}
	status := http.StatusOK
	rangeHeader := r.Header.Get("Range")
	if rangeHeader != "" && !noRanges && !refuse {
		var start, end int64
		if _, err := fmt.Sscanf(rangeHeader, "bytes=%d-%d", &start, &end); err != nil || start > end || end >= int64(len(blob)) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(blob)))
		body = body[start : end+1]
		status = http.StatusPartialContent
		if cutAfter >= 0 {
			cutAfter = max(0, cutAfter-start)
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	var written int64
	defer func() {
		b.mu.Lock()
		b.requests = append(b.requests, served{rangeHeader: rangeHeader, status: status, bytes: written})
		b.mu.Unlock()
	}()
	// Body bytes are counted as they are sent (not when the handler
	// returns), so that a client that has read them all sees them counted.
	count := func(n int) {
		written += int64(n)
		b.mu.Lock()
		b.bodyBytes += int64(n)
		b.mu.Unlock()
	}
	for len(body) > 0 {
		chunk := body[:min(len(body), 32<<10)]
		if cutAfter >= 0 && written+int64(len(chunk)) > cutAfter {
			chunk = chunk[:cutAfter-written]
			n, _ := w.Write(chunk)
			count(n)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		n, err := w.Write(chunk)
		count(n)
		if err != nil {
			return
		}
		body = body[n:]
		if delay > 0 && len(body) > 0 {
			w.(http.Flusher).Flush()
			time.Sleep(delay)
		}
	}
}

// repo returns an oras-go remote repository on the server.
func (b *blobServer) repo(t *testing.T) *remote.Repository {
	t.Helper()
	r, err := remote.NewRepository(strings.TrimPrefix(b.srv.URL, "http://") + "/test/repo")
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = b.srv.Client()
	return r
}

func (b *blobServer) set(f func(b *blobServer)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *blobServer) stats() (gets, heads int, bodyBytes int64, reqs []served) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gets, b.heads, b.bodyBytes, append([]served(nil), b.requests...)
}

func randomBlob(t testing.TB, size int) ([]byte, ocispec.Descriptor) {
	t.Helper()
	blob := make([]byte, size)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	return blob, descOf(blob)
}

func descOf(blob []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(blob), Size: int64(len(blob))}
}

func openStore(t testing.TB, root string) *Store {
	t.Helper()
	s, err := Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	s.backoff = time.Millisecond
	return s
}

// readAll reads rc to the end and closes it.
func readAll(rc io.ReadCloser) ([]byte, error) {
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return data, err
}

// mustVerifyClean fails when Verify finds anything wrong in s.
func mustVerifyClean(t *testing.T, s *Store) {
	t.Helper()
	problems, err := s.Verify(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("verify: %s: %v", p.Path, p.Err)
	}
}

func mustUsage(t *testing.T, s *Store) Usage {
	t.Helper()
	u, err := s.DiskUsage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u
}
