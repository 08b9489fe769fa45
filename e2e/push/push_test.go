// Package push_test runs `ferry push` against registries started in process.
package push_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The digests imgpkg 0.43 gives the vector directories (see the vector's README).
const (
	vectorBundleDigest = "sha256:0202fecf9e1d820d721d3af134fb86be794681f808f85ba9242ca285b55b5f76"
	vectorImageDigest  = "sha256:be0fcc8efc54c5ba0e03143228abed2fed5c70a16ed5af627858d2008b8e3ea4"
)

func vectorDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(harness.SourceRoot(t), "bundle", "testdata", "imgpkg-push-vector")
	if _, err := os.Stat(filepath.Join(dir, "bundle", ".imgpkg", "images.yml")); err != nil {
		t.Fatalf("push vector missing: %v", err)
	}
	return dir
}

// bundleLock mirrors imgpkg's BundleLock; decoding rejects unknown fields.
type bundleLock struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Bundle     struct {
		Image string `yaml:"image"`
		Tag   string `yaml:"tag"`
	} `yaml:"bundle"`
}

func TestPushThenFetch(t *testing.T) {
	ctx := t.Context()
	vector := vectorDir(t)
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	fetcher := reg.Builder(0)

	for _, tc := range []struct {
		name, flag, dir, repo, tag string
		wantTag                    string
		digest                     string
		vectorFile                 string
	}{
		{name: "bundle", flag: "-b", dir: "bundle", repo: "vector/bundle", tag: ":v1", wantTag: "v1", digest: vectorBundleDigest, vectorFile: "vector-bundle"},
		{name: "image", flag: "-i", dir: "image", repo: "vector/image", tag: ":v1", wantTag: "v1", digest: vectorImageDigest, vectorFile: "vector-image"},
		{name: "bundle without tag", flag: "-b", dir: "bundle", repo: "vector/untagged", wantTag: "latest", digest: vectorBundleDigest, vectorFile: "vector-bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pushed := reg.Ref(tc.repo) + "@" + tc.digest
			args := []string{"push", tc.flag, reg.Ref(tc.repo) + tc.tag, "-f", filepath.Join(vector, tc.dir)}
			lockPath := filepath.Join(t.TempDir(), "bundle.lock.yml")
			if tc.flag == "-b" {
				args = append(args, "--lock-output", lockPath)
			}
			res := harness.RunOK(t, nil, args...)
			if !strings.Contains("\n"+res.Stdout, "\n"+pushed+"\n") {
				t.Errorf("stdout does not name %s on a line of its own:\n%s", pushed, res.Stdout)
			}

			// The registry serves the tag and the digest, with imgpkg's exact bytes.
			desc, raw := fetcher.FetchManifest(ctx, t, reg.Ref(tc.repo), tc.wantTag)
			if desc.Digest.String() != tc.digest {
				t.Errorf("tag %s -> %s, want %s", tc.wantTag, desc.Digest, tc.digest)
			}
			if desc.MediaType != harness.MediaTypeDockerManifest {
				t.Errorf("media type %s, want %s", desc.MediaType, harness.MediaTypeDockerManifest)
			}
			if want := harness.ReadFile(t, filepath.Join(vector, tc.vectorFile+".manifest.json")); !bytes.Equal(raw, want) {
				t.Errorf("manifest bytes:\n%s\nwant:\n%s", raw, want)
			}
			byDigest, _ := fetcher.FetchManifest(ctx, t, reg.Ref(tc.repo), tc.digest)
			if byDigest.Digest.String() != tc.digest {
				t.Errorf("by digest: %s", byDigest.Digest)
			}

			if tc.flag != "-b" {
				return
			}
			lockBytes := harness.ReadFile(t, lockPath)
			if !bytes.HasPrefix(lockBytes, []byte("---\n")) {
				t.Errorf("lock file does not start with ---:\n%s", lockBytes)
			}
			var lock bundleLock
			dec := yaml.NewDecoder(bytes.NewReader(lockBytes))
			dec.KnownFields(true)
			if err := dec.Decode(&lock); err != nil {
				t.Fatalf("lock file: %v\n%s", err, lockBytes)
			}
			if lock.APIVersion != "imgpkg.carvel.dev/v1alpha1" || lock.Kind != "BundleLock" ||
				lock.Bundle.Image != pushed || lock.Bundle.Tag != tc.wantTag {
				t.Errorf("lock file: %+v, want image %s tag %s", lock, pushed, tc.wantTag)
			}
		})
	}
}

