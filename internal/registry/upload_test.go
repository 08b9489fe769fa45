package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// uploadState is a registry's opaque upload state, as distribution puts it
// in the upload URL.
const uploadState = "-w8Gh49Jp_YIdQtVbtfnEhnC5yjwpcKZrhcapkbz7vZ7Ik5hbWUiOiJiYWQvY2FzZWUiLCJVVUlEIjoiMDFh%3D%3D"

// Upload errors name the registry, repository and blob, not the upload URL
// with its state token; the original errors stay reachable.
func TestDescribeErrorShortensUploadURLs(t *testing.T) {
	c := newTestClient(t, Options{}, nil)
	ref, err := c.ParseReference("reg.example:5000/team/app")
	if err != nil {
		t.Fatal(err)
	}
	const blob = "sha256:fd97d15b792d95e4b58843dea47d1d4a54db095e493558b6464dedb9f2aa9368"
	put := "http://reg.example:5000/v2/team/app/blobs/uploads/01a2190a-ca15?_state=" + uploadState + "&digest=" + url.QueryEscape(blob)
	putURL, _ := url.Parse(put)
	mismatch := errors.New("blob " + blob + ": digest mismatch")
	for _, tt := range []struct {
		name string
		err  error
		want string // the whole message
	}{
		{
			name: "body error on the final PUT",
			err:  fmt.Errorf("copy to reg.example:5000/team/app: failed to perform \"Push\" on destination: %w", &url.Error{Op: "Put", URL: put, Err: mismatch}),
			want: "copy to reg.example:5000/team/app: failed to perform \"Push\" on destination: upload of blob " + blob + " to repository team/app on reg.example:5000: blob " + blob + ": digest mismatch",
		},
		{
			name: "error status on the final PUT",
			err:  fmt.Errorf("push: %w", &errcode.ErrorResponse{Method: http.MethodPut, URL: putURL, StatusCode: http.StatusInternalServerError}),
			want: "push: upload of blob " + blob + " to repository team/app on reg.example:5000: response status code 500: Internal Server Error",
		},
		{
			name: "PATCH without a digest",
			err:  &url.Error{Op: "Patch", URL: "https://reg.example:5000/v2/team/app/blobs/uploads/u?_state=" + uploadState, Err: io.ErrUnexpectedEOF},
			want: "blob upload to repository team/app on reg.example:5000: unexpected EOF",
		},
		{
			name: "cross-repository mount",
			err: &errcode.ErrorResponse{Method: http.MethodPost, StatusCode: http.StatusBadGateway,
				URL: &url.URL{Scheme: "https", Host: "reg.example:5000", Path: "/v2/team/app/blobs/uploads/", RawQuery: "mount=" + blob + "&from=team/other"}},
			want: "upload of blob " + blob + " to repository team/app on reg.example:5000: response status code 502: Bad Gateway",
		},
		{
			name: "inside errors.Join",
			err:  errors.Join(errors.New("first"), &url.Error{Op: "Put", URL: put, Err: mismatch}),
			want: "first\nupload of blob " + blob + " to repository team/app on reg.example:5000: blob " + blob + ": digest mismatch",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := c.DescribeError(tt.err, ref)
			if got.Error() != tt.want {
				t.Errorf("message:\n got %q\nwant %q", got, tt.want)
			}
			if strings.Contains(got.Error(), "_state") || strings.Contains(got.Error(), "?") {
				t.Errorf("message keeps the upload URL's query: %q", got)
			}
			// The original errors are still reachable.
			var ue *url.Error
			var er *errcode.ErrorResponse
			if !errors.As(got, &ue) && !errors.As(got, &er) {
				t.Errorf("%v unwraps to neither *url.Error nor *errcode.ErrorResponse", got)
			}
			if errors.Is(tt.err, mismatch) && !errors.Is(got, mismatch) {
				t.Errorf("%v no longer matches its cause", got)
			}
			if again := c.DescribeError(got, ref); again != got {
				t.Errorf("described twice: %v", again)
			}
		})
	}

	// Other URLs are left alone.
	other := fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: "http://reg.example:5000/v2/team/app/manifests/v1?x=1", Err: io.EOF})
	if got := c.DescribeError(other, ref); got != other {
		t.Errorf("a manifest GET error changed: %v", got)
	}
}

// A refused upload (401 on the PUT) is an *AuthError whose message has no
// upload URL either.
func TestDescribeErrorShortensRefusedUpload(t *testing.T) {
	c := newTestClient(t, Options{}, nil)
	ref, _ := c.ParseReference("reg.example:5000/team/app")
	u, _ := url.Parse("http://reg.example:5000/v2/team/app/blobs/uploads/u?_state=" + uploadState + "&digest=sha256%3Aab")
	got := c.DescribeError(fmt.Errorf("push: %w", &errcode.ErrorResponse{Method: http.MethodPut, URL: u, StatusCode: http.StatusUnauthorized}), ref)
	var ae *AuthError
	if !errors.As(got, &ae) || ae.StatusCode != http.StatusUnauthorized || ae.Repository != "team/app" {
		t.Fatalf("got %v, want an *AuthError for team/app", got)
	}
	if strings.Contains(got.Error(), "_state") || !strings.Contains(got.Error(), "upload of blob sha256:ab to repository team/app on reg.example:5000") {
		t.Errorf("message %q", got)
	}
}

// A push through the client to a registry that fails the upload: the
// described error names registry, repository and digest; the --debug log
// still has the full upload URL.
func TestDescribeErrorOnFailedPush(t *testing.T) {
	f := newFakeRegistry(t, false)
	f.before = func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v2/app/blobs/uploads/":
			w.Header().Set("Location", "/v2/app/blobs/uploads/8c1f?_state="+uploadState)
			w.WriteHeader(http.StatusAccepted)
			return true
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v2/app/blobs/uploads/"):
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"blob upload invalid"}]}`)
			return true
		}
		return false
	}
	var debug bytes.Buffer
	c := newTestClient(t, Options{DebugLog: &debug, RetryCount: -1}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	refText := f.host() + "/app"
	repo, err := c.Repository(ctx, refText)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("layer bytes")
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(body), Size: int64(len(body))}
	err = repo.Push(ctx, desc, bytes.NewReader(body))
	if err == nil {
		t.Fatal("push succeeded")
	}
	ref, _ := c.ParseReference(refText)
	got := c.DescribeError(fmt.Errorf("push %s: %w", refText, err), ref)
	want := "upload of blob " + desc.Digest.String() + " to repository app on " + f.host() + ": response status code 400: blob upload invalid"
	if !strings.Contains(got.Error(), want) || strings.Contains(got.Error(), "_state") {
		t.Errorf("message %q, want it to hold %q and no upload state", got, want)
	}
	var er *errcode.ErrorResponse
	if !errors.As(got, &er) || er.StatusCode != http.StatusBadRequest {
		t.Errorf("%v does not unwrap to the 400 response", got)
	}
	if !strings.Contains(debug.String(), "_state="+uploadState) {
		t.Errorf("the debug log lost the upload URL:\n%s", debug.String())
	}
}
