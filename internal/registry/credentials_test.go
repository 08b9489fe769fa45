package registry

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// writeDockerConfig writes config.json into a new directory and returns the directory.
func writeDockerConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func basicAuthEntry(user, pass string) string {
	return `{"auth":"` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}`
}

func TestParseEnvCredentialsErrors(t *testing.T) {
	tests := []struct {
		name, env, wantInMsg string
	}{
		{"unknown variable", "IMGPKG_REGISTRY_USER=x", "IMGPKG_REGISTRY_USER"},
		{"unknown suffixed variable", "IMGPKG_REGISTRY_PASS_1=x", "IMGPKG_REGISTRY_PASS_1"},
		{"empty hostname", "IMGPKG_REGISTRY_HOSTNAME_2=", "IMGPKG_REGISTRY_HOSTNAME_2"},
		{"bad glob", "IMGPKG_REGISTRY_HOSTNAME=[.reg.io", "IMGPKG_REGISTRY_HOSTNAME"},
		{"query in hostname", "IMGPKG_REGISTRY_HOSTNAME_A=reg.io/x?y=1", "IMGPKG_REGISTRY_HOSTNAME_A"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseEnvCredentials([]string{tt.env})
			if !errors.Is(err, ErrInvalidEnv) {
				t.Fatalf("err = %v, want ErrInvalidEnv", err)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not name %s", err, tt.wantInMsg)
			}
		})
	}
	// Ignored: other prefixes, imgpkg's Azure variable, groups without a hostname.
	got, err := parseEnvCredentials([]string{
		"IMGPKG_USERNAME=u", "IMGPKG_REGISTRY_AZURE_CR_CONFIG=/x", "IMGPKG_REGISTRY_USERNAME_9=lonely", "PATH=/bin",
	})
	if err != nil || len(got) != 0 {
		t.Errorf("parseEnvCredentials = %v, %v; want no groups and no error", got, err)
	}
}

func TestEnvCredentialMatching(t *testing.T) {
	env := []string{
		"IMGPKG_REGISTRY_HOSTNAME=reg.io",
		"IMGPKG_REGISTRY_USERNAME=root",
		"IMGPKG_REGISTRY_HOSTNAME_1=reg.io/team",
		"IMGPKG_REGISTRY_HOSTNAME_2=https://reg.io/v2/team/sub/",
		"IMGPKG_REGISTRY_HOSTNAME_GLOB=*.example.com",
		"IMGPKG_REGISTRY_HOSTNAME_EXACT=a.example.com",
		"IMGPKG_REGISTRY_HOSTNAME_PORT=reg.io:5000",
		"IMGPKG_REGISTRY_HOSTNAME_HUB=https://index.docker.io/v1/",
		"IMGPKG_REGISTRY_HOSTNAME_LOCAL=127.0.0.1:5001/tiny",
	}
	creds, err := parseEnvCredentials(env)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{env: creds, docker: &dockerConfig{}}
	tests := []struct {
		host, repo, want string
	}{
		{"reg.io", "app", "IMGPKG_REGISTRY_HOSTNAME"},
		{"reg.io", "team/app", "IMGPKG_REGISTRY_HOSTNAME_1"},
		{"reg.io", "team", "IMGPKG_REGISTRY_HOSTNAME_1"},
		{"reg.io", "teamx/app", "IMGPKG_REGISTRY_HOSTNAME"},
		{"reg.io", "team/sub/app", "IMGPKG_REGISTRY_HOSTNAME_2"},
		{"REG.IO", "team/app", "IMGPKG_REGISTRY_HOSTNAME_1"},
		{"reg.io:5000", "team/app", "IMGPKG_REGISTRY_HOSTNAME_PORT"},
		{"reg.io:5001", "app", SourceAnonymous},
		{"a.example.com", "app", "IMGPKG_REGISTRY_HOSTNAME_EXACT"},
		{"b.example.com", "app", "IMGPKG_REGISTRY_HOSTNAME_GLOB"},
		{"x.b.example.com", "app", SourceAnonymous},
		{"docker.io", "library/nginx", "IMGPKG_REGISTRY_HOSTNAME_HUB"},
		{"registry-1.docker.io", "user/app", "IMGPKG_REGISTRY_HOSTNAME_HUB"},
		{"127.0.0.1:5001", "tiny/app", "IMGPKG_REGISTRY_HOSTNAME_LOCAL"},
		{"127.0.0.1:5001", "other/app", SourceAnonymous},
		{"other.io", "app", SourceAnonymous},
	}
	for _, tt := range tests {
		if got := c.CredentialSource(tt.host, tt.repo); got != tt.want {
			t.Errorf("CredentialSource(%q, %q) = %q, want %q", tt.host, tt.repo, got, tt.want)
		}
	}
}

func TestCredentialSourceChain(t *testing.T) {
	dockerDir := writeDockerConfig(t, `{
		"auths": {
			"reg.io": `+basicAuthEntry("duser", "dpass")+`,
			"https://index.docker.io/v1/": `+basicAuthEntry("hub", "hubpass")+`
		},
		"credHelpers": {"helped.io": "ferrytest"}
	}`)
	dockerCfg := filepath.Join(dockerDir, "config.json")
	storeDir := writeDockerConfig(t, `{"credsStore": "ferrystore"}`)
	env := map[string]string{
		"DOCKER_CONFIG":              dockerDir,
		"IMGPKG_REGISTRY_HOSTNAME_1": "reg.io/team",
	}
	tests := []struct {
		name       string
		opts       Options
		env        map[string]string
		host, repo string
		want       string
	}{
		{"env beats flags", Options{Username: "u", Password: "p"}, env, "reg.io", "team/app", "IMGPKG_REGISTRY_HOSTNAME_1"},
		{"flags beat docker config", Options{Username: "u", Password: "p"}, env, "reg.io", "other/app", "--registry-username flag"},
		{"username from env form", Options{Username: "u"}, map[string]string{"IMGPKG_USERNAME": "u"}, "reg.io", "app", "$IMGPKG_USERNAME"},
		{"token flag", Options{Token: "t"}, env, "reg.io", "other/app", "--registry-token flag"},
		{"username beats token", Options{Username: "u", Token: "t"}, env, "reg.io", "other/app", "--registry-username flag"},
		{"anon beats docker config", Options{Anon: true}, env, "reg.io", "other/app", "anonymous (--registry-anon)"},
		{"docker config auths", Options{}, env, "reg.io", "other/app", "docker config " + dockerCfg},
		{"docker hub key", Options{}, env, "docker.io", "library/nginx", "docker config " + dockerCfg},
		{"docker credential helper", Options{}, env, "helped.io", "app", "docker credential helper docker-credential-ferrytest (docker config " + dockerCfg + ")"},
		{"docker credential store", Options{}, map[string]string{"DOCKER_CONFIG": storeDir}, "any.io", "app",
			"docker credential store docker-credential-ferrystore (docker config " + filepath.Join(storeDir, "config.json") + ")"},
		{"nothing", Options{}, env, "none.io", "app", "anonymous"},
		{"no docker config file", Options{}, nil, "reg.io", "app", "anonymous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, tt.opts, tt.env)
			if got := c.CredentialSource(tt.host, tt.repo); got != tt.want {
				t.Errorf("CredentialSource(%q, %q) = %q, want %q", tt.host, tt.repo, got, tt.want)
			}
		})
	}
}

func TestEnvCredentials(t *testing.T) {
	vars := map[string]string{"IMGPKG_USERNAME": "u", "IMGPKG_PASSWORD": "p", "IMGPKG_TOKEN": "t", "IMGPKG_ANON": "true"}
	u, p, tok, anon := EnvCredentials(func(k string) string { return vars[k] })
	if u != "u" || p != "p" || tok != "t" || !anon {
		t.Errorf("EnvCredentials = %q %q %q %v", u, p, tok, anon)
	}
	if _, _, _, anon := EnvCredentials(func(string) string { return "" }); anon {
		t.Error("anon without IMGPKG_ANON")
	}
}

// basicRegistry is a fake registry that asks for basic credentials and
// accepts, per repository, only the given user (password "<user>-pass").
func basicRegistry(t *testing.T, userFor map[string]string) *fakeRegistry {
	f := newFakeRegistry(t, false)
	f.challenge = `Basic realm="fake"`
	f.authorize = func(r *http.Request) bool {
		user, pass, ok := r.BasicAuth()
		if !ok {
			return false
		}
		repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
		want, known := userFor[repo]
		return known && user == want && pass == want+"-pass"
	}
	return f
}

func TestBasicCredentialsSent(t *testing.T) {
	f := basicRegistry(t, map[string]string{"team/app": "teamuser", "other/app": "hostuser"})
	host := f.host()
	c := newTestClient(t, Options{Username: "flaguser", Password: "flaguser-pass"}, map[string]string{
		"IMGPKG_REGISTRY_HOSTNAME_1": host,
		"IMGPKG_REGISTRY_USERNAME_1": "hostuser",
		"IMGPKG_REGISTRY_PASSWORD_1": "hostuser-pass",
		"IMGPKG_REGISTRY_HOSTNAME_2": host + "/team",
		"IMGPKG_REGISTRY_USERNAME_2": "teamuser",
		"IMGPKG_REGISTRY_PASSWORD_2": "teamuser-pass",
	})
	for _, repo := range []string{"team/app", "other/app"} {
		tags, err := listTags(t, c, host+"/"+repo)
		if err != nil || len(tags) != 1 || tags[0] != "v1" {
			t.Fatalf("tags of %s = %v, %v", repo, tags, err)
		}
	}
	// The team group's cached basic token must never be sent for other/app.
	for _, r := range f.requests("other/app/tags/list") {
		if r.User == "teamuser" {
			t.Errorf("other/app request carried the team credentials")
		}
	}
	if got := f.requests("team/app/tags/list"); got[len(got)-1].User != "teamuser" {
		t.Errorf("team/app last request user = %q", got[len(got)-1].User)
	}
}

func TestBasicCredentialsFromFlagsAndDockerConfig(t *testing.T) {
	f := basicRegistry(t, map[string]string{"app": "flaguser", "dock": "dockeruser"})
	host := f.host()
	dockerDir := writeDockerConfig(t, `{"auths": {"`+host+`": `+basicAuthEntry("dockeruser", "dockeruser-pass")+`}}`)
	env := map[string]string{"DOCKER_CONFIG": dockerDir}

	// Flags win over the Docker config.
	withFlags := newTestClient(t, Options{Username: "flaguser", Password: "flaguser-pass"}, env)
	if _, err := listTags(t, withFlags, host+"/app"); err != nil {
		t.Errorf("with flags: %v", err)
	}
	if _, err := listTags(t, withFlags, host+"/dock"); err == nil {
		t.Errorf("with flags: docker config credentials were used for %s/dock", host)
	}
	// Without flags, the Docker config answers.
	plain := newTestClient(t, Options{}, env)
	if _, err := listTags(t, plain, host+"/dock"); err != nil {
		t.Errorf("docker config: %v", err)
	}
	// Anonymous: no credentials are sent at all, though the Docker config has some.
	anon := newTestClient(t, Options{Anon: true}, env)
	before := len(f.requests("dock/tags/list"))
	_, err := listTags(t, anon, host+"/dock")
	if !errors.Is(err, auth.ErrBasicCredentialNotFound) {
		t.Fatalf("anonymous access: err = %v, want auth.ErrBasicCredentialNotFound", err)
	}
	for _, r := range f.requests("dock/tags/list")[before:] {
		if r.Authorization != "" {
			t.Errorf("anonymous request carried Authorization %q", r.Authorization)
		}
	}
}

func TestDockerCredentialHelper(t *testing.T) {
	// A fake helper on PATH, named in credHelpers for the registry.
	binDir := t.TempDir()
	script := "#!/bin/sh\nserver=$(cat)\n" +
		"if [ \"$1\" = get ]; then printf '{\"ServerURL\":\"%s\",\"Username\":\"helperuser\",\"Secret\":\"helperuser-pass\"}' \"$server\"; exit 0; fi\n" +
		"exit 1\n"
	if err := os.WriteFile(filepath.Join(binDir, "docker-credential-ferrytest"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))

	f := basicRegistry(t, map[string]string{"app": "helperuser"})
	host := f.host()
	dockerDir := writeDockerConfig(t, `{"credHelpers": {"`+host+`": "ferrytest"}}`)
	c := newTestClient(t, Options{}, map[string]string{"DOCKER_CONFIG": dockerDir})
	if _, err := listTags(t, c, host+"/app"); err != nil {
		t.Fatalf("listTags: %v", err)
	}
	got := f.requests("app/tags/list")
	if last := got[len(got)-1]; last.User != "helperuser" {
		t.Errorf("last request user = %q, want helperuser", last.User)
	}
	wantSource := "docker credential helper docker-credential-ferrytest (docker config " + filepath.Join(dockerDir, "config.json") + ")"
	if src := c.CredentialSource(host, "app"); src != wantSource {
		t.Errorf("CredentialSource = %q, want %q", src, wantSource)
	}
}

func TestInvalidDockerConfig(t *testing.T) {
	f := basicRegistry(t, map[string]string{"app": "x"})
	dockerDir := writeDockerConfig(t, `{not json`)
	c := newTestClient(t, Options{}, map[string]string{"DOCKER_CONFIG": dockerDir})
	_, err := listTags(t, c, f.host()+"/app")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dockerDir, "config.json")) {
		t.Errorf("err = %v, want an error naming the docker config file", err)
	}
}
