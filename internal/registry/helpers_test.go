package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fastTiming keeps retry waits in the millisecond range.
func fastTiming() retryTiming {
	return retryTiming{base: time.Millisecond, maxBackoff: 5 * time.Millisecond, maxRetryAfter: 50 * time.Millisecond, now: time.Now}
}

// testEnv returns Getenv/Environ over vars, with HOME in a fresh temporary
// directory (so the real Docker config is never read) unless vars sets it.
func testEnv(t *testing.T, vars map[string]string) (func(string) string, func() []string) {
	t.Helper()
	all := map[string]string{"HOME": t.TempDir()}
	for k, v := range vars {
		all[k] = v
	}
	getenv := func(k string) string { return all[k] }
	environ := func() []string {
		out := make([]string, 0, len(all))
		for k, v := range all {
			out = append(out, k+"="+v)
		}
		return out
	}
	return getenv, environ
}

// newTestClient builds a client with opts, the environment vars and fast retries.
func newTestClient(t *testing.T, opts Options, vars map[string]string) *Client {
	t.Helper()
	opts.Getenv, opts.Environ = testEnv(t, vars)
	c, err := newClient(opts, fastTiming())
	if err != nil {
		t.Fatalf("newClient: %v", err)
	}
	return c
}

// recorded is one request seen by fakeRegistry.
type recorded struct {
	Method, Path, UserAgent, Authorization string
	User                                   string // basic auth user, if any
}

// fakeRegistry answers GET /v2/ and GET /v2/<repo>/tags/list, optionally
// behind an authorization check, and records every request.
type fakeRegistry struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []recorded

	// authorize returns true when the request may proceed; nil means open.
	authorize func(r *http.Request) bool
	// challenge is the WWW-Authenticate header sent with a 401.
	challenge string
	// before may answer a request itself (it returns true then).
	before func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeRegistry(t *testing.T, tlsServer bool) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{}
	h := http.HandlerFunc(f.serve)
	if tlsServer {
		f.srv = httptest.NewUnstartedServer(h)
		f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		f.srv.StartTLS()
	} else {
		f.srv = httptest.NewUnstartedServer(h)
		f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

// host is the server's host:port.
func (f *fakeRegistry) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(f.srv.URL, "http://"), "https://")
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	user, _, _ := r.BasicAuth()
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.UserAgent(), r.Header.Get("Authorization"), user})
	before, authorize := f.before, f.authorize
	f.mu.Unlock()
	if before != nil && before(w, r) {
		return
	}
	if authorize != nil && !authorize(r) {
		w.Header().Set("WWW-Authenticate", f.challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	switch {
	case r.URL.Path == "/v2/":
		_, _ = io.WriteString(w, "{}")
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "tags": []string{"v1"}})
	default:
		http.NotFound(w, r)
	}
}

// requests returns the recorded requests whose path has the given suffix.
func (f *fakeRegistry) requests(suffix string) []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.reqs {
		if strings.HasSuffix(r.Path, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// listTags opens ref with c and lists its tags.
func listTags(t *testing.T, c *Client, ref string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	repo, err := c.Repository(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("Repository(%q): %w", ref, err)
	}
	var tags []string
	err = repo.Tags(ctx, "", func(ts []string) error {
		tags = append(tags, ts...)
		return nil
	})
	return tags, err
}
