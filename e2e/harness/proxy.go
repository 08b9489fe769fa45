package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Class is the kind of registry API path a request addressed.
type Class string

// The classes of request paths the proxy counts separately.
const (
	ClassManifest  Class = "manifest"  // /v2/<name>/manifests/<reference>
	ClassBlob      Class = "blob"      // /v2/<name>/blobs/<digest>
	ClassUpload    Class = "upload"    // /v2/<name>/blobs/uploads/...
	ClassTags      Class = "tags"      // /v2/<name>/tags/list
	ClassReferrers Class = "referrers" // /v2/<name>/referrers/<digest>
	ClassToken     Class = "token"     // token endpoints outside /v2/ (/token, /auth...)
	ClassOther     Class = "other"     // /v2/, /v2/_catalog and anything else
)

// ClassOf classifies a request by its URL path.
func ClassOf(r *http.Request) Class { return classOfPath(r.URL.Path) }

func classOfPath(p string) Class {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		if strings.HasPrefix(p, "/token") || strings.HasPrefix(p, "/auth") || strings.HasPrefix(p, "/oauth") {
			return ClassToken
		}
		return ClassOther
	}
	// A repository name may contain any of these words as a path component,
	// so the marker closest to the end wins.
	best, bestAt := ClassOther, -1
	for _, m := range []struct {
		marker string
		class  Class
	}{
		{"/manifests/", ClassManifest},
		{"/blobs/", ClassBlob},
		{"/blobs/uploads", ClassUpload},
		{"/tags/list", ClassTags},
		{"/referrers/", ClassReferrers},
	} {
		if at := strings.LastIndex("/"+rest, m.marker); at >= bestAt && at >= 0 {
			best, bestAt = m.class, at
		}
	}
	return best
}

// RequestKey counts requests by HTTP method and path class.
type RequestKey struct {
	Method string
	Class  Class
}

// RequestRecord describes one request the proxy handled.
type RequestRecord struct {
	Method string
	Path   string
	// Query is the raw query string, for example "mount=sha256:...&from=repo"
	// on a cross-repository mount or "digest=sha256:..." on the PUT that
	// ends an upload.
	Query string
	Class Class
	// Range is the request's Range header, if any.
	Range string
	// Status is the status code sent to the client (0 if none was sent).
	Status int
	// BodyBytes is the number of response body bytes written to the client.
	BodyBytes int64
	// UploadBytes is the number of request body bytes sent to the registry.
	UploadBytes int64
	// Fault is the fault injected into this request, FaultNone if none.
	Fault FaultKind
	// Start is when the proxy received the request's headers; End is when
	// its handler returned (after the last body byte or the fault).
	Start, End time.Time
}

// maxRecords bounds Stats.Log; requests past it are counted but not logged.
const maxRecords = 10000

// Stats is a snapshot of what a Proxy saw since it started or was Reset.
type Stats struct {
	// Requests counts requests by method and path class.
	Requests map[RequestKey]int
	// BlobBytesServed counts response body bytes written to clients for
	// GET /v2/<name>/blobs/<digest> (ranged and cut responses included).
	BlobBytesServed int64
	// BlobBytesServedByDigest splits BlobBytesServed by blob digest.
	BlobBytesServedByDigest map[digest.Digest]int64
	// BlobBytesUploaded counts request body bytes of PUT and PATCH requests
	// on /v2/<name>/blobs/uploads/ forwarded to the registry.
	BlobBytesUploaded int64
	// Log lists the first 10000 requests in the order they completed. A
	// record is appended when the proxy's handler returns, which can be a
	// moment after the client read the last byte of a large response; the
	// counters above are updated before the client sees the bytes.
	Log []RequestRecord
}

// Count returns the number of requests with method (any method if empty)
// and class (any class if empty).
func (s Stats) Count(method string, class Class) int {
	n := 0
	for k, v := range s.Requests {
		if (method == "" || k.Method == method) && (class == "" || k.Class == class) {
			n += v
		}
	}
	return n
}

// FaultKind says which fault a Fault injects.
type FaultKind int

