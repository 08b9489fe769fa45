package registry

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

// A refusal from another registry than the reference's (the source of a
// copy described with its destination) names the registry that refused and
// the credential source used for it.
func TestDescribeErrorNamesTheRefusingRegistry(t *testing.T) {
	c := newTestClient(t, Options{}, map[string]string{
		"IMGPKG_REGISTRY_HOSTNAME_SRC": "source.example:5000",
		"IMGPKG_REGISTRY_USERNAME_SRC": "u",
		"IMGPKG_REGISTRY_PASSWORD_SRC": "p",
	})
	dst, err := c.ParseReference("dest.example/apps/bundle")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, url            string
		wantReg, wantRepo    string
		wantSourceSubstrings []string
	}{
		{"source refused", "https://source.example:5000/v2/team/app/manifests/v1", "source.example:5000", "team/app", []string{"IMGPKG_REGISTRY_HOSTNAME_SRC"}},
		{"source blob", "https://source.example:5000/v2/a/b/c/blobs/sha256:00", "source.example:5000", "a/b/c", nil},
		{"destination refused", "https://dest.example/v2/apps/bundle/blobs/uploads/", "dest.example", "apps/bundle", nil},
		{"not an API URL", "https://auth.example/token?scope=x", "dest.example", "apps/bundle", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse(tt.url)
			base := fmt.Errorf("copy: %w", &errcode.ErrorResponse{Method: http.MethodGet, URL: u, StatusCode: http.StatusForbidden})
			var ae *AuthError
			if !errors.As(c.DescribeError(base, dst), &ae) {
				t.Fatalf("not described: %v", c.DescribeError(base, dst))
			}
			if ae.Registry != tt.wantReg || ae.Repository != tt.wantRepo || ae.StatusCode != http.StatusForbidden {
				t.Errorf("AuthError %+v, want registry %s repository %s", ae, tt.wantReg, tt.wantRepo)
			}
			if want := c.CredentialSource(tt.wantReg, tt.wantRepo); ae.Source != want {
				t.Errorf("source %q, want %q", ae.Source, want)
			}
			for _, s := range tt.wantSourceSubstrings {
				if !strings.Contains(ae.Error(), s) {
					t.Errorf("message %q lacks %q", ae.Error(), s)
				}
			}
		})
	}
}
