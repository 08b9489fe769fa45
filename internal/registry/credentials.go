package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// Environment variable names of the credential chain (imgpkg's names).
const (
	envRegistryPrefix = "IMGPKG_REGISTRY_"
	envUsername       = "IMGPKG_USERNAME"
	envPassword       = "IMGPKG_PASSWORD"
	envToken          = "IMGPKG_TOKEN"
	envAnon           = "IMGPKG_ANON"
)

// Source descriptions returned by [Client.CredentialSource] for sources
// that do not depend on the registry.
const (
	SourceAnonymous = "anonymous"
)

// envFields are the recognised IMGPKG_REGISTRY_<FIELD>[_<N>] fields.
var envFields = []string{"HOSTNAME", "USERNAME", "PASSWORD", "IDENTITY_TOKEN", "REGISTRY_TOKEN"}

// envCredential is one IMGPKG_REGISTRY_HOSTNAME[_N] group.
type envCredential struct {
	name  string // the HOSTNAME variable, e.g. IMGPKG_REGISTRY_HOSTNAME_1
	value string // the HOSTNAME value as given

	labels []string // host name labels, lower case, may hold glob patterns
	port   string
	path   string // repository path prefix, no leading or trailing "/"
	glob   bool

	username, password, identityToken, registryToken string
}

// credential turns the group into an oras-go credential: a registry token is
// sent as the bearer token, an identity token is exchanged for one.
func (e *envCredential) credential() auth.Credential {
	return auth.Credential{
		Username:     e.username,
		Password:     e.password,
		RefreshToken: e.identityToken,
		AccessToken:  e.registryToken,
	}
}

// EnvCredentials reads the environment forms of the credential flags:
// IMGPKG_USERNAME, IMGPKG_PASSWORD, IMGPKG_TOKEN and IMGPKG_ANON (true when
// it parses as a true boolean, e.g. "true" or "1"). getenv nil means
// os.Getenv. The command layer uses them where a flag was not given.
func EnvCredentials(getenv func(string) string) (username, password, token string, anon bool) {
	if getenv == nil {
		getenv = os.Getenv
	}
	anon, _ = strconv.ParseBool(getenv(envAnon))
	return getenv(envUsername), getenv(envPassword), getenv(envToken), anon
}

// parseEnvCredentials collects the IMGPKG_REGISTRY_* groups from environ.
// Like imgpkg, an unknown IMGPKG_REGISTRY_* variable is an error (it is
// usually a typo), except IMGPKG_REGISTRY_AZURE_CR_CONFIG. Groups without a
// HOSTNAME are ignored. The result is sorted most specific first.
func parseEnvCredentials(environ []string) ([]envCredential, error) {
	groups := map[string]*envCredential{}
	for _, kv := range environ {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, envRegistryPrefix) || key == "IMGPKG_REGISTRY_AZURE_CR_CONFIG" {
			continue
		}
		field, suffix, known := splitEnvKey(strings.TrimPrefix(key, envRegistryPrefix))
		if !known {
			return nil, fmt.Errorf("environment variable %s: %w: unknown variable (expected IMGPKG_REGISTRY_{HOSTNAME,USERNAME,PASSWORD,IDENTITY_TOKEN,REGISTRY_TOKEN}[_N])", key, ErrInvalidEnv)
		}
		g := groups[suffix]
		if g == nil {
			g = &envCredential{}
			groups[suffix] = g
		}
		switch field {
		case "HOSTNAME":
			g.name, g.value = key, val
			if err := g.parseHostname(val); err != nil {
				return nil, fmt.Errorf("environment variable %s=%q: %w: %v", key, val, ErrInvalidEnv, err)
			}
		case "USERNAME":
			g.username = val
		case "PASSWORD":
			g.password = val
		case "IDENTITY_TOKEN":
			g.identityToken = val
		case "REGISTRY_TOKEN":
			g.registryToken = val
		}
	}
	out := make([]envCredential, 0, len(groups))
	for _, g := range groups {
		if g.name != "" {
			out = append(out, *g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].moreSpecific(&out[j]) })
	return out, nil
}

// splitEnvKey splits "USERNAME_1" into ("USERNAME", "1") and "USERNAME" into
// ("USERNAME", ""). The suffix may itself contain "_".
func splitEnvKey(rest string) (field, suffix string, ok bool) {
	for _, f := range envFields {
		if rest == f {
			return f, "", true
		}
		if s, found := strings.CutPrefix(rest, f+"_"); found && s != "" {
			return f, "_" + s, true
		}
	}
	return "", "", false
}

