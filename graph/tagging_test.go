package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
)

// registryTarget is a countingTarget that, like a registry, pushes a
// manifest by tag (registry.ReferencePusher) and counts what a registry
// would answer: tag lookups (HEAD), manifest reads (GET) and tag pushes.
type registryTarget struct {
	*countingTarget
	mu       sync.Mutex
	resolved []string // references resolved
	fetched  int      // manifests read back from the destination
	refPuts  []string // tags pushed with the manifest bytes
}

func newRegistryTarget() *registryTarget {
	return &registryTarget{countingTarget: newCountingTarget()}
}

func (r *registryTarget) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	r.mu.Lock()
	r.resolved = append(r.resolved, reference)
	r.mu.Unlock()
	return r.countingTarget.Resolve(ctx, reference)
}

func (r *registryTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		r.mu.Lock()
		r.fetched++
		r.mu.Unlock()
	}
	return r.countingTarget.Fetch(ctx, desc)
}

func (r *registryTarget) PushReference(ctx context.Context, desc ocispec.Descriptor, rd io.Reader, reference string) error {
	data, err := content.ReadAll(rd, desc)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.refPuts = append(r.refPuts, reference)
	r.mu.Unlock()
	if err := r.countingTarget.Store.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return r.countingTarget.Store.Tag(ctx, desc, reference)
}

func (r *registryTarget) counts() (resolved []string, fetched int, refPuts []string, tags []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.countingTarget.mu.Lock()
	defer r.countingTarget.mu.Unlock()
	return slices.Clone(r.resolved), r.fetched, slices.Clone(r.refPuts), slices.Clone(r.countingTarget.tags)
}

// TestTagsPushedWithBytesInHand: the first copy tags every node it pushed
// with one PUT of the manifest it holds, without asking the destination
// what the tag points at nor reading the manifest back; a second copy asks
// (one HEAD per tag) and writes nothing.
func TestTagsPushedWithBytesInHand(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	dst := newRegistryTarget()
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	var nodeTags []string
	for _, n := range g.Nodes {
		if !n.Signature && !n.Referrer {
			nodeTags = append(nodeTags, ImgpkgTag(n.Desc.Digest))
		}
	}
	wantPuts := append(slices.Clone(nodeTags), "v1")
	resolved, fetched, refPuts, _ := dst.counts()
	for _, tag := range wantPuts {
		if slices.Contains(resolved, tag) {
			t.Errorf("first copy looked tag %s up although it had just pushed its manifest", tag)
		}
		if !slices.Contains(refPuts, tag) {
			t.Errorf("tag %s not pushed with the manifest's bytes (pushed: %v)", tag, refPuts)
		}
	}
	if fetched != 0 {
		t.Errorf("first copy read %d manifests back from the destination", fetched)
	}
	for _, n := range g.Nodes {
		if got := resolveTag(t, dst, ImgpkgTag(n.Desc.Digest)); got.Digest != n.Desc.Digest {
			t.Errorf("%s points at %s, want %s", ImgpkgTag(n.Desc.Digest), got.Digest, n.Desc.Digest)
		}
	}
	if got := resolveTag(t, dst, "v1"); got.Digest != w.o.Digest {
		t.Errorf("v1 points at %s, want %s", got.Digest, w.o.Digest)
	}

	// Second copy: every manifest is there; each tag is looked up once
	// and nothing is written.
	r0, f0, p0, t0 := dst.counts()
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	r1, f1, p1, t1 := dst.counts()
	if len(p1) != len(p0) || len(t1) != len(t0) {
		t.Errorf("second copy tagged: pushed %v, tagged %v", p1[len(p0):], t1[len(t0):])
	}
	if f1 != f0 {
		t.Errorf("second copy read %d manifests back", f1-f0)
	}
	for _, tag := range wantPuts {
		if n := countOf(r1[len(r0):], tag); n != 1 {
			t.Errorf("second copy looked tag %s up %d times, want 1", tag, n)
		}
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func TestPutTagWithSubjectUsesTag(t *testing.T) {
	ctx := context.Background()
	dst := newRegistryTarget()
	subject := pushBlob(t, dst.Store, ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2}`))
	tests := []struct {
		name    string
		body    string
		wantPut bool // PushReference, not Tag
	}{
		{"no subject", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`, true},
		{"null subject", `{"schemaVersion":2,"subject":null,"layers":[]}`, true},
		{"with subject", fmt.Sprintf(`{"schemaVersion":2,"subject":{"mediaType":%q,"digest":%q,"size":%d},"layers":[]}`, subject.MediaType, subject.Digest, subject.Size), false},
	}
	if !hasSubject([]byte("not json")) {
		t.Error("hasSubject(unreadable) = false, want true (tag the safe way)")
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desc := pushBlob(t, dst.Store, ocispec.MediaTypeImageManifest, []byte(tt.body))
			tag := fmt.Sprintf("t%d", i)
			_, _, p0, t0 := dst.counts()
			if err := putTag(ctx, dst, desc, []byte(tt.body), tag); err != nil {
				t.Fatal(err)
			}
			_, _, p1, t1 := dst.counts()
			if gotPut := len(p1) > len(p0); gotPut != tt.wantPut || len(t1) > len(t0) == tt.wantPut {
				t.Errorf("PushReference %v, Tag %v; want PushReference %v", len(p1) > len(p0), len(t1) > len(t0), tt.wantPut)
			}
			if got := resolveTag(t, dst, tag); got.Digest != desc.Digest {
				t.Errorf("%s -> %s, want %s", tag, got.Digest, desc.Digest)
			}
		})
	}
}

