package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
)

// countingRemote is a registry-like remote (it fetches references in one
// request) that counts its calls and whether response bodies were read to
// their end before being closed.
type countingRemote struct {
	oras.ReadOnlyTarget

	mu                          sync.Mutex
	resolves, fetches, refFetch int
	closedEarly                 int // bodies closed before their end
}

func (r *countingRemote) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	r.mu.Lock()
	r.resolves++
	r.mu.Unlock()
	return r.ReadOnlyTarget.Resolve(ctx, reference)
}

func (r *countingRemote) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	r.mu.Lock()
	r.fetches++
	r.mu.Unlock()
	return r.ReadOnlyTarget.Fetch(ctx, desc)
}

func (r *countingRemote) FetchReference(ctx context.Context, reference string) (ocispec.Descriptor, io.ReadCloser, error) {
	r.mu.Lock()
	r.refFetch++
	r.mu.Unlock()
	desc, err := r.ReadOnlyTarget.Resolve(ctx, reference)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	rc, err := r.ReadOnlyTarget.Fetch(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, &trackedBody{r: rc, remote: r}, nil
}

func (r *countingRemote) calls() (resolves, fetches, refFetch, closedEarly int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resolves, r.fetches, r.refFetch, r.closedEarly
}

type trackedBody struct {
	r      io.ReadCloser
	remote *countingRemote
	eof    bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *trackedBody) Close() error {
	if !b.eof {
		b.remote.mu.Lock()
		b.remote.closedEarly++
		b.remote.mu.Unlock()
	}
	return b.r.Close()
}

// manifestRemote returns a memory remote holding a small manifest-typed
// blob, resolvable by digest and by tag v1.
func manifestRemote(t *testing.T) (*memory.Store, []byte, ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	desc := descOf(body)
	desc.MediaType = ocispec.MediaTypeImageManifest
	mem := memory.New()
	if err := mem.Push(ctx, desc, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{desc.Digest.String(), "v1"} {
		if err := mem.Tag(ctx, desc, ref); err != nil {
			t.Fatal(err)
		}
	}
	return mem, body, desc
}

// TestFetchReferenceByDigestFromStore: a digest reference whose content the
// store holds is answered with the remote's Resolve (presence and media
// type, no body) and the bytes from the store; a remote that lacks it
// still says so; the first fetch stores what it reads.
func TestFetchReferenceByDigestFromStore(t *testing.T) {
	ctx := context.Background()
	mem, body, desc := manifestRemote(t)
	s := openStore(t, t.TempDir())

	cold := &countingRemote{ReadOnlyTarget: mem}
	d, rc, err := s.Cache(cold).FetchReference(ctx, desc.Digest.String())
	if err != nil || d.Digest != desc.Digest {
		t.Fatalf("cold FetchReference = %v, %v", d, err)
	}
	if got, err := readAll(rc); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("cold content %q, %v", got, err)
	}
	if r, f, rf, _ := cold.calls(); r != 0 || f != 0 || rf != 1 {
		t.Errorf("cold: %d resolves, %d fetches, %d reference fetches; want one reference fetch", r, f, rf)
	}

	warm := &countingRemote{ReadOnlyTarget: mem}
	c := s.Cache(warm)
	d, rc, err = c.FetchReference(ctx, desc.Digest.String())
	if err != nil || d.Digest != desc.Digest || d.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("warm FetchReference = %+v, %v", d, err)
	}
	if !c.Verifies(d, rc) {
		t.Error("the store's reader is not reported as verified")
	}
	if got, err := readAll(rc); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("warm content %q, %v", got, err)
	}
	if r, f, rf, _ := warm.calls(); r != 1 || f != 0 || rf != 0 {
		t.Errorf("warm: %d resolves, %d fetches, %d reference fetches; want one resolve only", r, f, rf)
	}

	// Presence is the remote's to say: another repository without the
	// manifest answers "not found" although the store has the bytes.
	empty := &countingRemote{ReadOnlyTarget: memory.New()}
	if _, _, err := s.Cache(empty).FetchReference(ctx, desc.Digest.String()); !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("FetchReference at a remote without the manifest: %v, want not found", err)
	}
}

