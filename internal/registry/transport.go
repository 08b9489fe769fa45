package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"oras.land/oras-go/v2/registry/remote/retry"
)

// retryTiming holds the waits of the retry policy. Tests shorten them.
type retryTiming struct {
	base          time.Duration    // first backoff; doubles with each attempt
	maxBackoff    time.Duration    // cap of the computed backoff
	maxRetryAfter time.Duration    // cap of a Retry-After wait
	now           func() time.Time // clock for Retry-After dates
}

func defaultRetryTiming() retryTiming {
	return retryTiming{
		base:          500 * time.Millisecond,
		maxBackoff:    10 * time.Second,
		maxRetryAfter: 30 * time.Second,
		now:           time.Now,
	}
}

// tlsConfig builds the client TLS configuration: the system pool plus every
// PEM file in caPaths, and no verification with skipVerify.
func tlsConfig(caPaths []string, skipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify} //nolint:gosec // --registry-verify-certs=false asks for it
	if len(caPaths) == 0 {
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, p := range caPaths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("CA certificate file %s: %w: %v", p, ErrInvalidCACert, err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA certificate file %s: %w: no PEM certificate found", p, ErrInvalidCACert)
		}
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// baseTransport is the shared connection pool: proxies from the environment
// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), the TLS configuration and the
// response header timeout.
func baseTransport(tlsCfg *tls.Config, responseHeaderTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
		TLSClientConfig:       tlsCfg,
	}
}

// userAgentTransport sets the User-Agent header on every request that leaves
// ferry: registry calls, token requests, redirects and probes.
type userAgentTransport struct {
	base      http.RoundTripper
	userAgent string
}

func (t *userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := *req // a RoundTripper must not change the caller's request
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set("User-Agent", t.userAgent)
	return t.base.RoundTrip(&r)
}

// retryTransport retries one HTTP exchange with oras-go's retry.Transport
// and a policy that knows the request (its method and context).
type retryTransport struct {
	base     http.RoundTripper
	maxRetry int
	timing   retryTiming
	log      *debugLog // nil: no debug log
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.maxRetry <= 0 {
		return t.base.RoundTrip(req)
	}
	r := *req // retry.Transport rewinds by assigning Body; keep the caller's request intact
	if r.Body == http.NoBody {
		r.Body = nil // retry.Transport only retries a body it can rewind; NoBody needs none
	}
	policy := &retryPolicy{
		maxRetry:   t.maxRetry,
		idempotent: isIdempotent(req.Method),
		ctx:        req.Context(),
		timing:     t.timing,
		jitter:     rand.Float64,
	}
	if t.log != nil {
		method, u := req.Method, redactURL(req.URL)
		policy.onRetry = func(attempt int, wait time.Duration, reason string) {
			reason = strings.ReplaceAll(reason, req.URL.String(), u)
			t.log.printf("retry %d of %d for %s %s in %s: %s", attempt+1, t.maxRetry, method, u, wait.Round(time.Millisecond), reason)
		}
	}
	rt := &retry.Transport{Base: t.base, Policy: func() retry.Policy { return policy }}
	return rt.RoundTrip(&r)
}

// isIdempotent reports whether a request with this method may be sent twice
// when its first attempt failed without an answer or with a server error.
func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace, "":
		return true
	}
	return false
}

// retryPolicy implements retry.Policy for one request.
//
// It retries, at most maxRetry times:
//   - 429 and 503 for every method (the server did not process the request),
//     waiting what Retry-After says (seconds or an HTTP date) up to
//     timing.maxRetryAfter, else the backoff;
//   - 408, 500, 502 and 504, and network errors (connection reset or
//     aborted, broken pipe, EOF, timeouts) for idempotent methods only.
//
// The backoff is exponential (timing.base * 2^attempt, capped at
// timing.maxBackoff) with ±20% jitter. A request whose body cannot be rewound
// is never retried (retry.Transport checks GetBody), and nothing is retried
// once the request's context is done.
type retryPolicy struct {
	maxRetry   int
	idempotent bool
	ctx        context.Context
	timing     retryTiming
	jitter     func() float64 // in [0, 1)
	// onRetry, when not nil, is told of each retry decided: the attempt
	// that failed (from 0), the wait, and why.
	onRetry func(attempt int, wait time.Duration, reason string)
}

