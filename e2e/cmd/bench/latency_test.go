package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// startTestProxy starts a delay proxy in front of target, stopped when the
// test ends.
func startTestProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	p, err := startDelayProxy(target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

// noRedirectClient is a loopback client that returns redirects and
// Location headers as they come.
func noRedirectClient() *http.Client {
	c := loopbackHTTPClient()
	c.Timeout = 30 * time.Second
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func TestDelayProxyDelaysEachRequestOnce(t *testing.T) {
	const delay = 300 * time.Millisecond
	var seen atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer backend.Close()
	p := startTestProxy(t, backend.Listener.Addr().String(), delay)
	client := noRedirectClient()

	const requests = 3
	for i := range requests {
		start := time.Now()
		resp, err := client.Get("http://" + p.host + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		elapsed := time.Since(start)
		if err != nil || string(body) != "ok /v2/" {
			t.Fatalf("request %d: body %q, %v", i, body, err)
		}
		// At least the delay; well under two delays (added once, not per
		// hop or per body chunk), with room for a busy machine.
		if elapsed < delay || elapsed >= 2*delay {
			t.Errorf("request %d took %s, want between %s and %s", i, elapsed, delay, 2*delay)
		}
	}
	if got := seen.Load(); got != requests {
		t.Errorf("backend saw %d requests, want %d (one per request)", got, requests)
	}
}

func TestDelayProxyZeroDelayForwardsAtOnce(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
		w.WriteHeader(http.StatusAccepted)
	}))
	defer backend.Close()
	p := startTestProxy(t, backend.Listener.Addr().String(), 0)
	resp, err := noRedirectClient().Get("http://" + p.host + "/v2/x/blobs/uploads/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Errorf("status %d, headers %v: want the backend's 202 and headers", resp.StatusCode, resp.Header)
	}
}

// TestDelayProxyStreamsBodies checks that neither body waits for its end:
// the backend sends the first chunk of a response and waits until the
// client has read it through the proxy; the client sends the first chunk of
// an upload and waits until the backend has read it. A proxy that buffered
// a body would deadlock here (the test then fails on its timeout).
func TestDelayProxyStreamsBodies(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	clientGotFirst := make(chan struct{})
	backendGotFirst := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Length", "131072")
			_, _ = w.Write(chunk)
			http.NewResponseController(w).Flush()
			select {
			case <-clientGotFirst:
			case <-time.After(10 * time.Second):
				return // the client never saw the first chunk: the response ends short
			}
			_, _ = w.Write(chunk)
		case http.MethodPatch:
			if _, err := io.ReadFull(r.Body, make([]byte, len(chunk))); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			close(backendGotFirst)
			n, _ := io.Copy(io.Discard, r.Body)
			w.Header().Set("Range", "0-"+strconv.FormatInt(int64(len(chunk))+n-1, 10))
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer backend.Close()
	p := startTestProxy(t, backend.Listener.Addr().String(), 10*time.Millisecond)
	client := noRedirectClient()

	t.Run("response", func(t *testing.T) {
		resp, err := client.Get("http://" + p.host + "/v2/x/blobs/sha256:" + strings.Repeat("a", 64))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadFull(resp.Body, make([]byte, len(chunk))); err != nil {
			t.Fatalf("first chunk: %v", err)
		}
		close(clientGotFirst)
		rest, err := io.ReadAll(resp.Body)
		if err != nil || len(rest) != len(chunk) {
			t.Fatalf("rest of the body: %d bytes, %v; want %d (was the response buffered?)", len(rest), err, len(chunk))
		}
	})

	t.Run("request", func(t *testing.T) {
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			if _, err := pw.Write(chunk); err != nil {
				errc <- err
				return
			}
			select {
			case <-backendGotFirst:
				_, err := pw.Write(chunk)
				errc <- err
				pw.Close()
			case <-time.After(10 * time.Second):
				errc <- io.ErrUnexpectedEOF
				pw.CloseWithError(io.ErrUnexpectedEOF)
			}
		}()
		req, err := http.NewRequest(http.MethodPatch, "http://"+p.host+"/v2/x/blobs/uploads/u1", pr)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := <-errc; err != nil {
			t.Fatalf("the backend did not get the first chunk before the body ended (was the request buffered?): %v", err)
		}
		if want := "0-" + strconv.FormatInt(2*int64(len(chunk))-1, 10); resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != want {
			t.Errorf("status %d, Range %q; want 202, %q", resp.StatusCode, resp.Header.Get("Range"), want)
		}
	})
}

