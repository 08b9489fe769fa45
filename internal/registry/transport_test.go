package registry

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

func TestBearerTokenFlowAndUserAgent(t *testing.T) {
	const ua = "ferry/1.2.3-test"
	f := newFakeRegistry(t, false)
	realm := f.srv.URL + "/token"
	var tokenCalls atomic.Int32
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/token" {
			return false
		}
		tokenCalls.Add(1)
		user, pass, _ := r.BasicAuth()
		if user != "alice" || pass != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		if got := r.URL.Query().Get("scope"); got != "repository:team/app:pull" {
			t.Errorf("token scope = %q", got)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"token": "good-token"})
		return true
	}
	f.challenge = fmt.Sprintf(`Bearer realm=%q,service="fake",scope="repository:team/app:pull"`, realm)
	f.authorize = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer good-token" }

	c := newTestClient(t, Options{Username: "alice", Password: "secret", UserAgent: ua}, nil)
	for range 2 {
		tags, err := listTags(t, c, f.host()+"/team/app")
		if err != nil || len(tags) != 1 {
			t.Fatalf("listTags = %v, %v", tags, err)
		}
	}
	if n := tokenCalls.Load(); n != 1 {
		t.Errorf("token endpoint called %d times, want 1 (token cached)", n)
	}
	// 401, token, retry with token, then the cached token: 3 registry calls.
	if got := len(f.requests("/tags/list")); got != 3 {
		t.Errorf("tags/list requests = %d, want 3", got)
	}
	all := f.requests("")
	if len(all) == 0 {
		t.Fatal("no requests recorded")
	}
	for _, r := range all {
		if r.UserAgent != ua {
			t.Errorf("%s %s: User-Agent %q, want %q", r.Method, r.Path, r.UserAgent, ua)
		}
	}
}

