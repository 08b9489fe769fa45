package lockfile

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitDigestRef(t *testing.T) {
	tests := []struct {
		ref        string
		wantRepo   string
		wantDigest string
	}{
		{"reg.io/app@sha256:" + hexA, "reg.io/app", "sha256:" + hexA},
		{"index.docker.io/library/nginx@sha256:" + hexB, "index.docker.io/library/nginx", "sha256:" + hexB},
		{"127.0.0.1:5001/tiny/app@sha256:" + hexA, "127.0.0.1:5001/tiny/app", "sha256:" + hexA},
		{"localhost:5000/a/b/c@sha256:" + hexA, "localhost:5000/a/b/c", "sha256:" + hexA},
		{"reg.io/app:v1.2@sha256:" + hexA, "reg.io/app", "sha256:" + hexA},
		{"reg.io:443/app:latest@sha256:" + hexA, "reg.io:443/app", "sha256:" + hexA},
		{"[::1]:5000/app@sha256:" + hexA, "[::1]:5000/app", "sha256:" + hexA},
		{"Reg.IO/app@sha256:" + hexA, "Reg.IO/app", "sha256:" + hexA},
		{"nginx@sha256:" + hexA, "nginx", "sha256:" + hexA},
		{"reg.io/my_app__x.y-z--w@sha256:" + hexA, "reg.io/my_app__x.y-z--w", "sha256:" + hexA},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			repo, dgst, err := SplitDigestRef(tt.ref)
			if err != nil || repo != tt.wantRepo || dgst != tt.wantDigest {
				t.Fatalf("SplitDigestRef = %q, %q, %v; want %q, %q", repo, dgst, err, tt.wantRepo, tt.wantDigest)
			}
		})
	}
}

func TestSplitDigestRefErrors(t *testing.T) {
	tests := []struct {
		name    string
		ref     string
		wantMsg string
	}{
		{"empty", "", "empty image reference; lock files need digest references"},
		{"tag", "nginx:1.2", `"nginx:1.2" is a tag reference; lock files need digest references (REPO@sha256:...)`},
		{"tag with port", "reg.io:5000/app:v1", "is a tag reference"},
		{"port only is not a tag", "reg.io:5000/app", "has no digest"},
		{"no algorithm", "reg.io/app@" + hexA, "ALGORITHM:HEX"},
		{"sha512", "reg.io/app@sha512:" + hexA + hexA, `digest algorithm "sha512" is not supported`},
		{"short hex", "reg.io/app@sha256:abc", "3 hex characters, want 64"},
		{"empty hex", "reg.io/app@sha256:", "0 hex characters"},
		{"uppercase hex", "reg.io/app@sha256:" + strings.ToUpper(hexB), "lowercase hexadecimal"},
		{"non-hex", "reg.io/app@sha256:" + strings.Repeat("g", 64), "lowercase hexadecimal"},
		{"empty repo", "@sha256:" + hexA, "empty repository"},
		{"uppercase path", "reg.io/App@sha256:" + hexA, "not a valid repository name"},
		{"double slash", "reg.io//app@sha256:" + hexA, "not a valid repository name"},
		{"trailing slash", "reg.io/app/@sha256:" + hexA, "not a valid repository name"},
		{"space", "reg.io/my app@sha256:" + hexA, "not a valid repository name"},
		{"scheme", "https://reg.io/app@sha256:" + hexA, "not a valid"},
		{"empty tag", "reg.io/app:@sha256:" + hexA, "empty tag"},
		{"bad tag", "reg.io/app:.v1@sha256:" + hexA, "not a valid tag"},
		{"two digests", "reg.io/app@sha256:" + hexA + "@sha256:" + hexA, "not a valid"},
		{"too long", "reg.io/" + strings.Repeat("a", 250) + "@sha256:" + hexA, "limit is 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, dgst, err := SplitDigestRef(tt.ref)
			if err == nil {
				t.Fatalf("SplitDigestRef(%q) = %q, %q, nil; want an error", tt.ref, repo, dgst)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}