func TestDelayProxyRewritesLocation(t *testing.T) {
	// The backend answers with the Location the query names, BACKEND
	// replaced by the Host the request came with (a registry builds its
	// upload URLs from it).
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", strings.ReplaceAll(r.URL.Query().Get("loc"), "BACKEND", r.Host))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer backend.Close()
	if host, _ := url.Parse(backend.URL); host.Host != backend.Listener.Addr().String() {
		t.Fatalf("backend URL %s is not at %s", backend.URL, backend.Listener.Addr())
	}
	p := startTestProxy(t, backend.Listener.Addr().String(), 0)

	tests := []struct {
		name, location, want string
	}{
		{"absolute, at the registry", "http://BACKEND/v2/r/blobs/uploads/u1?_state=abc", "http://" + p.host + "/v2/r/blobs/uploads/u1?_state=abc"},
		{"relative", "/v2/r/blobs/uploads/u2?_state=abc", "/v2/r/blobs/uploads/u2?_state=abc"},
		{"another host", "https://storage.example/blob?sig=1", "https://storage.example/blob?sig=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := "http://" + p.host + "/v2/r/blobs/uploads/?loc=" + url.QueryEscape(tt.location)
			resp, err := noRedirectClient().Post(u, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Location"); got != tt.want {
				t.Errorf("Location %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDelayProxyInFrontOfARegistry pushes and pulls an image through the
// proxy with oras-go against a distribution registry: the upload's Location
// comes back through the proxy, the registry stores the right bytes, and
// every request waited once.
func TestDelayProxyInFrontOfARegistry(t *testing.T) {
	const delay = 50 * time.Millisecond
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := startTestProxy(t, reg.Host, delay)
	ctx := context.Background()

	// The registry's own Location points at the registry; through the proxy
	// it points at the proxy.
	resp, err := noRedirectClient().Post("http://"+p.host+"/v2/bench/r/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST uploads: status %d, Location %q, %v", resp.StatusCode, resp.Header.Get("Location"), err)
	}
	if loc.IsAbs() && loc.Host != p.host {
		t.Errorf("upload Location %s: host %s, want the proxy %s", loc, loc.Host, p.host)
	}

	repo, err := remote.NewRepository(p.host + "/bench/r")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.Client = &auth.Client{Client: loopbackHTTPClient(), Cache: auth.NewCache()}

	layer := bytes.Repeat([]byte("ferry bench "), 400_000) // 4.8 MB: uploaded in one PUT by oras-go
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	start := time.Now()
	if err := repo.Push(ctx, layerDesc, bytes.NewReader(layer)); err != nil {
		t.Fatalf("push through the proxy: %v", err)
	}
	// At least POST and PUT, each delayed.
	if elapsed := time.Since(start); elapsed < 2*delay {
		t.Errorf("push took %s, want at least %s (two delayed requests)", elapsed, 2*delay)
	}

	// What the registry stored, read directly.
	direct, err := remote.NewRepository(reg.Host + "/bench/r")
	if err != nil {
		t.Fatal(err)
	}
	direct.PlainHTTP = true
	direct.Client = reg.Client()
	rc, err := direct.Fetch(ctx, layerDesc)
	if err != nil {
		t.Fatalf("the registry lacks the pushed blob: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, layer) {
		t.Fatalf("the registry holds %d bytes (%v), want the %d pushed", len(got), err, len(layer))
	}

	// And back through the proxy.
	rc, err = repo.Fetch(ctx, layerDesc)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, layer) {
		t.Fatalf("fetched %d bytes through the proxy (%v), want %d", len(got), err, len(layer))
	}
}
