package graph

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// flakyStorage fails the first failures pushes with err, after reading a
// few bytes of the body as a cut upload would.
type flakyStorage struct {
	content.Storage
	failures int
	err      error
	pushes   int
}

func (f *flakyStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	f.pushes++
	if f.pushes <= f.failures {
		io.CopyN(io.Discard, r, 3)
		return f.err
	}
	return f.Storage.Push(ctx, desc, r)
}

func TestUploadRestartedAfterTransientErrors(t *testing.T) {
	ctx := context.Background()
	data := []byte("a blob whose upload the registry cuts")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
	cases := []struct {
		name       string
		err        error
		failures   int
		wantOK     bool
		wantPushes int
	}{
		{"503 twice", &errcode.ErrorResponse{StatusCode: http.StatusServiceUnavailable}, 2, true, 3},
		{"reset", &resetError{}, 1, true, 2},
		{"429", &errcode.ErrorResponse{StatusCode: http.StatusTooManyRequests}, 1, true, 2},
		{"budget exhausted", &errcode.ErrorResponse{StatusCode: http.StatusBadGateway}, uploadRetries + 1, false, uploadRetries + 1},
		{"401 is not transient", &errcode.ErrorResponse{StatusCode: http.StatusUnauthorized}, 1, false, 1},
		{"digest mismatch is not transient", ErrDigestMismatch, 1, false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner := &flakyStorage{Storage: memory.New(), failures: c.failures, err: c.err}
			refetches := 0
			dst := withUploadRetries(inner, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
				refetches++
				return io.NopCloser(bytes.NewReader(data)), nil
			})
			dst.(*retryingStorage).backoff = 0
			err := dst.Push(ctx, desc, bytes.NewReader(data))
			if (err == nil) != c.wantOK {
				t.Fatalf("Push: %v, want success %v", err, c.wantOK)
			}
			if inner.pushes != c.wantPushes || refetches != c.wantPushes-1 {
				t.Errorf("pushes %d, refetches %d; want %d and %d", inner.pushes, refetches, c.wantPushes, c.wantPushes-1)
			}
			if c.wantOK {
				if ok, _ := inner.Storage.Exists(ctx, desc); !ok {
					t.Error("blob not at the destination after the restarted upload")
				}
			} else if !errors.Is(err, c.err) {
				t.Errorf("error %v does not wrap %v", err, c.err)
			}
		})
	}
}

// resetError is a net.Error standing for a connection reset.
type resetError struct{}

func (*resetError) Error() string   { return "connection reset by peer" }
func (*resetError) Timeout() bool   { return false }
func (*resetError) Temporary() bool { return true }

// refStorage is a memory store that also pushes manifests by tag and
// resolves tags, failing the first failures pushes by tag with err; it
// counts pushes by digest and by tag, and digest and tag lookups.
type refStorage struct {
	*memory.Store
	failures   int
	err        error
	resolveErr error // answer to every Resolve, when set
	pushes     int   // by digest
	refPushes  int   // by tag
	exists     int   // lookups by digest
	resolves   int   // lookups by tag
}

func (s *refStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	s.pushes++
	return s.Store.Push(ctx, desc, r)
}

func (s *refStorage) PushReference(ctx context.Context, desc ocispec.Descriptor, r io.Reader, tag string) error {
	s.refPushes++
	if s.refPushes <= s.failures {
		io.CopyN(io.Discard, r, 3)
		return s.err
	}
	if err := s.Store.Push(ctx, desc, r); err != nil {
		return err
	}
	return s.Store.Tag(ctx, desc, tag)
}

func (s *refStorage) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	s.exists++
	return s.Store.Exists(ctx, desc)
}

func (s *refStorage) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	s.resolves++
	if s.resolveErr != nil {
		return ocispec.Descriptor{}, s.resolveErr
	}
	return s.Store.Resolve(ctx, ref)
}

// tagPushing returns a retryingStorage over st that pushes desc by tag.
func tagPushing(st *refStorage, desc ocispec.Descriptor, tag string, push bool) *retryingStorage {
	rs := withUploadRetries(st, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
		return nil, errors.New("no refetch for manifests")
	}).(*retryingStorage)
	rs.backoff = 0
	rs.tagAs = map[digest.Digest]string{desc.Digest: tag}
	rs.pushByTag = map[digest.Digest]bool{desc.Digest: push}
	rs.byTag, rs.resolver = st, st
	return rs
}