func TestPushAuth(t *testing.T) {
	ctx := t.Context()
	vector := vectorDir(t)
	const user, password = "ferry", "pa55-w0rd"
	reg := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: map[string]string{user: password}})
	fetcher := reg.Builder(0)

	dockerConfig := harness.WriteDockerConfig(t, map[string]harness.Login{reg.Host: {Username: user, Password: password}})
	wrongDockerConfig := harness.WriteDockerConfig(t, map[string]harness.Login{reg.Host: {Username: user, Password: "wrong"}})
	otherHostConfig := harness.WriteDockerConfig(t, map[string]harness.Login{"127.0.0.2:5000": {Username: user, Password: password}})

	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
		ok    bool
	}{
		{name: "docker config", env: []string{"DOCKER_CONFIG=" + dockerConfig}, ok: true},
		{name: "IMGPKG_REGISTRY_HOSTNAME", env: []string{
			"IMGPKG_REGISTRY_HOSTNAME=" + reg.Host, "IMGPKG_REGISTRY_USERNAME=" + user, "IMGPKG_REGISTRY_PASSWORD=" + password,
		}, ok: true},
		{name: "IMGPKG_REGISTRY_HOSTNAME beats docker config", env: []string{
			"DOCKER_CONFIG=" + wrongDockerConfig,
			"IMGPKG_REGISTRY_HOSTNAME_1=" + reg.Host, "IMGPKG_REGISTRY_USERNAME_1=" + user, "IMGPKG_REGISTRY_PASSWORD_1=" + password,
		}, ok: true},
		{name: "flags", flags: []string{"--registry-username", user, "--registry-password", password}, ok: true},
		{name: "IMGPKG_USERNAME", env: []string{"IMGPKG_USERNAME=" + user, "IMGPKG_PASSWORD=" + password}, ok: true},
		{name: "no credentials"},
		{name: "credentials for another host", env: []string{"DOCKER_CONFIG=" + otherHostConfig}},
		{name: "wrong password", env: []string{"DOCKER_CONFIG=" + wrongDockerConfig}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "auth/" + strings.NewReplacer(" ", "-", "_", "-").Replace(strings.ToLower(tc.name))
			args := append([]string{"push", "-i", reg.Ref(repo) + ":v1", "-f", filepath.Join(vector, "image")}, tc.flags...)
			res := harness.Run(t, tc.env, args...)
			if tc.ok {
				if res.ExitCode != 0 {
					t.Fatalf("push: %s", res)
				}
				desc, _ := fetcher.FetchManifest(ctx, t, reg.Ref(repo), "v1")
				if desc.Digest.String() != vectorImageDigest {
					t.Errorf("pushed %s, want %s", desc.Digest, vectorImageDigest)
				}
				return
			}
			if res.ExitCode != 1 {
				t.Fatalf("push without valid credentials: %s; want exit 1", res)
			}
			line := harness.ErrorLine(t, res)
			if !strings.Contains(line, reg.Host) {
				t.Errorf("error does not name the registry %s: %s", reg.Host, line)
			}
			if !regexp.MustCompile(`(?i)401|unauthori[sz]ed|credential`).MatchString(line) {
				t.Errorf("error does not say it is about credentials: %s", line)
			}
			if strings.Contains(res.Stdout, "@sha256:") {
				t.Errorf("stdout names a pushed digest after a failure: %s", res.Stdout)
			}
		})
	}
}

func TestPushTLS(t *testing.T) {
	ctx := t.Context()
	vector := vectorDir(t)
	reg := harness.StartRegistry(t, harness.RegistryOptions{TLS: true})
	args := []string{"push", "-b", reg.Ref("tls/bundle") + ":v1", "-f", filepath.Join(vector, "bundle")}

	res := harness.Run(t, nil, args...)
	if res.ExitCode != 1 {
		t.Fatalf("push to a registry signed by an unknown CA: %s; want exit 1", res)
	}
	if line := harness.ErrorLine(t, res); !regexp.MustCompile(`(?i)certificate|x509|tls`).MatchString(line) {
		t.Errorf("error does not mention the certificate: %s", line)
	}

	harness.RunOK(t, nil, append(args, "--registry-ca-cert-path", reg.CAPath)...)
	desc, _ := reg.Builder(0).FetchManifest(ctx, t, reg.Ref("tls/bundle"), "v1")
	if desc.Digest.String() != vectorBundleDigest {
		t.Errorf("pushed %s, want %s", desc.Digest, vectorBundleDigest)
	}
}
