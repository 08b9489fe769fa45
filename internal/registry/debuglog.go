package registry

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// redacted replaces a secret in the debug log.
const redacted = "[redacted]"

// debugLog writes the HTTP debug log (Options.DebugLog). Each entry is
// one Write of whole lines, so entries of concurrent requests never
// interleave inside a line. It is safe for concurrent use.
type debugLog struct {
	mu sync.Mutex
	w  io.Writer
	id atomic.Int64
}

// printf writes one entry; every line gets the "debug | " prefix.
func (l *debugLog) printf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	var b strings.Builder
	for line := range strings.SplitSeq(msg, "\n") {
		b.WriteString("debug | ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, b.String())
}

// Headers written to the debug log, in this order; every other header is
// left out. Values of credentials are redacted (see redactHeader).
var (
	debugRequestHeaders = []string{
		"Authorization", "Proxy-Authorization", "Cookie", "Range", "Content-Type", "Content-Length",
	}
	debugResponseHeaders = []string{
		"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Docker-Content-Digest",
		"Location", "Retry-After", "Www-Authenticate", "Set-Cookie", "Oci-Subject", "Warning",
	}
)

// debugTransport logs every request and response that passes through it:
// method, URL, status, duration and the headers listed above, with
// credentials redacted. Bodies are never logged.
type debugTransport struct {
	base http.RoundTripper
	log  *debugLog
}

func (t *debugTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	id := t.log.id.Add(1)
	var b strings.Builder
	fmt.Fprintf(&b, "#%d --> %s %s", id, req.Method, redactURL(req.URL))
	for _, name := range debugRequestHeaders {
		for _, v := range req.Header.Values(name) {
			fmt.Fprintf(&b, "\n#%d     %s: %s", id, name, redactHeader(name, v))
		}
	}
	if req.ContentLength > 0 && req.Header.Get("Content-Length") == "" {
		fmt.Fprintf(&b, "\n#%d     Content-Length: %d", id, req.ContentLength)
	}
	t.log.printf("%s", b.String())

	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	elapsed := time.Since(start).Round(time.Millisecond)
	if err != nil {
		t.log.printf("#%d <-- %s %s: error after %s: %s", id, req.Method, redactURL(req.URL), elapsed, redactError(err, req.URL))
		return nil, err
	}
	b.Reset()
	fmt.Fprintf(&b, "#%d <-- %s %s %s (%s)", id, resp.Status, req.Method, redactURL(req.URL), elapsed)
	for _, name := range debugResponseHeaders {
		for _, v := range resp.Header.Values(name) {
			fmt.Fprintf(&b, "\n#%d     %s: %s", id, name, redactHeader(name, v))
		}
	}
	t.log.printf("%s", b.String())
	return resp, nil
}

// redactError returns err's message with the request URL (as net/http may
// quote it, query included) replaced by its redacted form.
func redactError(err error, u *url.URL) string {
	msg := err.Error()
	if u == nil {
		return msg
	}
	return strings.ReplaceAll(msg, u.String(), redactURL(u))
}

// secretQueryWords mark query parameters whose values are credentials or
// signatures: tokens of token endpoints and OAuth2, passwords, and the
// signatures of pre-signed storage URLs a registry redirects blob reads to.
var secretQueryWords = []string{
	"token", "password", "passwd", "secret", "signature", "sig", "credential", "key", "code", "auth", "session",
}

// redactURL returns u as a string with its user information and the values
// of query parameters that carry credentials (tokens, passwords, signatures,
// keys) replaced by "[redacted]". Other parameters (scope, service, digest,
// mount, from) are kept, so the log still says what was asked for.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if c.User != nil {
		c.User = url.User(redacted)
	}
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			key, _, hasValue := strings.Cut(p, "=")
			if name, err := url.QueryUnescape(key); err == nil && hasValue && isSecretName(name) {
				parts[i] = key + "=" + redacted
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	return c.String()
}

// isSecretName reports whether a query parameter name looks like a credential.
func isSecretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretQueryWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// redactHeader returns the value of header name as the debug log shows it.
func redactHeader(name, value string) string {
	switch http.CanonicalHeaderKey(name) {
	case "Authorization", "Proxy-Authorization":
		// Keep the scheme ("Basic", "Bearer"): it tells which kind of
		// credential was sent, not the credential.
		if scheme, _, ok := strings.Cut(strings.TrimSpace(value), " "); ok {
			return scheme + " " + redacted
		}
		return redacted
	case "Cookie", "Set-Cookie":
		return redacted
	case "Www-Authenticate", "Proxy-Authenticate":
		return redactChallenge(value)
	case "Location":
		if u, err := url.Parse(value); err == nil {
			return redactURL(u)
		}
		return redacted
	}
	return value
}

// challengeParams are the WWW-Authenticate parameters shown in the debug
// log; any other parameter's value is redacted.
var challengeParams = map[string]bool{"realm": true, "service": true, "scope": true, "error": true, "error_description": true}

// redactChallenge keeps the scheme and the well-known parameters of a
// WWW-Authenticate value (realm, service, scope, error) and redacts the
// values of every other parameter. A value it cannot parse is redacted whole.
func redactChallenge(value string) string {
	var out strings.Builder
	s := strings.TrimSpace(value)
	for s != "" {
		// A scheme, or a parameter name.
		i := strings.IndexAny(s, " =,")
		if i < 0 {
			out.WriteString(s)
			break
		}
		token := s[:i]
		s = s[i:]
		if s[0] != '=' {
			out.WriteString(token)
			out.WriteByte(s[0])
			s = s[1:]
			continue
		}
		s = s[1:]
		var v string
		quoted := strings.HasPrefix(s, `"`)
		if quoted {
			end := closingQuote(s)
			if end < 0 {
				return redacted
			}
			v, s = s[1:end], s[end+1:]
		} else {
			end := strings.IndexAny(s, " ,")
			if end < 0 {
				end = len(s)
			}
			v, s = s[:end], s[end:]
		}
		if !challengeParams[strings.ToLower(token)] {
			v = redacted
		}
		if quoted {
			out.WriteString(token + `="` + v + `"`)
		} else {
			out.WriteString(token + "=" + v)
		}
	}
	return out.String()
}

// closingQuote returns the index of the quote that closes the quoted string
// at the start of s, honouring backslash escapes, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
