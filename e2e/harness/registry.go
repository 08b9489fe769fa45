package harness

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	// The registry finds its auth and storage implementations by name.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// RegistryOptions configures StartRegistry and NewRegistry. The zero value
// gives an anonymous, plain-HTTP registry.
type RegistryOptions struct {
	// Htpasswd maps user names to passwords. When it is not empty the
	// registry requires HTTP basic auth (realm "ferry-e2e") for every
	// request, checked against a bcrypt htpasswd file in Dir.
	Htpasswd map[string]string
	// TLS serves HTTPS with a server certificate for 127.0.0.1 and
	// localhost, signed by a test CA generated for this registry (see
	// Registry.CAPath and Registry.CertPool). Default: plain HTTP.
	TLS bool
	// Dir holds the registry's files: the storage (Dir/storage), the
	// htpasswd file and the CA. Default: t.TempDir() for StartRegistry; for
	// NewRegistry a new temporary directory that Close removes.
	Dir string
	// SparseIndexes accepts image indexes whose child manifests the
	// registry does not hold, as distribution does with
	// validation.manifests.indexes.platforms: none. Default: distribution's
	// own, which refuses such an index (400 MANIFEST_BLOB_UNKNOWN).
	SparseIndexes bool
}

// Registry is a CNCF distribution registry serving in this process on
// 127.0.0.1. Its methods are safe for concurrent use.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of references.
	Host string
	// RootDir is the root of the filesystem storage driver.
	RootDir string
	// CAPath is the PEM file of the test CA that signed the server
	// certificate; empty without TLS.
	CAPath string
	// CertPool holds the test CA; nil without TLS.
	CertPool *x509.CertPool

	opts     RegistryOptions
	ownDir   string // removed by Close when NewRegistry created it
	server   *http.Server
	app      *handlers.App
	stopOnce sync.Once
	served   chan struct{}
	serveErr error // set before served is closed
}

// registryLogOnce silences logrus, the registry's process-wide logger, once
// per process (FERRY_E2E_REGISTRY_LOG=1 keeps it on stderr at Info).
var registryLogOnce sync.Once

func configureRegistryLogging() {
	registryLogOnce.Do(func() {
		if os.Getenv("FERRY_E2E_REGISTRY_LOG") == "1" {
			logrus.SetOutput(os.Stderr)
			logrus.SetLevel(logrus.InfoLevel)
			return
		}
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.ErrorLevel)
	})
}

// StartRegistry starts a registry on 127.0.0.1:0 with filesystem storage in
// t.TempDir() (or opts.Dir), deletes enabled, and non-distributable layers
// with http(s) URLs accepted. It is stopped when the test ends; Stop ends it
// earlier. It fails the test if the registry cannot start or stops serving
// with an error.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	r, err := NewRegistry(opts)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("registry %s: serve: %v", r.Host, err)
		}
	})
	return r
}

// NewRegistry starts a registry like StartRegistry, outside of a test (the
// demo uses it). The caller must call Close, which stops it and removes its
// directory when opts.Dir was empty.
func NewRegistry(opts RegistryOptions) (_ *Registry, err error) {
	configureRegistryLogging()

	r := &Registry{opts: opts, served: make(chan struct{})}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ferry-registry-"); err != nil {
			return nil, err
		}
		r.ownDir = dir
		defer func() {
			if err != nil {
				_ = os.RemoveAll(dir)
			}
		}()
	}
	r.RootDir = filepath.Join(dir, "storage")

	cfg := &configuration.Configuration{}
	cfg.Log.AccessLog.Disabled = true
	cfg.Log.Level = "error"
	cfg.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": r.RootDir},
		"delete":     configuration.Parameters{"enabled": true},
		"maintenance": configuration.Parameters{
			"uploadpurging": map[any]any{"enabled": false},
		},
	}
	if cfg.HTTP.Secret, err = randomHex(16); err != nil {
		return nil, err
	}
	cfg.Validation.Manifests.URLs.Allow = []string{"^https?://"}
	if opts.SparseIndexes {
		cfg.Validation.Manifests.Indexes.Platforms = "none"
	}

	if len(opts.Htpasswd) > 0 {
		path := filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(path, opts.Htpasswd); err != nil {
			return nil, err
		}
		cfg.Auth = configuration.Auth{
			"htpasswd": configuration.Parameters{"realm": "ferry-e2e", "path": path},
		}
	}

	var serverCert tls.Certificate
	if opts.TLS {
		ca, err := newTestCA()
		if err != nil {
			return nil, err
		}
		r.CAPath = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(r.CAPath, ca.certPEM, 0o600); err != nil {
			return nil, fmt.Errorf("write CA: %w", err)
		}
		r.CertPool = x509.NewCertPool()
		r.CertPool.AddCert(ca.cert)
		if serverCert, err = ca.issueServerCert(); err != nil {
			return nil, err
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	r.Host = ln.Addr().String()
	if opts.TLS {
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
		})
	}

	r.app = handlers.NewApp(context.Background(), cfg)
	r.server = &http.Server{
		Handler:           r.app,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          discardLogger(),
	}
	go func() {
		defer close(r.served)
		if err := r.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.serveErr = err
		}
	}()
	return r, nil
}