// TestManifestPushedByTagRetried: a manifest to be pushed by tag is pushed
// by tag only (never also by digest), restarted from the same bytes after
// transient failures and recorded as pushed and tagged; a refusal names the
// tag and keeps the registry's answer.
func TestManifestPushedByTagRetried(t *testing.T) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, body)
	tag := ImgpkgTag(desc.Digest)
	refused := &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusBadRequest}
	tests := []struct {
		name          string
		failures      int
		err           error
		push          bool // pushByTag
		wantOK        bool
		wantRefPushes int
		wantPushes    int
	}{
		{"by tag at once", 0, nil, true, true, 1, 0},
		{"reset twice, then by tag", 2, &resetError{}, true, true, 3, 0},
		{"refused", 1, refused, true, false, 1, 0},
		{"asked by tag, pushed by digest (a bundle)", 0, nil, false, true, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &refStorage{Store: memory.New(), failures: tt.failures, err: tt.err}
			rs := tagPushing(st, desc, tag, tt.push)
			err := rs.Push(ctx, desc, bytes.NewReader(body))
			if (err == nil) != tt.wantOK {
				t.Fatalf("Push: %v, want success %v", err, tt.wantOK)
			}
			if st.refPushes != tt.wantRefPushes || st.pushes != tt.wantPushes {
				t.Errorf("%d pushes by tag, %d by digest; want %d and %d", st.refPushes, st.pushes, tt.wantRefPushes, tt.wantPushes)
			}
			if !tt.wantOK {
				var resp *errcode.ErrorResponse
				if !errors.As(err, &resp) || resp.StatusCode != http.StatusBadRequest || !strings.Contains(err.Error(), tag) {
					t.Errorf("error %v: want the registry's 400 and the tag %s", err, tag)
				}
				if got := rs.taggedAs(desc.Digest); got != "" {
					t.Errorf("taggedAs = %q after a failed push", got)
				}
				return
			}
			if got, ok := rs.wasPushed(desc.Digest); !ok || !bytes.Equal(got, body) {
				t.Errorf("wasPushed = %q, %v", got, ok)
			}
			wantTagged := map[bool]string{true: tag}[tt.push]
			if got := rs.taggedAs(desc.Digest); got != wantTagged {
				t.Errorf("taggedAs = %q, want %q", got, wantTagged)
			}
			if tt.push {
				if got, err := st.Store.Resolve(ctx, tag); err != nil || got.Digest != desc.Digest {
					t.Errorf("%s -> %v, %v; want %s", tag, got.Digest, err, desc.Digest)
				}
			}
		})
	}
}

// TestExistsAsksTheTag: whether the destination has a manifest with a tag
// to get is asked of the tag (one lookup); a tag pointing at it answers
// yes and counts as tagged; a tag missing or pointing elsewhere answers no
// (the manifest is pushed again by tag); any other answer falls back to
// the digest. The copy's virtual root is never asked for.
func TestExistsAsksTheTag(t *testing.T) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, body)
	otherBody := []byte(`{"schemaVersion":2,"layers":[]}`)
	other := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, otherBody)
	tag := ImgpkgTag(desc.Digest)
	tests := []struct {
		name         string
		stored       bool // desc at the destination
		tagged       *ocispec.Descriptor
		resolveErr   error
		want         bool
		wantResolves int
		wantExists   int
		wantTagged   string
	}{
		{"tag points at it", true, &desc, nil, true, 1, 0, tag},
		{"tag missing", false, nil, nil, false, 1, 0, ""},
		{"tag missing, manifest there", true, nil, nil, false, 1, 0, ""},
		{"tag points elsewhere", true, &other, nil, false, 1, 0, ""},
		{"lookup fails: asked by digest", true, nil, &errcode.ErrorResponse{Method: http.MethodHead, StatusCode: http.StatusForbidden}, true, 1, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &refStorage{Store: memory.New(), resolveErr: tt.resolveErr}
			if tt.stored {
				if err := st.Store.Push(ctx, desc, bytes.NewReader(body)); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Store.Push(ctx, other, bytes.NewReader(otherBody)); err != nil {
				t.Fatal(err)
			}
			if tt.tagged != nil {
				if err := st.Store.Tag(ctx, *tt.tagged, tag); err != nil {
					t.Fatal(err)
				}
			}
			rs := tagPushing(st, desc, tag, true)
			got, err := rs.Exists(ctx, desc)
			if err != nil || got != tt.want {
				t.Fatalf("Exists = %v, %v; want %v", got, err, tt.want)
			}
			if st.resolves != tt.wantResolves || st.exists != tt.wantExists {
				t.Errorf("%d tag lookups, %d digest lookups; want %d and %d", st.resolves, st.exists, tt.wantResolves, tt.wantExists)
			}
			if got := rs.taggedAs(desc.Digest); got != tt.wantTagged {
				t.Errorf("taggedAs = %q, want %q", got, tt.wantTagged)
			}
		})
	}

	// A manifest without a tag to get, and the virtual root.
	st := &refStorage{Store: memory.New()}
	rs := tagPushing(st, desc, tag, true)
	if ok, err := rs.Exists(ctx, other); ok || err != nil || st.exists != 1 || st.resolves != 0 {
		t.Errorf("untagged manifest: Exists = %v, %v after %d digest and %d tag lookups; want false after one digest lookup", ok, err, st.exists, st.resolves)
	}
	root := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("virtual root")}
	rs.virtual = root.Digest
	if ok, err := rs.Exists(ctx, root); ok || err != nil || st.exists != 1 || st.resolves != 0 {
		t.Errorf("virtual root: Exists = %v, %v; asked the destination (%d digest lookups)", ok, err, st.exists)
	}
}

