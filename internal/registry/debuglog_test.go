package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// The debug log shows each exchange of a bearer token flow (401, token
// request, retried request) and a retry after 429, with every credential
// redacted: the password, the basic string, the token (in a header, a
// cookie and a query parameter) and a storage signature never appear.
func TestDebugLogRedactsCredentials(t *testing.T) {
	const (
		user, pass = "alice", "s3cr3t-passw0rd"
		token      = "tok-0123456789abcdef"
		signature  = "sig-fedcba9876543210"
	)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	f := newFakeRegistry(t, false)
	var throttled atomic.Bool
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.URL.Path == "/token":
			u, p, _ := r.BasicAuth()
			if u != user || p != pass {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			http.SetCookie(w, &http.Cookie{Name: "session", Value: token})
			_ = json.NewEncoder(w).Encode(map[string]string{"token": token})
			return true
		case strings.HasSuffix(r.URL.Path, "/tags/list") && r.Header.Get("Authorization") == "Bearer "+token && throttled.CompareAndSwap(false, true):
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		case strings.HasSuffix(r.URL.Path, "/tags/list") && r.URL.Query().Get("redirected") == "":
			if r.Header.Get("Authorization") != "Bearer "+token {
				return false
			}
			// A registry redirecting to pre-signed storage.
			http.Redirect(w, r, "/v2/app/tags/list?redirected=1&X-Amz-Signature="+signature+"&access_token="+token, http.StatusTemporaryRedirect)
			return true
		}
		return false
	}
	f.challenge = fmt.Sprintf(`Bearer realm=%q,service="fake",scope="repository:app:pull",nonce="%s"`, f.srv.URL+"/token", token)
	f.authorize = func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer "+token || r.URL.Query().Get("redirected") == "1"
	}

	var log lockedBuffer
	c := newTestClient(t, Options{Username: user, Password: pass, DebugLog: &log}, nil)
	tags, err := listTags(t, c, f.host()+"/app")
	if err != nil || len(tags) != 1 {
		t.Fatalf("listTags = %v, %v", tags, err)
	}
	got := log.String()
	t.Logf("debug log:\n%s", got)
	for _, secret := range []string{pass, basic, token, signature} {
		if strings.Contains(got, secret) {
			t.Errorf("debug log contains the secret %q", secret)
		}
	}
	for _, want := range []string{
		"--> GET http://" + f.host() + "/v2/",
		"<-- 401 Unauthorized GET http://" + f.host() + "/v2/app/tags/list",
		`Www-Authenticate: Bearer realm="` + f.srv.URL + `/token",service="fake",scope="repository:app:pull",nonce="[redacted]"`,
		"--> GET " + f.srv.URL + "/token?scope=repository%3Aapp%3Apull&service=fake",
		"Authorization: Basic [redacted]",
		"Set-Cookie: [redacted]",
		"Authorization: Bearer [redacted]",
		"<-- 429 Too Many Requests GET",
		"retry 1 of 5 for GET http://" + f.host() + "/v2/app/tags/list",
		"429 Too Many Requests, Retry-After 0",
		"<-- 307 Temporary Redirect GET",
		"Location: /v2/app/tags/list?redirected=1&X-Amz-Signature=[redacted]&access_token=[redacted]",
		"--> GET http://" + f.host() + "/v2/app/tags/list?redirected=1&X-Amz-Signature=[redacted]&access_token=[redacted]",
		"<-- 200 OK GET",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("debug log lacks %q", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if !strings.HasPrefix(line, "debug | ") {
			t.Errorf("line without the debug prefix: %q", line)
		}
	}
}

// Without DebugLog nothing is logged anywhere: the writer is the only outlet.
func TestDebugLogOffByDefault(t *testing.T) {
	f := newFakeRegistry(t, false)
	c := newTestClient(t, Options{}, nil)
	if _, err := listTags(t, c, f.host()+"/app"); err != nil {
		t.Fatal(err)
	}
	ua := c.httpClient.Transport.(*userAgentTransport)
	if _, ok := ua.base.(*retryTransport).base.(*debugTransport); ok {
		t.Error("debug transport installed without DebugLog")
	}
}

