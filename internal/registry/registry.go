// Package registry gives ferry its remote repositories: oras-go
// repositories behind one shared HTTP transport with imgpkg's credential
// chain, TLS settings, proxies from the environment, retries and ferry's
// user agent.
package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Errors of this package; returned errors wrap them with the file, variable
// or registry concerned.
var (
	// ErrInvalidCACert: a --registry-ca-cert-path file is unreadable or holds
	// no PEM certificate.
	ErrInvalidCACert = errors.New("invalid CA certificate")
	// ErrInvalidEnv: an IMGPKG_REGISTRY_* variable is unknown or malformed.
	ErrInvalidEnv = errors.New("invalid registry environment variable")
	// ErrUnauthorized: the registry refused the credentials (401/403), or
	// asked for credentials that no source had. See [AuthError].
	ErrUnauthorized = errors.New("registry denied access")
)

// Defaults of Options fields left at their zero value.
const (
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultRetryCount            = 5
	DefaultUserAgent             = "ferry"
)

// Options configure a Client. The zero value is usable: system trust store,
// HTTPS except for loopback hosts, credentials from IMGPKG_REGISTRY_* and the
// Docker config, 30 s response header timeout, 5 retries, user agent "ferry".
type Options struct {
	// CACertPaths are PEM files whose certificates are trusted in addition
	// to the system pool (--registry-ca-cert-path, repeatable).
	CACertPaths []string
	// SkipVerify turns off TLS certificate verification
	// (--registry-verify-certs=false).
	SkipVerify bool
	// Insecure allows plain HTTP for every registry (--registry-insecure):
	// each host is probed once and plain HTTP is used when it does not speak
	// TLS. Loopback hosts are always treated this way.
	Insecure bool

	// Username and Password are basic credentials for every registry
	// (--registry-username, --registry-password, or IMGPKG_USERNAME and
	// IMGPKG_PASSWORD, filled in by the command layer).
	Username, Password string
	// Token is a bearer token sent to every registry (--registry-token,
	// IMGPKG_TOKEN). Ignored when Username is set.
	Token string
	// Anon asks for anonymous access to every registry not named by an
	// IMGPKG_REGISTRY_HOSTNAME variable (--registry-anon, IMGPKG_ANON).
	// Ignored when Username or Token is set.
	Anon bool

	// ResponseHeaderTimeout bounds the wait for a response's headers.
	// 0 means DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// RetryCount is the number of retries after a failed request.
	// 0 means DefaultRetryCount; negative means no retries.
	RetryCount int
	// UserAgent is sent with every request ("ferry/<version>" from the
	// command). "" means DefaultUserAgent.
	UserAgent string

	// Getenv reads the environment (IMGPKG_USERNAME and friends for source
	// descriptions, DOCKER_CONFIG, HOME). nil means os.Getenv. Proxies are
	// always read from the process environment (http.ProxyFromEnvironment).
	Getenv func(string) string
	// Environ lists the environment, to find IMGPKG_REGISTRY_HOSTNAME_<N>
	// groups. nil means os.Environ (even when Getenv is set).
	Environ func() []string

	// DebugLog, when not nil, receives a log of every HTTP exchange with a
	// registry (each attempt of a retried request, token requests,
	// redirects and probes) and of every retry wait: method, URL, status,
	// duration and selected headers, each line prefixed "debug | ".
	// Credentials are redacted (Authorization, cookies, token and signature
	// query parameters, unknown WWW-Authenticate parameters) and bodies are
	// never written. Writes are serialized, one entry per Write, so the
	// writer need not be safe for concurrent use. nil (the default) logs
	// nothing; the package never writes anywhere else.
	DebugLog io.Writer
}

// Client opens remote repositories. All repositories share one connection
// pool and, per registry and credential source, one token cache.
// A Client is safe for concurrent use.
type Client struct {
	env    []envCredential
	static *staticCredential
	docker *dockerConfig

	insecure    bool
	httpClient  *http.Client // user agent + retries + shared pool
	probeClient *http.Client // user agent + shared pool, no retries, no redirects

	mu      sync.Mutex
	schemes map[string]*hostScheme // by host[:port]
	caches  map[cacheKey]auth.Cache
}

// hostScheme is the probe's cached verdict for one host.
type hostScheme struct {
	mu     sync.Mutex // held while probing, so a host is probed once at a time
	result probeResult
}

