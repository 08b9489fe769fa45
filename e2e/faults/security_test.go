package faults_test

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// Secrets used by the security tests; none may ever be printed.
const (
	secretUser     = "ferry-user"
	secretPassword = "pw-Zq8-never-printed"
	secretToken    = "tok-Yx7-never-printed"
)

// checkNoSecrets fails the test if any secret, or the base64 basic string
// of user and password, appears in the run's output.
func checkNoSecrets(t *testing.T, res harness.Result, secrets ...string) {
	t.Helper()
	out := res.Stdout + res.Stderr
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("output contains the secret %q:\n%s", s, res)
		}
	}
}

// checkDebugLog fails the test for each of want that the run's stderr (its
// --debug log) lacks.
func checkDebugLog(t *testing.T, res harness.Result, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(res.Stderr, w) {
			t.Errorf("debug log lacks %q", w)
		}
	}
}

// storeEnv returns FERRY_STORE naming a store in a new temporary
// directory, followed by env.
func storeEnv(t *testing.T, env ...string) []string {
	t.Helper()
	return append([]string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}, env...)
}

func basicString(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// --debug logs the HTTP exchanges with registries behind htpasswd basic
// auth, from every credential source, and never prints the password or the
// basic string; a copy into such a registry completes.
func TestDebugLogHidesBasicCredentials(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	users := map[string]string{secretUser: secretPassword}
	src := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: users})
	dst := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: users})
	img := src.Builder(31).Image(ctx, t, src.Ref("team/app"), harness.ImageSpec{Layers: []int{2000}, Tag: "v1"})
	secrets := []string{secretPassword, basicString(secretUser, secretPassword)}

	dockerConfig := harness.WriteDockerConfig(t, map[string]harness.Login{
		src.Host: {Username: secretUser, Password: secretPassword},
		dst.Host: {Username: secretUser, Password: secretPassword},
	})
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flags", nil, []string{"--registry-username", secretUser, "--registry-password", secretPassword}},
		{"IMGPKG_USERNAME", []string{"IMGPKG_USERNAME=" + secretUser, "IMGPKG_PASSWORD=" + secretPassword}, nil},
		{"IMGPKG_REGISTRY_HOSTNAME", []string{
			"IMGPKG_REGISTRY_HOSTNAME_0=" + src.Host, "IMGPKG_REGISTRY_USERNAME_0=" + secretUser, "IMGPKG_REGISTRY_PASSWORD_0=" + secretPassword,
			"IMGPKG_REGISTRY_HOSTNAME_1=" + dst.Host, "IMGPKG_REGISTRY_USERNAME_1=" + secretUser, "IMGPKG_REGISTRY_PASSWORD_1=" + secretPassword,
		}, nil},
		{"docker config", []string{"DOCKER_CONFIG=" + dockerConfig}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := storeEnv(t, c.env...)
			args := append([]string{"--debug", "copy", "-i", src.Ref("team/app") + "@" + img.Digest.String(),
				"--to-repo", dst.Ref("apps/" + strings.ReplaceAll(strings.ToLower(c.name), " ", "-"))}, c.args...)
			res := harness.RunOK(t, env, args...)
			checkNoSecrets(t, res, secrets...)
			checkDebugLog(t, res, "debug | ", "401 Unauthorized", "Authorization: Basic [redacted]", `Www-Authenticate: Basic realm="ferry-e2e"`, "--> PUT ")
			if strings.Contains(res.Stdout, "debug | ") {
				t.Errorf("debug log on stdout:\n%s", res.Stdout)
			}
		})
	}
}

// tokenAuth puts a bearer-token scheme in front of a registry proxy: the
// proxy answers 401 with a Bearer challenge unless the request carries
// the token, which a token server on 127.0.0.1 hands out (as "token" and
// "access_token", with a cookie) for the user's basic credentials.
type tokenAuth struct {
	server *httptest.Server
}

func newTokenAuth(t *testing.T, p *harness.Proxy) *tokenAuth {
	t.Helper()
	ta := &tokenAuth{}
	ta.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != secretUser || pw != secretPassword {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: secretToken})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token": secretToken, "access_token": secretToken, "expires_in": 300})
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta.server.Listener = ln
	ta.server.Start()
	t.Cleanup(ta.server.Close)
	challenge := `Bearer realm="` + ta.server.URL + `/token",service="ferry-e2e",scope="repository:team/app:pull"`
	p.SetFault(func(r *http.Request) harness.Fault {
		if r.Header.Get("Authorization") == "Bearer "+secretToken {
			return harness.Fault{}
		}
		return harness.Fault{Kind: harness.FaultStatus, Status: http.StatusUnauthorized,
			Header: http.Header{"Www-Authenticate": {challenge}, "Content-Type": {"application/json"}},
			Body:   []byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)}
	})
	return ta
}

// A registry that hands out bearer tokens: neither the password, nor the
// basic string sent to the token server, nor the token appears in the
// output of --debug runs, whether the token is obtained with a password or
// given with --registry-token.
func TestDebugLogHidesBearerTokens(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	reg.Builder(32).Image(ctx, t, reg.Ref("team/app"), harness.ImageSpec{Layers: []int{2000}, Tag: "v1"})
	newTokenAuth(t, p)
	secrets := []string{secretPassword, basicString(secretUser, secretPassword), secretToken}

	for _, c := range []struct {
		name string
		env  []string
	}{
		{"password for a token", []string{"IMGPKG_REGISTRY_HOSTNAME_0=" + p.Host, "IMGPKG_REGISTRY_USERNAME_0=" + secretUser, "IMGPKG_REGISTRY_PASSWORD_0=" + secretPassword}},
		{"registry token", []string{"IMGPKG_REGISTRY_HOSTNAME_0=" + p.Host, "IMGPKG_REGISTRY_REGISTRY_TOKEN_0=" + secretToken}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := storeEnv(t, c.env...)
			res := harness.RunOK(t, env, "--debug", "copy", "-i", p.Ref("team/app")+":v1", "--to-repo", dst.Ref("apps/app"))
			checkNoSecrets(t, res, secrets...)
			checkDebugLog(t, res, "Authorization: Bearer [redacted]", "Www-Authenticate: Bearer realm=")
			if c.name == "password for a token" {
				checkDebugLog(t, res, "/token?scope=repository%3Ateam%2Fapp%3Apull&service=ferry-e2e", "Authorization: Basic [redacted]", "Set-Cookie: [redacted]")
			}
		})
	}
}