// verifyingTarget claims, through Verifies, that it checks what it serves.
type verifyingTarget struct {
	*memory.Store
	claim bool
}

func (v verifyingTarget) Verifies(desc ocispec.Descriptor, rc io.Reader) bool { return v.claim }

// TestVerifiedHashesOnce: graph wraps a source's reader in its own
// verifier unless the source says it verifies that reader itself.
func TestVerifiedHashesOnce(t *testing.T) {
	data := []byte("some blob")
	desc := content.NewDescriptorFromBytes("application/octet-stream", data)
	tests := []struct {
		name     string
		src      any
		wantSame bool
	}{
		{"plain source: graph verifies", memory.New(), false},
		{"source that verifies: not hashed again", verifyingTarget{memory.New(), true}, true},
		{"source that does not vouch for this reader", verifyingTarget{memory.New(), false}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := io.NopCloser(bytes.NewReader(data))
			got := verified(tt.src, desc, rc)
			if same := got == rc; same != tt.wantSame {
				t.Errorf("reader returned as it is: %v, want %v", same, tt.wantSame)
			}
			if b, err := io.ReadAll(got); err != nil || !bytes.Equal(b, data) {
				t.Errorf("read %q, %v", b, err)
			}
		})
	}
}

// readingStorage reads the whole body as an HTTP client does and, when the
// body fails, reports it wrapped in a *url.Error, as net/http does.
type readingStorage struct {
	content.Storage
	pushes int
}

func (s *readingStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	s.pushes++
	data, err := io.ReadAll(r)
	if err != nil {
		return &url.Error{Op: "Put", URL: "http://reg.test/v2/x/blobs/uploads/abc?_state=long", Err: err}
	}
	return s.Storage.Push(ctx, desc, bytes.NewReader(data))
}

// failingReader returns some bytes, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data[:min(len(f.data), 2)])
	f.data = f.data[n:]
	return n, nil
}

// TestSourceFailureLeads: when the source of an upload fails (a full
// store), the upload is not restarted and the error is the source's, not
// the destination's request around it; a source cut (network) is worth a
// restart; a refetch that fails puts its own cause first.
func TestSourceFailureLeads(t *testing.T) {
	ctx := context.Background()
	data := []byte("a blob read through a store")
	desc := content.NewDescriptorFromBytes("application/octet-stream", data)
	enospc := fmt.Errorf("store: write blob %s: %w", desc.Digest, &fs.PathError{Op: "write", Path: "/store/ingest/x/data", Err: syscall.ENOSPC})
	tests := []struct {
		name         string
		sourceErr    error
		refetchErr   error
		wantOK       bool
		wantRefetch  int
		wantIs       error
		wantPrefix   string
		wantNoSubstr string
	}{
		{"full store: not retried, cause leads", enospc, nil, false, 0, syscall.ENOSPC, "store: write blob " + desc.Digest.String(), "_state"},
		{"source cut: restarted", syscall.ECONNRESET, nil, true, 1, nil, "", ""},
		{"refetch fails: its cause leads", syscall.ECONNRESET, enospc, false, 1, syscall.ENOSPC, "store: write blob " + desc.Digest.String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &readingStorage{Storage: memory.New()}
			refetches := 0
			dst := withUploadRetries(inner, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
				refetches++
				if tt.refetchErr != nil {
					return nil, tt.refetchErr
				}
				return io.NopCloser(bytes.NewReader(data)), nil
			})
			dst.(*retryingStorage).backoff = 0
			err := dst.Push(ctx, desc, &failingReader{data: bytes.Clone(data[:5]), err: tt.sourceErr})
			if (err == nil) != tt.wantOK {
				t.Fatalf("Push: %v, want success %v", err, tt.wantOK)
			}
			if refetches != tt.wantRefetch {
				t.Errorf("refetched %d times, want %d", refetches, tt.wantRefetch)
			}
			if tt.wantOK {
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not match %v", err, tt.wantIs)
			}
			if !strings.HasPrefix(err.Error(), tt.wantPrefix) {
				t.Errorf("error %q does not start with %q", err, tt.wantPrefix)
			}
			if tt.wantNoSubstr != "" && strings.Contains(err.Error(), tt.wantNoSubstr) {
				t.Errorf("error %q mentions %q", err, tt.wantNoSubstr)
			}
		})
	}
}

// TestManifestPushRetriedFromBytes: a manifest is read once; a cut upload
// is restarted from the bytes in hand (no refetch), and the push is
// recorded with its bytes for tagging.
func TestManifestPushRetriedFromBytes(t *testing.T) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, body)
	inner := &flakyStorage{Storage: memory.New(), failures: 2, err: &resetError{}}
	dst := withUploadRetries(inner, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
		t.Error("refetch called for a manifest")
		return nil, errors.New("no refetch")
	})
	dst.(*retryingStorage).backoff = 0
	if err := dst.Push(ctx, desc, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if inner.pushes != 3 {
		t.Errorf("%d pushes, want 3", inner.pushes)
	}
	got, ok := uploadsOf(dst).wasPushed(desc.Digest)
	if !ok || !bytes.Equal(got, body) {
		t.Errorf("wasPushed = %q, %v", got, ok)
	}
	if _, ok := uploadsOf(dst).wasPushed(digest.FromString("other")); ok {
		t.Error("wasPushed true for a digest never pushed")
	}
	// Wrong bytes for a manifest are refused before anything is sent.
	bad := bytes.Clone(body)
	bad[0] = '['
	if err := dst.Push(ctx, content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, []byte("x")), bytes.NewReader(bad)); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Push of wrong manifest bytes: %v, want ErrDigestMismatch", err)
	}
}