// readerStorage records the reader each Push got and the bytes it read.
type readerStorage struct {
	*memory.Store
	got  []io.Reader
	read [][]byte
}

func (s *readerStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	s.got = append(s.got, r)
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.read = append(s.read, data)
	return s.Store.Push(ctx, desc, bytes.NewReader(data))
}

// TestPushManifestKnownBytes checks how manifests are pushed when the copy
// holds their verified bytes (Graph.manifests): the reader is still read to
// its end (a WrapReader counts it), compared with those bytes rather than
// hashed, and any other content is refused; the bytes are kept for tagging
// without a copy. Into the local store (Gather), a manifest is not
// recorded.
func TestPushManifestKnownBytes(t *testing.T) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, body)
	other := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	otherDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, other)
	flipped := bytes.Clone(body)
	flipped[len(flipped)/2] ^= 1
	changedOther := append(bytes.Clone(other[:len(other)-1]), ' ')
	cases := []struct {
		name       string
		local      bool
		desc       ocispec.Descriptor
		content    []byte
		wantErr    error
		wantRecord bool
	}{
		{"known, same bytes", false, desc, body, nil, true},
		{"known, other bytes", false, desc, flipped, ErrDigestMismatch, false},
		{"known, longer", false, desc, append(bytes.Clone(body), ' '), ErrDigestMismatch, false},
		{"known, shorter", false, desc, body[:len(body)-1], ErrDigestMismatch, false},
		{"unknown, hashed", false, otherDesc, other, nil, true},
		{"unknown, other bytes", false, otherDesc, changedOther, ErrDigestMismatch, false},
		{"local, known", true, desc, body, nil, false},
		{"local, known, other bytes", true, desc, flipped, ErrDigestMismatch, false},
		{"local, unknown", true, otherDesc, other, nil, false},
		{"local, unknown, other bytes", true, otherDesc, changedOther, ErrDigestMismatch, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &readerStorage{Store: memory.New()}
			rs := withUploadRetries(st, nil).(*retryingStorage)
			rs.known = [2]map[digest.Digest][]byte{nil, {desc.Digest: body}}
			rs.local = tc.local
			r := &recordingReader{r: bytes.NewReader(tc.content)}
			err := rs.Push(ctx, tc.desc, r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Push: %v, want %v", err, tc.wantErr)
			}
			if !r.read {
				t.Error("the reader was not read")
			}
			if tc.wantErr != nil {
				if ok, _ := st.Exists(ctx, tc.desc); ok || len(st.got) != 0 {
					t.Errorf("refused content reached the storage (%d pushes)", len(st.got))
				}
				return
			}
			if len(st.got) != 1 || !bytes.Equal(st.read[0], tc.content) {
				t.Fatalf("storage got %d pushes (%q), want one of the content", len(st.got), st.read)
			}
			if st.got[0] == io.Reader(r) {
				t.Error("the reader was handed over, not the bytes read (a restart could not replay it)")
			}
			kept, recorded := rs.wasPushed(tc.desc.Digest)
			if recorded != tc.wantRecord {
				t.Errorf("recorded as pushed: %v, want %v", recorded, tc.wantRecord)
			}
			if tc.desc.Digest == desc.Digest && kept != nil {
				t.Error("known bytes copied into the record")
			}
			if tc.local {
				return
			}
			got, err := rs.manifest(ctx, tc.desc)
			if err != nil || !bytes.Equal(got, tc.content) {
				t.Errorf("manifest() = %q, %v; want the content", got, err)
			}
			if tc.desc.Digest == desc.Digest && &got[0] != &body[0] {
				t.Error("manifest() does not return the known bytes themselves")
			}
		})
	}
}