// Fault kinds.
const (
	// FaultNone forwards the request unchanged.
	FaultNone FaultKind = iota
	// FaultCut forwards the request, then closes the connection after
	// CutAfter bytes of the response body.
	FaultCut
	// FaultStatus answers with Status, Header and Body without contacting
	// the registry.
	FaultStatus
	// FaultThrottle forwards the request and sends the response body at
	// no more than Rate bytes per second, so a test can act while a large
	// response is in flight. A request body (an upload) is read at the same
	// pace.
	FaultThrottle
	// FaultReset resets the client's TCP connection (SO_LINGER 0, so the
	// client sees ECONNRESET, not a clean end of stream): before the request
	// is forwarded when At is negative, otherwise after At bytes of the
	// response body.
	FaultReset
	// FaultCorrupt forwards the request and flips every bit of the response
	// body byte at offset At (counted from the first byte of this response,
	// also for a ranged one): same length, wrong content.
	FaultCorrupt
)

func (k FaultKind) String() string {
	switch k {
	case FaultNone:
		return "none"
	case FaultCut:
		return "cut"
	case FaultStatus:
		return "status"
	case FaultThrottle:
		return "throttle"
	case FaultReset:
		return "reset"
	case FaultCorrupt:
		return "corrupt"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is what the proxy does to one request. The zero value injects
// nothing.
type Fault struct {
	Kind FaultKind
	// CutAfter is the number of response body bytes sent before the
	// connection is closed (FaultCut).
	CutAfter int64
	// Status, Header and Body make the response of FaultStatus.
	Status int
	Header http.Header
	Body   []byte
	// Rate is the body's pace in bytes per second (FaultThrottle).
	Rate int64
	// At is a response body offset: where FaultReset resets the connection
	// (negative: before forwarding) and which byte FaultCorrupt flips.
	At int64
}

// CutAfter returns a fault that closes the connection after n bytes of the
// response body (headers, including Content-Length, are sent unchanged).
func CutAfter(n int64) Fault { return Fault{Kind: FaultCut, CutAfter: max(n, 0)} }

// Throttle returns a fault that sends the response body at no more than
// bytesPerSecond (at least 1). The body is paced in slices of 1/50 s, so a
// client sees steady progress; the status and headers are not delayed.
func Throttle(bytesPerSecond int64) Fault {
	return Fault{Kind: FaultThrottle, Rate: max(bytesPerSecond, 1)}
}

// Reset returns a fault that resets the client's connection as soon as the
// request arrives, without forwarding it.
func Reset() Fault { return Fault{Kind: FaultReset, At: -1} }

// ResetAfter returns a fault that forwards the request and resets the
// client's connection after n bytes of the response body (n >= 0).
func ResetAfter(n int64) Fault { return Fault{Kind: FaultReset, At: max(n, 0)} }

// CorruptAt returns a fault that forwards the request and flips the bits of
// the response body byte at offset n; a body shorter than n+1 bytes is sent
// unchanged.
func CorruptAt(n int64) Fault { return Fault{Kind: FaultCorrupt, At: max(n, 0)} }

// RespondStatus returns a fault that answers with status and header (which
// may be nil) and no body, without forwarding the request.
func RespondStatus(status int, header http.Header) Fault {
	return Fault{Kind: FaultStatus, Status: status, Header: header}
}

// FaultFirst returns a fault hook that injects f into the first n requests
// for which match returns true (match nil matches every request), and no
// fault afterwards. The hook is safe for concurrent use.
func FaultFirst(n int, match func(*http.Request) bool, f Fault) func(*http.Request) Fault {
	var left atomic.Int64
	left.Store(int64(n))
	return func(r *http.Request) Fault {
		if match != nil && !match(r) {
			return Fault{}
		}
		if left.Add(-1) < 0 {
			return Fault{}
		}
		return f
	}
}

// FaultSeq returns a fault hook that injects faults[i] into the i-th request
// (from 0) for which match returns true (match nil matches every request),
// and no fault once the list is used up. The hook is safe for concurrent
// use; concurrent matching requests take the faults in the order they
// reach the hook.
func FaultSeq(match func(*http.Request) bool, faults ...Fault) func(*http.Request) Fault {
	faults = slices.Clone(faults)
	var next atomic.Int64
	return func(r *http.Request) Fault {
		if match != nil && !match(r) {
			return Fault{}
		}
		i := next.Add(1) - 1
		if i >= int64(len(faults)) {
			return Fault{}
		}
		return faults[i]
	}
}

// FaultCycle returns a fault hook that injects faults[i%len(faults)] into
// the i-th request (from 0) for which match returns true (match nil matches
// every request): unlike FaultSeq it starts over when the list is used up,
// so FaultCycle(m, Fault{}, ServeManifest(b, mt)) makes the matching
// requests see the registry's answer and b in turn, for as long as the test
// runs. No faults means no fault. The hook is safe for concurrent use;
// concurrent matching requests take the faults in the order they reach the
// hook.
func FaultCycle(match func(*http.Request) bool, faults ...Fault) func(*http.Request) Fault {
	faults = slices.Clone(faults)
	var next atomic.Int64
	return func(r *http.Request) Fault {
		if len(faults) == 0 || (match != nil && !match(r)) {
			return Fault{}
		}
		return faults[(next.Add(1)-1)%int64(len(faults))]
	}
}

// ServeManifest returns a fault that answers, without contacting the
// registry, as a registry serving raw as a manifest of mediaType: status
// 200 with Content-Type, Content-Length and Docker-Content-Digest (the
// digest of raw) and raw as the body (no body for HEAD). A test makes the
// registry lie by changing the returned fault's Header, for example its
// Docker-Content-Digest.
func ServeManifest(raw []byte, mediaType string) Fault {
	return Fault{
		Kind:   FaultStatus,
		Status: http.StatusOK,
		Header: http.Header{
			"Content-Type":          {mediaType},
			"Content-Length":        {strconv.Itoa(len(raw))},
			"Docker-Content-Digest": {digest.FromBytes(raw).String()},
		},
		Body: slices.Clone(raw),
	}
}

// IsManifestRequest returns a request matcher for GET and HEAD requests of
// the manifest reference ref (a tag or a digest) in repository repo.
func IsManifestRequest(repo, ref string) func(*http.Request) bool {
	path := "/v2/" + repo + "/manifests/" + ref
	return func(r *http.Request) bool {
		return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == path
	}
}

// IsBlobGet matches GET requests for a blob (GET /v2/<name>/blobs/<digest>).
func IsBlobGet(r *http.Request) bool { return r.Method == http.MethodGet && ClassOf(r) == ClassBlob }

// Proxy is a reverse proxy on 127.0.0.1 in front of one plain-HTTP registry.
// It counts requests and blob bytes and injects faults. Its methods are safe
// for concurrent use.
type Proxy struct {
	// Host is "127.0.0.1:PORT", the registry part of references that go
	// through the proxy.
	Host string

	target   *url.URL
	server   *http.Server
	served   chan struct{}
	stopOnce sync.Once

	mu    sync.Mutex
	stats Stats
	fault func(*http.Request) Fault
}

type faultKey struct{}

// errCut ends a response body early on purpose.
var errCut = errors.New("harness: response cut by fault injection")

// StartProxy starts a proxy on 127.0.0.1:0 forwarding to target, a
// loopback "host:port" serving plain HTTP. Location headers that point at
// target are rewritten to point at the proxy, so uploads come back through
// it. It stops when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("proxy: target %q: %v", target, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		t.Fatalf("proxy: target %q is not a loopback address", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{
		Host:   ln.Addr().String(),
		target: &url.URL{Scheme: "http", Host: target},
		served: make(chan struct{}),
	}
	p.resetLocked()

	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableCompression:  true, // pass bytes through exactly as the registry sends them
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target)
		},
		Transport:      tr,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       discardLogger(),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.server = &http.Server{
		Handler:           p.handler(rp),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          discardLogger(),
	}
	go func() {
		defer close(p.served)
		if err := p.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("proxy %s: serve: %v", p.Host, err)
		}
	}()
	t.Cleanup(func() {
		p.Stop()
		tr.CloseIdleConnections()
	})
	return p
}

