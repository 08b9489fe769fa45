package registry

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// AuthError is an access refusal (HTTP 401 or 403, or a registry asking for
// basic credentials that no source had), with the registry and the
// credential source that was tried. It matches ErrUnauthorized with
// errors.Is and unwraps to the oras-go error (e.g. *errcode.ErrorResponse).
type AuthError struct {
	Registry   string // registry name as in the reference, e.g. "docker.io"
	Repository string
	Source     string // from [Client.CredentialSource]
	StatusCode int    // 401 or 403; 0 when no request was refused
	Err        error
}

func (e *AuthError) Error() string {
	what := "denied access"
	switch e.StatusCode {
	case http.StatusUnauthorized:
		what = "refused the credentials (401 Unauthorized)"
	case http.StatusForbidden:
		what = "denied access (403 Forbidden)"
	case 0:
		what = "requires credentials"
	}
	return fmt.Sprintf("registry %s %s for repository %s, credentials from %s: %v",
		e.Registry, what, e.Repository, e.Source, e.Err)
}

// Unwrap returns ErrUnauthorized and the underlying error.
func (e *AuthError) Unwrap() []error { return []error{ErrUnauthorized, e.Err} }

// DescribeError turns an access refusal from an operation on repository ref
// into an *AuthError that names the registry and the credential source
// tried. It also rewrites, in the message only, each blob upload URL
// (`Put "https://reg/v2/REPO/blobs/uploads/UUID?_state=...&digest=..."`, long
// and holding the registry's opaque upload state) as the registry,
// repository and blob digest it is for; errors.Is and errors.As still reach
// the original errors, and the --debug log keeps the full URLs. Other
// errors, and nil, are returned unchanged. Call it on errors from
// oras-go operations on a repository from [Client.Repository]. When the
// refusal is an HTTP response from another registry than ref's (for
// example the source of a copy whose destination is ref), the registry and
// repository of the response's URL are named instead, so an error of a
// whole copy may be described with either end's reference.
// Safe for concurrent use.
func (c *Client) DescribeError(err error, ref orasregistry.Reference) error {
	if err == nil {
		return nil
	}
	err = shortenUploadURLs(err)
	var already *AuthError
	if errors.As(err, &already) {
		return err
	}
	status := 0
	var resp *errcode.ErrorResponse
	switch {
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		status = resp.StatusCode
		if at, ok := referenceOfURL(resp.URL); ok && at.Host() != ref.Host() {
			// The refusal came from another registry than ref's (the
			// source of a copy, not its destination): name that one.
			ref = at
		}
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
	default:
		return err
	}
	return &AuthError{
		Registry:   ref.Registry,
		Repository: ref.Repository,
		Source:     c.CredentialSource(ref.Registry, ref.Repository),
		StatusCode: status,
		Err:        err,
	}
}

// referenceOfURL returns the registry and repository a registry API URL
// (/v2/<repository>/manifests|blobs|tags|referrers/...) addresses.
func referenceOfURL(u *url.URL) (orasregistry.Reference, bool) {
	if u == nil || u.Host == "" {
		return orasregistry.Reference{}, false
	}
	rest, ok := strings.CutPrefix(u.Path, "/v2/")
	if !ok {
		return orasregistry.Reference{}, false
	}
	best := -1
	for _, marker := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, marker); i > best {
			best = i
		}
	}
	if best <= 0 {
		return orasregistry.Reference{}, false
	}
	ref := orasregistry.Reference{Registry: u.Host, Repository: rest[:best]}
	if ref.ValidateRegistry() != nil || ref.ValidateRepository() != nil {
		return orasregistry.Reference{}, false
	}
	return ref, true
}

// uploadURLError is an error whose message has its blob upload URLs
// replaced by what they are for; it unwraps to the original error.
type uploadURLError struct {
	msg string
	err error
}

func (e *uploadURLError) Error() string { return e.msg }
func (e *uploadURLError) Unwrap() error { return e.err }

// shortenUploadURLs returns err with the text of every blob upload request
// in its message (`METHOD "URL"`, as *url.Error and *errcode.ErrorResponse
// print it) replaced by describeUpload's words; err itself when there is
// none.
func shortenUploadURLs(err error) error {
	var short *uploadURLError
	if errors.As(err, &short) {
		return err
	}
	msg := err.Error()
	out := msg
	walkErrors(err, func(e error) {
		var text string
		var u *url.URL
		switch e := e.(type) {
		case *url.Error:
			parsed, perr := url.Parse(e.URL)
			if perr != nil {
				return
			}
			text, u = fmt.Sprintf("%s %q", e.Op, e.URL), parsed
		case *errcode.ErrorResponse:
			if e.URL == nil {
				return
			}
			text, u = fmt.Sprintf("%s %q", e.Method, e.URL), e.URL
		default:
			return
		}
		if desc, ok := describeUpload(u); ok {
			out = strings.ReplaceAll(out, text, desc)
		}
	})
	if out == msg {
		return err
	}
	return &uploadURLError{msg: out, err: err}
}

// walkErrors calls fn for err and every error it wraps, depth first.
func walkErrors(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		walkErrors(e.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			walkErrors(inner, fn)
		}
	}
}

// describeUpload says what a blob upload URL
// (/v2/REPO/blobs/uploads/...) is for: "upload of blob DIGEST to
// repository REPO on REGISTRY", the digest taken from the digest (final
// PUT) or mount (cross-repository mount) parameter and left out when there
// is none. It reports false for other URLs.
func describeUpload(u *url.URL) (string, bool) {
	if u == nil || !strings.Contains(u.Path, "/blobs/uploads/") {
		return "", false
	}
	ref, ok := referenceOfURL(u)
	if !ok {
		return "", false
	}
	q := u.Query()
	blob := q.Get("digest")
	if blob == "" {
		blob = q.Get("mount")
	}
	if blob == "" {
		return fmt.Sprintf("blob upload to repository %s on %s", ref.Repository, ref.Registry), true
	}
	return fmt.Sprintf("upload of blob %s to repository %s on %s", blob, ref.Repository, ref.Registry), true
}
