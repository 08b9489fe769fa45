package registry

import (
	"errors"
	"strings"
	"testing"

	"oras.land/oras-go/v2/errdef"
)

const testDigest = "sha256:5c5c2da1e2b5b8b6f7f45b1a3a5c2d7b0b4d1e8c9f6a3b2c1d0e9f8a7b6c5d4e"

func TestParseReference(t *testing.T) {
	tests := []struct {
		in                          string
		registry, repository, refer string
		host                        string // Reference.Host(): where traffic goes
	}{
		{"nginx", "docker.io", "library/nginx", "", "registry-1.docker.io"},
		{"nginx:1.25", "docker.io", "library/nginx", "1.25", "registry-1.docker.io"},
		{"nginx@" + testDigest, "docker.io", "library/nginx", testDigest, "registry-1.docker.io"},
		{"user/app:v1", "docker.io", "user/app", "v1", "registry-1.docker.io"},
		{"docker.io/nginx", "docker.io", "library/nginx", "", "registry-1.docker.io"},
		{"index.docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", "registry-1.docker.io"},
		{"registry-1.docker.io/user/app", "docker.io", "user/app", "", "registry-1.docker.io"},
		{"docker.io/user/team/app", "docker.io", "user/team/app", "", "registry-1.docker.io"},
		{"localhost/app", "localhost", "app", "", "localhost"},
		{"localhost:5000/app:v1", "localhost:5000", "app", "v1", "localhost:5000"},
		{"127.0.0.1:5001/tiny/app@" + testDigest, "127.0.0.1:5001", "tiny/app", testDigest, "127.0.0.1:5001"},
		{"reg.io/team/app:v1@" + testDigest, "reg.io", "team/app", testDigest, "reg.io"},
		{"[::1]:5000/app", "[::1]:5000", "app", "", "[::1]:5000"},
		{"gcr.io/proj/img", "gcr.io", "proj/img", "", "gcr.io"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReference(tt.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tt.in, err)
			}
			if got.Registry != tt.registry || got.Repository != tt.repository || got.Reference != tt.refer {
				t.Errorf("ParseReference(%q) = {%q %q %q}, want {%q %q %q}", tt.in,
					got.Registry, got.Repository, got.Reference, tt.registry, tt.repository, tt.refer)
			}
			if h := got.Host(); h != tt.host {
				t.Errorf("Host() = %q, want %q", h, tt.host)
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	tests := []string{
		"",
		"https://reg.io/app",
		"reg.io/",
		"reg.io/App",
		"reg.io/app:bad tag",
		"reg.io/app@sha256:short",
		" nginx",
		"reg.io/app:",
	}
	c := &Client{}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			_, err := c.ParseReference(in)
			if err == nil {
				t.Fatalf("ParseReference(%q) succeeded, want error", in)
			}
			if !errors.Is(err, errdef.ErrInvalidReference) {
				t.Errorf("error %v does not wrap errdef.ErrInvalidReference", err)
			}
			if !strings.Contains(err.Error(), `"`+in+`"`) {
				t.Errorf("error %q does not name the reference %q", err, in)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{
		"localhost":            true,
		"LOCALHOST:5000":       true,
		"127.0.0.1":            true,
		"127.0.0.1:5000":       true,
		"127.1.2.3:80":         true,
		"[::1]:5000":           true,
		"::1":                  true,
		"[::ffff:127.0.0.1]":   true,
		"10.0.0.1:5000":        false,
		"reg.io":               false,
		"localhost.evil.com":   false,
		"128.0.0.1":            false,
		"[::2]:5000":           false,
		"registry-1.docker.io": false,
	}
	for host, want := range tests {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