// Stop closes the proxy's listener and open connections. It is idempotent.
func (p *Proxy) Stop() {
	p.stopOnce.Do(func() {
		_ = p.server.Close()
		<-p.served
	})
}

// Ref returns "PROXYHOST/repo", the repository reference for repo through
// the proxy.
func (p *Proxy) Ref(repo string) string { return p.Host + "/" + repo }

// SetFault installs hook, called once per request to choose its fault; nil
// removes it. The hook may be called from many goroutines at once.
func (p *Proxy) SetFault(hook func(r *http.Request) Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = hook
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Requests = maps.Clone(p.stats.Requests)
	s.BlobBytesServedByDigest = maps.Clone(p.stats.BlobBytesServedByDigest)
	s.Log = append([]RequestRecord(nil), p.stats.Log...)
	return s
}

// Reset sets every counter to zero and empties the log.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetLocked()
}

func (p *Proxy) resetLocked() {
	p.stats = Stats{
		Requests:                map[RequestKey]int{},
		BlobBytesServedByDigest: map[digest.Digest]int64{},
	}
}

func (p *Proxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		class := ClassOf(r)
		p.mu.Lock()
		hook := p.fault
		p.mu.Unlock()
		var f Fault
		if hook != nil {
			f = hook(r)
		}

		p.mu.Lock()
		p.stats.Requests[RequestKey{Method: r.Method, Class: class}]++
		p.mu.Unlock()

		cw := &countingWriter{
			ResponseWriter: w, p: p, resetAt: -1,
			flushEach: f.Kind == FaultCut || f.Kind == FaultThrottle || f.Kind == FaultReset,
		}
		if f.Kind == FaultReset {
			cw.resetAt = f.At
		}
		if r.Method == http.MethodGet && class == ClassBlob {
			cw.blob = digest.Digest(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
		}
		rec := RequestRecord{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Class: class, Range: r.Header.Get("Range"), Fault: f.Kind, Start: start}
		var up *countingReader
		if class == ClassUpload && (r.Method == http.MethodPut || r.Method == http.MethodPatch) && r.Body != nil && r.Body != http.NoBody {
			up = &countingReader{ReadCloser: r.Body, p: p}
			if f.Kind == FaultThrottle {
				up.pace = &pacer{ctx: r.Context(), rate: f.Rate}
			}
			r.Body = up
		}
		// Recorded even when the handler aborts the connection (panic).
		defer func() {
			rec.Status = cw.status
			rec.BodyBytes = cw.n.Load()
			rec.End = time.Now()
			if up != nil {
				rec.UploadBytes = up.n.Load()
			}
			p.mu.Lock()
			if len(p.stats.Log) < maxRecords {
				p.stats.Log = append(p.stats.Log, rec)
			}
			p.mu.Unlock()
		}()

		switch f.Kind {
		case FaultStatus:
			maps.Copy(w.Header(), f.Header)
			cw.WriteHeader(f.Status)
			_, _ = cw.Write(f.Body)
			return
		case FaultReset:
			if f.At < 0 {
				_ = resetConn(w)
				return
			}
		case FaultCut, FaultThrottle, FaultCorrupt:
			r = r.WithContext(context.WithValue(r.Context(), faultKey{}, f))
		}
		next.ServeHTTP(cw, r)
	})
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil && u.IsAbs() && u.Host == p.target.Host {
			u.Scheme = "http"
			u.Host = p.Host
			resp.Header.Set("Location", u.String())
		}
	}
	if f, ok := resp.Request.Context().Value(faultKey{}).(Fault); ok {
		switch f.Kind {
		case FaultCut:
			resp.Body = &cutBody{ReadCloser: resp.Body, left: f.CutAfter}
		case FaultThrottle:
			resp.Body = &throttledBody{ReadCloser: resp.Body, pace: pacer{ctx: resp.Request.Context(), rate: f.Rate}}
		case FaultCorrupt:
			resp.Body = &corruptBody{ReadCloser: resp.Body, at: f.At}
		}
	}
	return nil
}