// TestFetchReferenceByTagKeepsConnection: a tag is resolved at the remote
// by a fetch; when the store has what it names, the response is read to its
// end before it is closed (so an HTTP client can reuse the connection) and
// the content comes from the store.
func TestFetchReferenceByTagKeepsConnection(t *testing.T) {
	ctx := context.Background()
	mem, body, desc := manifestRemote(t)
	s := openStore(t, t.TempDir())
	if err := s.Push(ctx, desc, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	remote := &countingRemote{ReadOnlyTarget: mem}
	c := s.Cache(remote)
	d, rc, err := c.FetchReference(ctx, "v1")
	if err != nil || d.Digest != desc.Digest {
		t.Fatalf("FetchReference(v1) = %v, %v", d, err)
	}
	if _, ok := rc.(*os.File); !ok {
		t.Errorf("content served by %T, want the store's file", rc)
	}
	if got, err := readAll(rc); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("content %q, %v", got, err)
	}
	if _, _, rf, early := remote.calls(); rf != 1 || early != 0 {
		t.Errorf("%d reference fetches, %d bodies closed before their end; want 1 and 0", rf, early)
	}
}

// TestVerifies: only readers the store returned for that very descriptor
// are reported as verified.
func TestVerifies(t *testing.T) {
	ctx := context.Background()
	blob, desc := randomBlob(t, 4096)
	other, otherDesc := randomBlob(t, 4096)
	mem := memory.New()
	for _, b := range [][]byte{blob, other} {
		if err := mem.Push(ctx, descOf(b), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, t.TempDir())
	c := s.Cache(mem)

	download, err := c.Fetch(ctx, desc) // not in the store: a download
	if err != nil {
		t.Fatal(err)
	}
	downloading := c.Verifies(desc, download)
	wrongDesc := c.Verifies(otherDesc, download)
	if _, err := readAll(download); err != nil {
		t.Fatal(err)
	}
	committed, err := c.Fetch(ctx, desc) // now committed: the file
	if err != nil {
		t.Fatal(err)
	}
	defer committed.Close()
	stranger := filepath.Join(t.TempDir(), filepath.Base(committed.(*os.File).Name()))
	if err := os.WriteFile(stranger, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.Open(stranger)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"download into the store", downloading, true},
		{"download, asked about another descriptor", wrongDesc, false},
		{"committed blob", c.Verifies(desc, committed), true},
		{"committed blob, another size", c.Verifies(ocispec.Descriptor{Digest: desc.Digest, Size: desc.Size + 1}, committed), false},
		{"a file outside the store", c.Verifies(desc, foreign), false},
		{"any other reader", c.Verifies(desc, bytes.NewReader(blob)), false},
		{"verified but not stored", s.Verifies(desc, verifyOnly(desc, io.NopCloser(bytes.NewReader(blob)))), true},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: Verifies = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestCacheFetchReadSizes: the download is the same whatever the size of
// the consumer's reads (small ones go through the reader's buffer, large
// ones straight into the consumer's), and wrong bytes fail before io.EOF.
func TestCacheFetchReadSizes(t *testing.T) {
	ctx := context.Background()
	blob, desc := randomBlob(t, 3<<20+123)
	for _, size := range []int{1000, 32 << 10, minDirectRead, 4 << 20} {
		for _, corrupt := range []bool{false, true} {
			name := strconv.Itoa(size)
			if corrupt {
				name += "/corrupt"
			}
			t.Run(name, func(t *testing.T) {
				srv := newBlobServer(t, blob)
				srv.corrupt = corrupt
				s := openStore(t, t.TempDir())
				rc, err := s.Cache(srv.repo(t)).Fetch(ctx, desc)
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				_, err = io.CopyBuffer(&got, struct{ io.Reader }{rc}, make([]byte, size))
				rc.Close()
				if corrupt {
					if !errors.Is(err, ErrDigestMismatch) {
						t.Fatalf("read = %v, want ErrDigestMismatch", err)
					}
					if ok, _ := s.Exists(ctx, desc); ok {
						t.Error("corrupt blob committed")
					}
					return
				}
				if err != nil || !bytes.Equal(got.Bytes(), blob) {
					t.Fatalf("read %d bytes, %v; want the blob", got.Len(), err)
				}
				if ok, _ := s.Exists(ctx, desc); !ok {
					t.Error("blob not committed")
				}
			})
		}
	}
}