// cacheKey separates token caches by registry and credential source, so a
// basic token of one IMGPKG_REGISTRY_HOSTNAME group is never sent for a
// repository of another group on the same registry.
type cacheKey struct{ host, source string }

// New builds a Client. It fails when a CA certificate file cannot be used
// (the error names the file) or an IMGPKG_REGISTRY_* variable is unknown or
// malformed (the error names the variable). The Docker config is read on
// first use.
func New(opts Options) (*Client, error) {
	return newClient(opts, defaultRetryTiming())
}

func newClient(opts Options, timing retryTiming) (*Client, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ
	}
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	switch {
	case opts.RetryCount == 0:
		opts.RetryCount = DefaultRetryCount
	case opts.RetryCount < 0:
		opts.RetryCount = 0
	}
	if opts.UserAgent == "" {
		opts.UserAgent = DefaultUserAgent
	}

	env, err := parseEnvCredentials(environ())
	if err != nil {
		return nil, err
	}
	tlsCfg, err := tlsConfig(opts.CACertPaths, opts.SkipVerify)
	if err != nil {
		return nil, err
	}
	var pool http.RoundTripper = baseTransport(tlsCfg, opts.ResponseHeaderTimeout)
	var dlog *debugLog
	if opts.DebugLog != nil {
		dlog = &debugLog{w: opts.DebugLog}
		pool = &debugTransport{base: pool, log: dlog}
	}
	return &Client{
		env:      env,
		static:   staticFromOptions(opts, getenv),
		docker:   &dockerConfig{path: dockerConfigPath(getenv)},
		insecure: opts.Insecure,
		httpClient: &http.Client{Transport: &userAgentTransport{
			userAgent: opts.UserAgent,
			base:      &retryTransport{base: pool, maxRetry: opts.RetryCount, timing: timing, log: dlog},
		}},
		probeClient: &http.Client{
			Transport:     &userAgentTransport{userAgent: opts.UserAgent, base: pool},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		schemes: map[string]*hostScheme{},
		caches:  map[cacheKey]auth.Cache{},
	}, nil
}

// Repository opens the repository named by ref ("host[:port]/path[:tag|@digest]",
// Docker Hub short names allowed, see [Client.ParseReference]). The returned
// repository's Reference keeps the tag or digest. Credentials come from the
// first source of the chain that answers for this repository (see
// [Client.CredentialSource]). Loopback hosts, and all hosts with
// Options.Insecure, are probed once (GET /v2/) to choose between HTTPS and
// plain HTTP; the answer is cached. The repository may be used concurrently.
func (c *Client) Repository(ctx context.Context, ref string) (*remote.Repository, error) {
	parsed, err := c.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	return c.RepositoryFor(ctx, parsed)
}

// RepositoryFor is [Client.Repository] for an already parsed reference.
func (c *Client) RepositoryFor(ctx context.Context, ref orasregistry.Reference) (*remote.Repository, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	host := ref.Host()
	plain, err := c.plainHTTP(ctx, host)
	if err != nil {
		return nil, err
	}
	source, cred := c.credentialFor(host, ref.Repository)
	return &remote.Repository{
		Client: &auth.Client{
			Client:     c.httpClient,
			Credential: cred,
			Cache:      c.cache(host, source),
			ClientID:   "ferry",
		},
		Reference: ref,
		PlainHTTP: plain,
	}, nil
}

// plainHTTP decides whether host is reached over plain HTTP.
func (c *Client) plainHTTP(ctx context.Context, host string) (bool, error) {
	if !c.insecure && !IsLoopback(host) {
		return false, nil
	}
	c.mu.Lock()
	hs := c.schemes[host]
	if hs == nil {
		hs = &hostScheme{}
		c.schemes[host] = hs
	}
	c.mu.Unlock()

	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.result == probeUnknown {
		result, err := c.probe(ctx, host)
		if err != nil {
			return false, err
		}
		hs.result = result
	}
	return hs.result == probePlainHTTP, nil
}

// cache returns the token cache shared by repositories of host whose
// credentials come from source.
func (c *Client) cache(host, source string) auth.Cache {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{host, source}
	if ac, ok := c.caches[k]; ok {
		return ac
	}
	ac := auth.NewCache()
	c.caches[k] = ac
	return ac
}