func TestRedactChallenge(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`Basic realm="ferry-e2e"`, `Basic realm="ferry-e2e"`},
		{`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`,
			`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`},
		{`Bearer realm="r",error="invalid_token",token="abc"`, `Bearer realm="r",error="invalid_token",token="[redacted]"`},
		{`Bearer realm=r, nonce=xyz`, `Bearer realm=r, nonce=[redacted]`},
		{`Bearer realm="a\"b",secret="x\"y"`, `Bearer realm="a\"b",secret="[redacted]"`},
		{`Bearer realm="unterminated`, `[redacted]`},
		{`Negotiate`, `Negotiate`},
	} {
		if got := redactChallenge(tt.in); got != tt.want {
			t.Errorf("redactChallenge(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://r.example/v2/a/blobs/sha256:ab", "https://r.example/v2/a/blobs/sha256:ab"},
		{"https://u:p@r.example/v2/", "https://%5Bredacted%5D@r.example/v2/"},
		{"https://auth.example/token?scope=repository%3Aa%3Apull&service=r", "https://auth.example/token?scope=repository%3Aa%3Apull&service=r"},
		{"https://s3.example/b?X-Amz-Credential=AK%2F1&X-Amz-Signature=deadbeef&X-Amz-Expires=60",
			"https://s3.example/b?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]&X-Amz-Expires=60"},
		{"https://blob.example/c?sv=1&sig=abc%3D&se=2", "https://blob.example/c?sv=1&sig=[redacted]&se=2"},
		{"https://r.example/v2/a/blobs/uploads/?mount=sha256:ab&from=b", "https://r.example/v2/a/blobs/uploads/?mount=sha256:ab&from=b"},
		{"https://r.example/x?access_token=t&refresh_token=r&password=p&api_key=k", "https://r.example/x?access_token=[redacted]&refresh_token=[redacted]&password=[redacted]&api_key=[redacted]"},
	} {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactURL(u); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactHeader(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"authorization", "Basic YWxpY2U6cw==", "Basic [redacted]"},
		{"Authorization", "Bearer eyJ.x.y", "Bearer [redacted]"},
		{"Authorization", "opaque", "[redacted]"},
		{"Proxy-Authorization", "Basic Zm9v", "Basic [redacted]"},
		{"Cookie", "a=b", "[redacted]"},
		{"Set-Cookie", "session=abc; Path=/", "[redacted]"},
		{"Location", "/v2/a/blobs/uploads/u?_state=s&token=t", "/v2/a/blobs/uploads/u?_state=s&token=[redacted]"},
		{"Content-Type", "application/json", "application/json"},
	} {
		if got := redactHeader(tt.name, tt.in); got != tt.want {
			t.Errorf("redactHeader(%q, %q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

// dialEverythingTo makes every connection of c go to addr, whatever host a
// URL names, so that a test can stand a loopback server in for a remote one.
func dialEverythingTo(t *testing.T, c *Client, addr string) {
	t.Helper()
	var rt http.RoundTripper = c.httpClient.Transport
	for {
		switch v := rt.(type) {
		case *userAgentTransport:
			rt = v.base
		case *retryTransport:
			rt = v.base
		case *debugTransport:
			rt = v.base
		case *http.Transport:
			v.Proxy = nil
			v.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
			return
		default:
			t.Fatalf("unexpected transport %T", rt)
		}
	}
}

// Plain HTTP is never used for a registry that is not on loopback unless
// Insecure asks for it: ferry speaks HTTPS and the plain-HTTP answer is an
// error that says so.
func TestPlainHTTPOnlyWhenAskedForRemoteHosts(t *testing.T) {
	f := newFakeRegistry(t, false)
	ref := "registry.example.com/app" // not loopback; every dial goes to f
	t.Run("refused by default", func(t *testing.T) {
		c := newTestClient(t, Options{RetryCount: -1}, nil)
		dialEverythingTo(t, c, f.host())
		repo, err := c.Repository(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if repo.PlainHTTP {
			t.Fatal("remote registry opened over plain HTTP without Insecure")
		}
		_, err = listTags(t, c, ref)
		if err == nil || !strings.Contains(err.Error(), "HTTP response to HTTPS client") {
			t.Fatalf("err = %v, want the HTTPS client's refusal of a plain HTTP answer", err)
		}
		if n := len(f.requests("/tags/list")); n != 0 {
			t.Errorf("%d tag requests reached the plain HTTP server", n)
		}
	})
	t.Run("allowed with Insecure", func(t *testing.T) {
		c := newTestClient(t, Options{Insecure: true}, nil)
		dialEverythingTo(t, c, f.host())
		tags, err := listTags(t, c, ref)
		if err != nil || len(tags) != 1 {
			t.Fatalf("listTags = %v, %v", tags, err)
		}
		repo, _ := c.Repository(context.Background(), ref)
		if !repo.PlainHTTP {
			t.Error("Insecure: remote plain HTTP registry not reached over plain HTTP")
		}
	})
}