func TestRegistryTokenAndIdentityToken(t *testing.T) {
	f := newFakeRegistry(t, false)
	var grant atomic.Value
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/token" {
			return false
		}
		if r.Method != http.MethodPost {
			t.Errorf("identity token exchange used %s, want POST", r.Method)
		}
		_ = r.ParseForm()
		grant.Store(r.PostForm.Get("grant_type") + ":" + r.PostForm.Get("refresh_token"))
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "exchanged"})
		return true
	}
	f.challenge = fmt.Sprintf(`Bearer realm=%q,service="fake"`, f.srv.URL+"/token")
	f.authorize = func(r *http.Request) bool {
		a := r.Header.Get("Authorization")
		return a == "Bearer exchanged" || a == "Bearer direct-token"
	}
	host := f.host()
	c := newTestClient(t, Options{}, map[string]string{
		"IMGPKG_REGISTRY_HOSTNAME_ID":              host + "/id",
		"IMGPKG_REGISTRY_IDENTITY_TOKEN_ID":        "refresh-me",
		"IMGPKG_REGISTRY_HOSTNAME_RT":              host + "/rt",
		"IMGPKG_REGISTRY_REGISTRY_TOKEN_RT":        "direct-token",
		"IMGPKG_REGISTRY_HOSTNAME_NOTHING_ELSE":    "unused.io",
		"IMGPKG_REGISTRY_USERNAME_NOTHING_ELSE":    "x",
		"IMGPKG_REGISTRY_PASSWORD_NOTHING_ELSE":    "y",
		"IMGPKG_REGISTRY_REGISTRY_TOKEN_UNRELATED": "z",
	})
	if _, err := listTags(t, c, host+"/id/app"); err != nil {
		t.Fatalf("identity token: %v", err)
	}
	if g, _ := grant.Load().(string); g != "refresh_token:refresh-me" {
		t.Errorf("token request grant = %q, want refresh_token:refresh-me", g)
	}
	if _, err := listTags(t, c, host+"/rt/app"); err != nil {
		t.Fatalf("registry token: %v", err)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		retryCount   int
		failures     int
		wantAttempts int
		wantOK       bool
	}{
		{"default retries cover two failures", 0, 2, 3, true},
		{"one retry is not enough", 1, 2, 2, false},
		{"negative means no retries", -1, 1, 1, false},
		{"retry count respected", 3, 10, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRegistry(t, false)
			var attempts atomic.Int32
			f.before = func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/tags/list") {
					return false
				}
				if attempts.Add(1) <= int32(tt.failures) {
					w.Header().Set("Retry-After", "0")
					w.WriteHeader(http.StatusServiceUnavailable)
					return true
				}
				return false
			}
			c := newTestClient(t, Options{RetryCount: tt.retryCount}, nil)
			_, err := listTags(t, c, f.host()+"/app")
			if got := int(attempts.Load()); got != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", got, tt.wantAttempts)
			}
			if (err == nil) != tt.wantOK {
				t.Errorf("err = %v, want success %v", err, tt.wantOK)
			}
			var er *errcode.ErrorResponse
			if !tt.wantOK && (!errors.As(err, &er) || er.StatusCode != http.StatusServiceUnavailable) {
				t.Errorf("err = %v, want a 503 ErrorResponse", err)
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	timing := retryTiming{base: 100 * time.Millisecond, maxBackoff: time.Second, maxRetryAfter: 30 * time.Second, now: func() time.Time { return now }}
	resp := func(status int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	reset := &net.OpError{Op: "read", Err: syscall.ECONNRESET}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		method  string
		ctx     context.Context
		attempt int
		resp    *http.Response
		err     error
		want    time.Duration // -1: no retry
	}{
		{"503 Retry-After seconds", "GET", nil, 0, resp(503, "1"), nil, time.Second},
		{"429 Retry-After seconds", "POST", nil, 0, resp(429, "7"), nil, 7 * time.Second},
		{"Retry-After capped", "GET", nil, 0, resp(503, "3600"), nil, 30 * time.Second},
		{"Retry-After date", "GET", nil, 0, resp(503, now.Add(5*time.Second).Format(http.TimeFormat)), nil, 5 * time.Second},
		{"Retry-After date in the past", "GET", nil, 0, resp(429, now.Add(-time.Hour).Format(http.TimeFormat)), nil, 0},
		{"503 backoff attempt 0", "GET", nil, 0, resp(503, ""), nil, 100 * time.Millisecond},
		{"500 backoff attempt 2", "GET", nil, 2, resp(500, ""), nil, 400 * time.Millisecond},
		{"backoff capped", "HEAD", nil, 10, resp(502, ""), nil, time.Second},
		{"bad Retry-After uses backoff", "GET", nil, 1, resp(503, "soon"), nil, 200 * time.Millisecond},
		{"504 PUT", "PUT", nil, 0, resp(504, ""), nil, 100 * time.Millisecond},
		{"500 POST not retried", "POST", nil, 0, resp(500, ""), nil, -1},
		{"503 POST retried", "POST", nil, 0, resp(503, ""), nil, 100 * time.Millisecond},
		{"404 not retried", "GET", nil, 0, resp(404, ""), nil, -1},
		{"401 not retried", "GET", nil, 0, resp(401, ""), nil, -1},
		{"max retries reached", "GET", nil, 20, resp(503, "1"), nil, -1},
		{"connection reset GET", "GET", nil, 0, nil, reset, 100 * time.Millisecond},
		{"unexpected EOF GET", "GET", nil, 0, nil, io.ErrUnexpectedEOF, 100 * time.Millisecond},
		{"connection reset POST", "POST", nil, 0, nil, reset, -1},
		{"other error", "GET", nil, 0, nil, errors.New("boom"), -1},
		{"context canceled", "GET", canceled, 0, resp(503, ""), nil, -1},
		{"canceled error", "GET", nil, 0, nil, context.Canceled, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			p := &retryPolicy{maxRetry: 20, idempotent: isIdempotent(tt.method), ctx: ctx, timing: timing,
				jitter: func() float64 { return 0.5 }} // 0.5 => factor 1.0, no jitter
			got, err := p.Retry(tt.attempt, tt.resp, tt.err)
			if err != nil {
				t.Fatalf("Retry returned error %v", err)
			}
			if tt.want < 0 {
				if got >= 0 {
					t.Errorf("Retry = %v, want no retry", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("Retry = %v, want %v", got, tt.want)
			}
		})
	}

	// Jitter stays within ±20% of the backoff.
	for _, j := range []float64{0, 0.999} {
		p := &retryPolicy{maxRetry: 1, idempotent: true, ctx: context.Background(), timing: timing, jitter: func() float64 { return j }}
		got, _ := p.Retry(0, resp(503, ""), nil)
		if got < 80*time.Millisecond || got > 120*time.Millisecond {
			t.Errorf("jitter %v: backoff %v outside [80ms, 120ms]", j, got)
		}
	}
}

func TestRetryRequestBodies(t *testing.T) {
	var attempts atomic.Int32
	var bodies atomic.Value
	bodies.Store([]string{})
	srv := newFakeRegistry(t, false)
	srv.before = func(w http.ResponseWriter, r *http.Request) bool {
		b, _ := io.ReadAll(r.Body)
		bodies.Store(append(bodies.Load().([]string), string(b)))
		if attempts.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		w.WriteHeader(http.StatusCreated)
		return true
	}
	rt := &retryTransport{base: http.DefaultTransport, maxRetry: 3, timing: fastTiming()}
	client := &http.Client{Transport: rt}

	// A rewindable body is sent again, whole.
	req, _ := http.NewRequest(http.MethodPut, srv.srv.URL+"/v2/app/manifests/v1", bytes.NewReader([]byte("manifest")))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || attempts.Load() != 2 {
		t.Errorf("rewindable: status %d after %d attempts, want 201 after 2", resp.StatusCode, attempts.Load())
	}
	if got := bodies.Load().([]string); len(got) != 2 || got[0] != "manifest" || got[1] != "manifest" {
		t.Errorf("bodies = %q", got)
	}

	// A body that cannot be rewound is never sent twice.
	attempts.Store(0)
	req, _ = http.NewRequest(http.MethodPut, srv.srv.URL+"/v2/app/blobs/uploads/x", io.NopCloser(strings.NewReader("stream")))
	req.ContentLength = int64(len("stream"))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || attempts.Load() != 1 {
		t.Errorf("non-rewindable: status %d after %d attempts, want 503 after 1", resp.StatusCode, attempts.Load())
	}
}

func TestRetryConnectionClosed(t *testing.T) {
	f := newFakeRegistry(t, false)
	var attempts atomic.Int32
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			return false
		}
		if attempts.Add(1) == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // no response at all
			}
			return true
		}
		return false
	}
	c := newTestClient(t, Options{}, nil)
	if _, err := listTags(t, c, f.host()+"/app"); err != nil {
		t.Fatalf("listTags: %v", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("attempts = %d, want 2", n)
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	f := newFakeRegistry(t, false)
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/tags/list") {
			time.Sleep(300 * time.Millisecond)
		}
		return false
	}
	c := newTestClient(t, Options{ResponseHeaderTimeout: 50 * time.Millisecond, RetryCount: -1}, nil)
	_, err := listTags(t, c, f.host()+"/app")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v, want a timeout", err)
	}
}