// throttleSlices is how many slices per second a throttled body is sent in.
const throttleSlices = 50

// pacer paces a stream at rate bytes per second from its first use; it
// stops waiting when ctx (the client's request) ends.
type pacer struct {
	ctx   context.Context
	rate  int64
	start time.Time
	sent  int64
}

// wait blocks until the bytes sent so far are due and returns how many bytes
// may be moved next (at most want, at least 1).
func (p *pacer) wait(want int) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return 0, p.ctx.Err()
		case <-timer.C:
		}
	}
	if slice := max(p.rate/throttleSlices, 1); int64(want) > slice {
		return int(slice), nil
	}
	return want, nil
}

// throttledBody paces reads of a response body.
type throttledBody struct {
	io.ReadCloser
	pace pacer
}

func (b *throttledBody) Read(p []byte) (int, error) {
	n, err := b.pace.wait(len(p))
	if err != nil {
		return 0, err
	}
	n, err = b.ReadCloser.Read(p[:n])
	b.pace.sent += int64(n)
	return n, err
}

// corruptBody flips the bits of the byte at offset at.
type corruptBody struct {
	io.ReadCloser
	at  int64
	off int64
}

func (c *corruptBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	if i := c.at - c.off; i >= 0 && i < int64(n) {
		b[i] ^= 0xff
	}
	c.off += int64(n)
	return n, err
}