// parseHostname reads an IMGPKG_REGISTRY_HOSTNAME value: a host with an
// optional port and repository path ("reg.io:5000/team"), optionally with
// an http(s):// scheme and a /v1/ or /v2/ API prefix (both ignored, as
// imgpkg does). Host labels may be glob patterns ("*.reg.io"). The Docker
// Hub names (docker.io, index.docker.io, registry-1.docker.io) are one host.
func (e *envCredential) parseHostname(val string) error {
	s := strings.TrimSpace(val)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	if s == "" {
		return errors.New("empty host name")
	}
	u, err := url.Parse("https://" + s)
	if err != nil {
		return fmt.Errorf("not a host name (e.g. gcr.io, reg.io:5000/team): %w", err)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("not a host name (e.g. gcr.io, reg.io:5000/team)")
	}
	host, port := u.Host, ""
	if h, p, err := net.SplitHostPort(u.Host); err == nil {
		host, port = h, p
	}
	host = strings.ToLower(host)
	if dockerHubAliases[host] {
		host = dockerHub
	}
	for _, label := range strings.Split(host, ".") {
		if _, err := path.Match(label, ""); err != nil {
			return fmt.Errorf("bad glob pattern in host name: %w", err)
		}
	}
	p := u.Path
	for _, api := range []string{"/v1", "/v2"} {
		if p == api || strings.HasPrefix(p, api+"/") {
			p = strings.TrimPrefix(p, api)
			break
		}
	}
	e.labels = strings.Split(host, ".")
	e.port = port
	e.path = strings.Trim(p, "/")
	e.glob = strings.ContainsAny(host, "*?[")
	return nil
}

// matches reports whether the group applies to repository repo on host
// (host[:port]). Host labels are matched one by one (so "*.reg.io" matches
// "a.reg.io" but not "a.b.reg.io"), the port must be the same, and the path
// must be the repository or one of its parent namespaces ("team" matches
// "team/app" but not "teamx/app").
func (e *envCredential) matches(host, repo string) bool {
	h, port := host, ""
	if sh, sp, err := net.SplitHostPort(host); err == nil {
		h, port = sh, sp
	}
	h = strings.ToLower(h)
	if dockerHubAliases[h] {
		h = dockerHub
	}
	if port != e.port {
		return false
	}
	labels := strings.Split(h, ".")
	if len(labels) != len(e.labels) {
		return false
	}
	for i, pattern := range e.labels {
		if ok, _ := path.Match(pattern, labels[i]); !ok {
			return false
		}
	}
	return e.path == "" || repo == e.path || strings.HasPrefix(repo, e.path+"/")
}

// moreSpecific orders groups for "most specific wins": a longer repository
// path first, then an exact host before a glob, then fewer glob characters,
// then by variable name so the order is stable.
func (e *envCredential) moreSpecific(o *envCredential) bool {
	if a, b := pathDepth(e.path), pathDepth(o.path); a != b {
		return a > b
	}
	if e.glob != o.glob {
		return !e.glob
	}
	if a, b := globChars(e.labels), globChars(o.labels); a != b {
		return a < b
	}
	return e.name < o.name
}

func pathDepth(p string) int {
	if p == "" {
		return 0
	}
	return strings.Count(p, "/") + 1
}

func globChars(labels []string) int {
	n := 0
	for _, l := range labels {
		n += strings.Count(l, "*") + strings.Count(l, "?") + strings.Count(l, "[")
	}
	return n
}

// staticCredential is the credential given by Options (flags or their
// environment forms); it applies to every registry.
type staticCredential struct {
	source string
	cred   auth.Credential
}

// staticFromOptions picks the Options credential the way imgpkg does:
// a username beats a token, which beats anonymous. It returns nil when the
// options give none, so the chain goes on to the Docker config.
func staticFromOptions(o Options, getenv func(string) string) *staticCredential {
	describe := func(flag, env, val string) string {
		if getenv(env) == val {
			return "$" + env
		}
		return flag + " flag"
	}
	switch {
	case o.Username != "":
		return &staticCredential{
			source: describe("--registry-username", envUsername, o.Username),
			cred:   auth.Credential{Username: o.Username, Password: o.Password},
		}
	case o.Token != "":
		return &staticCredential{
			source: describe("--registry-token", envToken, o.Token),
			cred:   auth.Credential{AccessToken: o.Token},
		}
	case o.Anon:
		return &staticCredential{source: SourceAnonymous + " (--registry-anon)"}
	}
	return nil
}