// A 401 or 403 says which registry refused and which credential source was
// tried, for the source and for the destination of a copy, and for pull.
func TestAuthErrorsNameRegistryAndSource(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	users := map[string]string{secretUser: secretPassword}
	locked := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: users})
	open := harness.StartRegistry(t, harness.RegistryOptions{})
	img := locked.Builder(33).Image(ctx, t, locked.Ref("team/app"), harness.ImageSpec{Layers: []int{2000}, Tag: "v1"})
	openImg := open.Builder(34).Image(ctx, t, open.Ref("team/app"), harness.ImageSpec{Layers: []int{2000}, Tag: "v1"})
	wrong := []string{"IMGPKG_REGISTRY_HOSTNAME_0=" + locked.Host, "IMGPKG_REGISTRY_USERNAME_0=" + secretUser, "IMGPKG_REGISTRY_PASSWORD_0=wrong-" + secretPassword}
	out := t.TempDir()
	pushDir := filepath.Join(out, "push")
	if err := os.MkdirAll(pushDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pushDir, "file.txt"), []byte("content\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"copy, source refuses", wrong,
			[]string{"copy", "-i", locked.Ref("team/app") + "@" + img.Digest.String(), "--to-repo", open.Ref("apps/a")},
			[]string{locked.Host, "IMGPKG_REGISTRY_HOSTNAME_0", "401"}},
		{"copy, destination refuses", wrong,
			[]string{"copy", "-i", open.Ref("team/app") + "@" + openImg.Digest.String(), "--to-repo", locked.Ref("apps/b")},
			[]string{locked.Host, "IMGPKG_REGISTRY_HOSTNAME_0", "401"}},
		{"copy, no credentials", nil,
			[]string{"copy", "-i", locked.Ref("team/app") + "@" + img.Digest.String(), "--to-tar", filepath.Join(out, "a.tar")},
			[]string{locked.Host, "credentials"}},
		{"push, IMGPKG_USERNAME", []string{"IMGPKG_USERNAME=" + secretUser, "IMGPKG_PASSWORD=wrong"},
			[]string{"push", "-i", locked.Ref("team/pushed") + ":v1", "-f", pushDir},
			[]string{locked.Host, "IMGPKG_USERNAME", "401"}},
		{"pull, flags", nil,
			[]string{"pull", "-i", locked.Ref("team/app") + ":v1", "-o", filepath.Join(out, "pulled"), "--registry-username", secretUser, "--registry-password", "wrong"},
			[]string{locked.Host, "--registry-username", "401"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := storeEnv(t, c.env...)
			res := harness.Run(t, env, c.args...)
			checkFailure(t, res, c.want...)
			checkNoSecrets(t, res, secretPassword)
		})
	}
}

// TLS: verification is on by default (a registry whose certificate comes
// from an unknown CA is refused, and the error says it is the certificate);
// --registry-ca-cert-path trusts the CA; --registry-verify-certs=false
// skips verification.
func TestTLSVerification(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{TLS: true})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	img := reg.Builder(35).Image(ctx, t, reg.Ref("team/app"), harness.ImageSpec{Layers: []int{2000}, Tag: "v1"})
	src := reg.Ref("team/app") + "@" + img.Digest.String()

	res := harness.Run(t, storeEnv(t), "copy", "-i", src, "--to-repo", dst.Ref("apps/default"))
	checkFailure(t, res, reg.Host, "certificate")

	harness.RunOK(t, storeEnv(t), "copy", "-i", src, "--to-repo", dst.Ref("apps/ca"), "--registry-ca-cert-path", reg.CAPath)
	harness.RunOK(t, storeEnv(t), "copy", "-i", src, "--to-repo", dst.Ref("apps/noverify"), "--registry-verify-certs=false")
	for _, repo := range []string{"apps/ca", "apps/noverify"} {
		if desc, err := dst.Repository(t, repo).Resolve(ctx, img.Digest.String()); err != nil || desc.Digest != img.Digest {
			t.Errorf("%s: %v %v", repo, desc.Digest, err)
		}
	}
}

// The store is created private to its user (0700), at the default place
// and where FERRY_STORE says.
func TestStoreRootIsPrivate(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	explicit := filepath.Join(t.TempDir(), "a", "store")
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"XDG_CACHE_HOME=" + filepath.Join(home, "cache")}, filepath.Join(home, "cache", "ferry", "store")},
		{[]string{"FERRY_STORE=" + explicit}, explicit},
	} {
		harness.RunOK(t, c.env, "store", "du") // opens, so creates, the store
		path := strings.TrimSpace(harness.RunOK(t, c.env, "store", "path").Stdout)
		if path != c.want {
			t.Errorf("store path %q, want %q", path, c.want)
		}
		fi, err := os.Stat(c.want)
		if err != nil {
			t.Fatalf("store %s: %v", c.want, err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("store %s has mode %o, want 700", c.want, perm)
		}
	}
}