var _ retry.Policy = (*retryPolicy)(nil)

// Retry implements retry.Policy. A negative duration means "do not retry".
// It never returns an error, so the caller always gets the last response.
func (p *retryPolicy) Retry(attempt int, resp *http.Response, err error) (time.Duration, error) {
	wait, reason := p.decide(attempt, resp, err)
	if wait >= 0 && p.onRetry != nil {
		p.onRetry(attempt, wait, reason)
	}
	return wait, nil
}

// decide returns the wait before the next attempt (negative: no retry) and
// the reason for a retry.
func (p *retryPolicy) decide(attempt int, resp *http.Response, err error) (time.Duration, string) {
	if attempt >= p.maxRetry || p.ctx.Err() != nil {
		return -1, ""
	}
	if err != nil {
		if p.idempotent && retryableNetError(err) {
			return p.backoff(attempt), err.Error()
		}
		return -1, ""
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
	case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		if !p.idempotent {
			return -1, ""
		}
	default:
		return -1, ""
	}
	if wait, ok := p.retryAfter(resp); ok {
		return wait, resp.Status + ", Retry-After " + resp.Header.Get("Retry-After")
	}
	return p.backoff(attempt), resp.Status
}

// backoff is the exponential wait before retry number attempt+1.
func (p *retryPolicy) backoff(attempt int) time.Duration {
	d := float64(p.timing.base) * math.Pow(2, float64(attempt))
	if max := float64(p.timing.maxBackoff); d > max {
		d = max
	}
	return time.Duration(d * (0.8 + 0.4*p.jitter()))
}

// retryAfter reads the Retry-After header, as delay-seconds or an HTTP date,
// capped at timing.maxRetryAfter.
func (p *retryPolicy) retryAfter(resp *http.Response) (time.Duration, bool) {
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(p.timing.maxRetryAfter/time.Second) {
			return p.timing.maxRetryAfter, true
		}
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = max(at.Sub(p.timing.now()), 0)
	} else {
		return 0, false
	}
	return min(d, p.timing.maxRetryAfter), true
}

// retryableNetError reports whether err is a transient network failure.
func retryableNetError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// probeTimeout bounds the HTTPS/HTTP probe of a loopback or insecure host.
const probeTimeout = 10 * time.Second

// probeResult is what the probe learnt about a host.
type probeResult int

const (
	probeUnknown probeResult = iota // no answer; use HTTPS and probe again next time
	probeHTTPS
	probePlainHTTP
)

// probe finds out whether host speaks HTTPS or plain HTTP by sending
// GET /v2/ over HTTPS, and over HTTP when HTTPS is refused or answered in
// plain HTTP. Any HTTP answer (401 included) decides. A TLS answer that
// fails verification decides HTTPS: ferry never downgrades a TLS registry.
func (c *Client) probe(parent context.Context, host string) (probeResult, error) {
	ctx, cancel := context.WithTimeout(parent, probeTimeout)
	defer cancel()
	get := func(scheme string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := c.probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return resp.Body.Close()
	}
	err := get("https")
	if err == nil {
		return probeHTTPS, nil
	}
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, http.ErrSchemeMismatch), errors.As(err, &recordErr):
		return probePlainHTTP, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		if get("http") == nil {
			return probePlainHTTP, nil
		}
	}
	if err := parent.Err(); err != nil {
		return probeUnknown, err
	}
	if isTLSFailure(err) {
		return probeHTTPS, nil
	}
	return probeUnknown, nil
}

// isTLSFailure reports whether err comes from a TLS handshake that reached a
// TLS server (bad certificate, alert), as opposed to a network failure.
func isTLSFailure(err error) bool {
	var verr *tls.CertificateVerificationError
	var alert tls.AlertError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &alert) || errors.As(err, &unknownAuthority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}