// dockerConfig is the Docker CLI configuration, loaded on first use.
type dockerConfig struct {
	path string // "" when there is no home directory

	once  sync.Once
	store credentials.Store
	err   error
	raw   dockerConfigFile
}

// dockerConfigFile holds the parts of config.json used to describe where a
// credential comes from; the credentials themselves are read by oras-go.
type dockerConfigFile struct {
	Auths       map[string]json.RawMessage `json:"auths"`
	CredsStore  string                     `json:"credsStore"`
	CredHelpers map[string]string          `json:"credHelpers"`
}

// dockerConfigPath is $DOCKER_CONFIG/config.json, else
// $HOME/.docker/config.json.
func dockerConfigPath(getenv func(string) string) string {
	if dir := getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

func (d *dockerConfig) load() (credentials.Store, error) {
	d.once.Do(func() {
		if d.path == "" {
			d.store = credentials.NewMemoryStore()
			return
		}
		store, err := credentials.NewStore(d.path, credentials.StoreOptions{})
		if err != nil {
			d.err = fmt.Errorf("docker config %s: %w", d.path, err)
			return
		}
		d.store = store
		if data, err := os.ReadFile(d.path); err == nil {
			// Already validated by NewStore; this copy is only for descriptions.
			_ = json.Unmarshal(data, &d.raw)
		}
	})
	return d.store, d.err
}

// describe says which part of the Docker config would answer for host.
func (d *dockerConfig) describe(host string) string {
	if _, err := d.load(); err != nil {
		return "docker config " + d.path + " (unreadable)"
	}
	server := credentials.ServerAddressFromHostname(host)
	if helper := d.raw.CredHelpers[server]; helper != "" {
		return fmt.Sprintf("docker credential helper docker-credential-%s (docker config %s)", helper, d.path)
	}
	if d.raw.CredsStore != "" {
		return fmt.Sprintf("docker credential store docker-credential-%s (docker config %s)", d.raw.CredsStore, d.path)
	}
	for key := range d.raw.Auths {
		if key == server || dockerAuthKeyHost(key) == server {
			return "docker config " + d.path
		}
	}
	return SourceAnonymous
}

// dockerAuthKeyHost reduces a legacy "https://host/v1/" auths key to its host,
// the way oras-go's file store matches it.
func dockerAuthKeyHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "http://"), "https://")
	host, _, _ := strings.Cut(key, "/")
	return host
}

// credentialFor walks the chain for repository repo on registry host
// (the host that receives the traffic, e.g. registry-1.docker.io) and returns
// the description of the source that answers and the oras-go credential
// function. The function answers only for host, so a credential never leaves
// the registry it was meant for.
func (c *Client) credentialFor(host, repo string) (string, auth.CredentialFunc) {
	only := func(cred auth.Credential) auth.CredentialFunc {
		return func(_ context.Context, hostport string) (auth.Credential, error) {
			if hostport != host {
				return auth.EmptyCredential, nil
			}
			return cred, nil
		}
	}
	for i := range c.env {
		if e := &c.env[i]; e.matches(host, repo) {
			return e.name, only(e.credential())
		}
	}
	if c.static != nil {
		return c.static.source, only(c.static.cred)
	}
	source := c.docker.describe(host)
	return source, func(ctx context.Context, hostport string) (auth.Credential, error) {
		if hostport != host {
			return auth.EmptyCredential, nil
		}
		store, err := c.docker.load()
		if err != nil {
			return auth.EmptyCredential, err
		}
		return credentials.Credential(store)(ctx, hostport)
	}
}

// CredentialSource describes the source that supplies credentials for
// repository repoPath on registry host, following the chain
// IMGPKG_REGISTRY_HOSTNAME[_N] (the variable's name, e.g.
// "IMGPKG_REGISTRY_HOSTNAME_1"), then the Options ("--registry-username
// flag", "$IMGPKG_TOKEN", "anonymous (--registry-anon)", ...), then the
// Docker config ("docker config /root/.docker/config.json", or the credential
// helper or store it names); "anonymous" when none has an entry. host may be
// any Docker Hub alias. Safe for concurrent use.
func (c *Client) CredentialSource(host, repoPath string) string {
	source, _ := c.credentialFor(authHost(host), repoPath)
	return source
}