// writeCertPEM writes the TLS server's certificate as PEM and returns the file.
func writeCertPEM(t *testing.T, f *fakeRegistry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS(t *testing.T) {
	f := newFakeRegistry(t, true)
	ref := f.host() + "/app"
	caPath := writeCertPEM(t, f)

	t.Run("CA cert path", func(t *testing.T) {
		c := newTestClient(t, Options{CACertPaths: []string{caPath}}, nil)
		if _, err := listTags(t, c, ref); err != nil {
			t.Fatal(err)
		}
		repo, _ := c.Repository(context.Background(), ref)
		if repo.PlainHTTP {
			t.Error("TLS registry on loopback reached over plain HTTP")
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		c := newTestClient(t, Options{}, nil)
		_, err := listTags(t, c, ref)
		var unknownAuthority x509.UnknownAuthorityError
		if !errors.As(err, &unknownAuthority) {
			t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %q does not mention the certificate", err)
		}
	})
	t.Run("skip verify", func(t *testing.T) {
		c := newTestClient(t, Options{SkipVerify: true}, nil)
		if _, err := listTags(t, c, ref); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad CA files", func(t *testing.T) {
		notPEM := filepath.Join(t.TempDir(), "not.pem")
		if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		missing := filepath.Join(t.TempDir(), "missing.pem")
		for _, p := range []string{notPEM, missing} {
			_, err := New(Options{CACertPaths: []string{caPath, p}, Environ: func() []string { return nil }})
			if !errors.Is(err, ErrInvalidCACert) {
				t.Errorf("%s: err = %v, want ErrInvalidCACert", p, err)
			} else if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %s", err, p)
			}
		}
	})
}

func TestPlainHTTPDecision(t *testing.T) {
	f := newFakeRegistry(t, false)
	c := newTestClient(t, Options{}, nil)
	ctx := context.Background()
	for range 2 {
		repo, err := c.Repository(ctx, f.host()+"/app:v1")
		if err != nil {
			t.Fatal(err)
		}
		if !repo.PlainHTTP {
			t.Error("plain HTTP registry on loopback: PlainHTTP = false")
		}
		if repo.Reference.Reference != "v1" {
			t.Errorf("Reference = %q, want v1", repo.Reference.Reference)
		}
	}
	if _, err := listTags(t, c, f.host()+"/app"); err != nil {
		t.Fatal(err)
	}
	// The same host through "localhost" is loopback too.
	_, port, _ := net.SplitHostPort(f.host())
	repo, err := c.Repository(ctx, "localhost:"+port+"/app")
	if err != nil || !repo.PlainHTTP {
		t.Errorf("localhost: PlainHTTP = %v, err %v", repo != nil && repo.PlainHTTP, err)
	}

	// A remote host is HTTPS without any probe (no network needed).
	repo, err = c.Repository(ctx, "registry.invalid/app")
	if err != nil || repo.PlainHTTP {
		t.Errorf("remote host: PlainHTTP = %v, err %v", repo != nil && repo.PlainHTTP, err)
	}
	// Docker Hub traffic goes to registry-1.docker.io over HTTPS.
	repo, err = c.Repository(ctx, "nginx")
	if err != nil || repo.PlainHTTP || repo.Reference.Host() != "registry-1.docker.io" {
		t.Errorf("nginx: %+v, err %v", repo, err)
	}
}

func TestProbeCanceledContext(t *testing.T) {
	f := newFakeRegistry(t, false)
	c := newTestClient(t, Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Repository(ctx, f.host()+"/app"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	// The failed probe is not cached: a live context decides.
	repo, err := c.Repository(context.Background(), f.host()+"/app")
	if err != nil || !repo.PlainHTTP {
		t.Errorf("after cancel: PlainHTTP = %v, err %v", repo != nil && repo.PlainHTTP, err)
	}
}

func TestDescribeError(t *testing.T) {
	f := basicRegistry(t, map[string]string{"app": "right"})
	host := f.host()
	c := newTestClient(t, Options{}, map[string]string{
		"IMGPKG_REGISTRY_HOSTNAME_7": host,
		"IMGPKG_REGISTRY_USERNAME_7": "wrong",
		"IMGPKG_REGISTRY_PASSWORD_7": "wrong-pass",
	})
	_, err := listTags(t, c, host+"/app")
	if err == nil {
		t.Fatal("wrong credentials accepted")
	}
	ref, _ := c.ParseReference(host + "/app")
	described := c.DescribeError(err, ref)
	if !errors.Is(described, ErrUnauthorized) {
		t.Errorf("described error %v is not ErrUnauthorized", described)
	}
	var ae *AuthError
	if !errors.As(described, &ae) || ae.Source != "IMGPKG_REGISTRY_HOSTNAME_7" || ae.StatusCode != http.StatusUnauthorized || ae.Registry != host {
		t.Fatalf("AuthError = %+v", ae)
	}
	var er *errcode.ErrorResponse
	if !errors.As(described, &er) || er.StatusCode != http.StatusUnauthorized {
		t.Errorf("described error does not unwrap to the 401 ErrorResponse")
	}
	for _, want := range []string{host, "IMGPKG_REGISTRY_HOSTNAME_7", "401"} {
		if !strings.Contains(described.Error(), want) {
			t.Errorf("message %q does not mention %q", described, want)
		}
	}
	if c.DescribeError(described, ref) != described {
		t.Error("DescribeError wrapped an AuthError twice")
	}

	// Other errors pass through unchanged.
	other := fmt.Errorf("x: %w", &errcode.ErrorResponse{StatusCode: http.StatusNotFound})
	if got := c.DescribeError(other, ref); got != other {
		t.Errorf("404 changed: %v", got)
	}
	if c.DescribeError(nil, ref) != nil {
		t.Error("nil changed")
	}
}

func TestProbeOncePerHost(t *testing.T) {
	f := newFakeRegistry(t, true)
	c := newTestClient(t, Options{CACertPaths: []string{writeCertPEM(t, f)}}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo, err := c.Repository(context.Background(), fmt.Sprintf("%s/app%d", f.host(), i))
			if err == nil && repo.PlainHTTP {
				err = errors.New("PlainHTTP for a TLS registry")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(f.requests("/v2/")); n != 1 {
		t.Errorf("probe requests = %d, want 1", n)
	}
}