// Close stops the registry, removes its directory if NewRegistry created
// it, and returns the error that made it stop serving, if any. It is
// idempotent.
func (r *Registry) Close() error {
	r.Stop()
	if r.ownDir != "" {
		if err := os.RemoveAll(r.ownDir); err != nil {
			return err
		}
	}
	return r.serveErr
}

// Stop closes the registry's listener and every open connection at once,
// like a registry going away mid-transfer. It is idempotent and safe to call
// from any goroutine; the stored content stays in RootDir.
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		_ = r.server.Close()
		<-r.served
		_ = r.app.Shutdown()
	})
}

// Scheme is "https" for a TLS registry and "http" otherwise.
func (r *Registry) Scheme() string {
	if r.opts.TLS {
		return "https"
	}
	return "http"
}

// PlainHTTP reports whether the registry speaks plain HTTP (no TLS).
func (r *Registry) PlainHTTP() bool { return !r.opts.TLS }

// Ref returns "HOST/repo", the repository reference for repo.
func (r *Registry) Ref(repo string) string { return r.Host + "/" + repo }

// User returns the first user name (in sorted order) of the htpasswd file and
// its password; both are empty for an anonymous registry.
func (r *Registry) User() (username, password string) {
	if len(r.opts.Htpasswd) == 0 {
		return "", ""
	}
	users := make([]string, 0, len(r.opts.Htpasswd))
	for u := range r.opts.Htpasswd {
		users = append(users, u)
	}
	slices.Sort(users)
	return users[0], r.opts.Htpasswd[users[0]]
}

// HTTPClient returns an HTTP client that trusts the registry's test CA (if
// any) and sends no credentials. Each call returns a new client.
func (r *Registry) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // loopback only, whatever HTTP(S)_PROXY says
	if r.CertPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CertPool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// Client returns an oras-go auth client for the registry: it trusts the test
// CA and logs in as User() when the registry has htpasswd users. Each call
// returns a new client.
func (r *Registry) Client() *auth.Client {
	c := r.AnonymousClient()
	if u, p := r.User(); u != "" {
		c.Credential = auth.StaticCredential(r.Host, auth.Credential{Username: u, Password: p})
	}
	return c
}

// AnonymousClient returns an oras-go auth client that trusts the test CA and
// sends no credentials.
func (r *Registry) AnonymousClient() *auth.Client {
	return &auth.Client{Client: r.HTTPClient(), Cache: auth.NewCache()}
}

// Repository opens repo on the registry with Client().
func (r *Registry) Repository(t testing.TB, repo string) *remote.Repository {
	t.Helper()
	rr, err := remote.NewRepository(r.Ref(repo))
	if err != nil {
		t.Fatalf("repository %s: %v", r.Ref(repo), err)
	}
	rr.Client = r.Client()
	rr.PlainHTTP = r.PlainHTTP()
	return rr
}

// Builder returns a fixture builder that pushes to this registry with
// Client() and the given seed.
func (r *Registry) Builder(seed uint64) *Builder {
	return &Builder{Client: r.Client(), PlainHTTP: r.PlainHTTP(), Seed: seed}
}

func writeHtpasswd(path string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		if u == "" || strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("htpasswd: invalid user name %q", u)
		}
		names = append(names, u)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, u := range names {
		// MinCost keeps test logins fast; the registry accepts any bcrypt cost.
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("htpasswd: hash for %s: %w", u, err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