// errReset ends a response on purpose with a connection reset.
var errReset = errors.New("harness: connection reset by fault injection")

// resetConn takes over the client connection behind w and closes it with
// SO_LINGER 0, so the kernel sends a TCP RST.
func resetConn(w http.ResponseWriter) error {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return conn.Close()
}

// cutBody returns errCut after left bytes; the reverse proxy then aborts the
// client connection mid-body.
type cutBody struct {
	io.ReadCloser
	left int64
}

func (c *cutBody) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errCut
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.ReadCloser.Read(b)
	c.left -= int64(n)
	return n, err
}

// countingWriter counts response body bytes written to the client.
type countingWriter struct {
	http.ResponseWriter
	p         *Proxy
	blob      digest.Digest // set for blob GETs
	flushEach bool          // flush every write, so a cut leaves exactly the bytes counted on the wire
	resetAt   int64         // reset the connection after this many body bytes; -1: never
	reset     bool          // the connection was reset
	status    int
	n         atomic.Int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.reset {
		return 0, errReset
	}
	if w.resetAt >= 0 && w.n.Load()+int64(len(b)) > w.resetAt {
		head := b[:w.resetAt-w.n.Load()]
		n, err := w.write(head)
		if err == nil {
			err = errReset
		}
		w.reset = true
		_ = resetConn(w.ResponseWriter)
		return n, err
	}
	return w.write(b)
}

func (w *countingWriter) write(b []byte) (int, error) {
	// Count before writing, so a client that has read the bytes never sees
	// a snapshot without them; take back what was not written.
	w.add(int64(len(b)))
	n, err := w.ResponseWriter.Write(b)
	if n < len(b) {
		w.add(int64(n - len(b)))
	}
	if err == nil && w.flushEach {
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	return n, err
}

func (w *countingWriter) add(n int64) {
	w.n.Add(n)
	if w.blob != "" {
		w.p.mu.Lock()
		w.p.stats.BlobBytesServed += n
		w.p.stats.BlobBytesServedByDigest[w.blob] += n
		w.p.mu.Unlock()
	}
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingReader counts upload body bytes read by the transport, paced when
// the request is throttled.
type countingReader struct {
	io.ReadCloser
	p    *Proxy
	pace *pacer // nil: not throttled
	n    atomic.Int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	if r.pace != nil {
		want, err := r.pace.wait(len(b))
		if err != nil {
			return 0, err
		}
		b = b[:want]
	}
	n, err := r.ReadCloser.Read(b)
	if r.pace != nil {
		r.pace.sent += int64(n)
	}
	if n > 0 {
		r.n.Add(int64(n))
		r.p.mu.Lock()
		r.p.stats.BlobBytesUploaded += int64(n)
		r.p.mu.Unlock()
	}
	return n, err
}
