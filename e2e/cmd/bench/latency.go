package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// delayProxy is a reverse proxy on 127.0.0.1 in front of one plain-HTTP
// registry that waits a fixed delay before forwarding each request, so a
// tool talking to it sees the registry that much further away per round
// trip (LATENCY). The delay is added once per request, before the request
// goes on: request and response bodies then stream through unbuffered.
// Opening a connection is not delayed (a real TCP handshake would add one
// round trip per new connection). Location headers that point at the
// registry are rewritten to point at the proxy, so uploads come back through
// it. It runs in the bench process: the measured tools' rusage does not
// include it. Its methods are safe for concurrent use.
type delayProxy struct {
	host   string // 127.0.0.1:PORT, what the tools are given
	target *url.URL
	delay  time.Duration

	rp        *httputil.ReverseProxy
	transport *http.Transport
	server    *http.Server
	served    chan struct{}
	stopOnce  sync.Once
}

// startDelayProxy starts a proxy on 127.0.0.1:0 that forwards to target
// (the registry's "host:port") after waiting delay (0 forwards at once).
func startDelayProxy(target string, delay time.Duration) (*delayProxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("delay proxy: target %q: %w", target, err)
	}
	if delay < 0 {
		return nil, fmt.Errorf("delay proxy: negative delay %s", delay)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("delay proxy: %w", err)
	}
	p := &delayProxy{
		host:   ln.Addr().String(),
		target: &url.URL{Scheme: "http", Host: target},
		delay:  delay,
		served: make(chan struct{}),
		transport: &http.Transport{
			Proxy:              nil, // the registry is on loopback; ignore HTTP_PROXY
			DialContext:        (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression: true, // pass the registry's bytes through unchanged
			// Tools run many requests at once (ferry up to 4 × --concurrency
			// small ones): keep the connections to the registry open rather
			// than opening one per request.
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	// A client that hangs up mid-body is normal when a tool fails (the
	// run's error says why): no log lines.
	discard := log.New(io.Discard, "", 0)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target)
		},
		Transport:      p.transport,
		ModifyResponse: p.rewriteLocation,
		ErrorLog:       discard,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.server = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second, ErrorLog: discard}
	go func() {
		defer close(p.served)
		_ = p.server.Serve(ln) // ErrServerClosed after stop
	}()
	return p, nil
}

// ServeHTTP waits the delay (or until the client gives up), then forwards
// the request.
func (p *delayProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// rewriteLocation points an absolute Location at the registry (the upload
// URL a registry returns) at the proxy instead.
func (p *delayProxy) rewriteLocation(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() || u.Host != p.target.Host {
		return nil
	}
	u.Scheme, u.Host = "http", p.host
	resp.Header.Set("Location", u.String())
	return nil
}

// stop closes the listener and every connection and waits for the server
// to end. It is idempotent and safe on nil.
func (p *delayProxy) stop() {
	if p == nil {
		return
	}
	p.stopOnce.Do(func() {
		_ = p.server.Close() // the run is over: nothing to do about an error
		<-p.served
		p.transport.CloseIdleConnections()
	})
}
