package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
)

// TestGather checks that every blob of the graph ends up in local storage,
// listed once and sorted, including what sits below a manifest that local
// already had (discovery through a caching store commits manifests first).
func TestGather(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	local := memory.New()
	// Pre-seed local with the root manifest only, as a store would hold
	// it after discovery: its layers must still be gathered.
	rootBody, err := w.src.store("src.io/bundle").Fetch(ctx, w.o)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Push(ctx, w.o, rootBody); err != nil {
		t.Fatal(err)
	}
	rootBody.Close()

	var called atomic.Int64
	got, err := Gather(ctx, w.src, g, local, GatherOptions{OnBlob: func(ocispec.Descriptor) { called.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	want := map[digest.Digest]bool{}
	for _, n := range g.Nodes {
		for _, d := range blobsOf(t, w.src.store(n.Repo), n.Desc) {
			want[d.Digest] = true
		}
	}
	if len(got.Blobs) != len(want) || called.Load() != int64(len(want)) {
		t.Fatalf("gathered %d blobs (OnBlob %d times), want %d", len(got.Blobs), called.Load(), len(want))
	}
	for i, d := range got.Blobs {
		if !want[d.Digest] {
			t.Errorf("gathered %s, which is not in the graph", d.Digest)
		}
		if i > 0 && got.Blobs[i-1].Digest >= d.Digest {
			t.Errorf("blobs not sorted and unique at %d: %s then %s", i, got.Blobs[i-1].Digest, d.Digest)
		}
		if ok, err := local.Exists(ctx, d); err != nil || !ok {
			t.Errorf("%s not in local storage (err %v)", d.Digest, err)
		}
	}
}

// fetchCounter is a Source whose repositories count the Fetch calls per
// digest (FetchReference, used by discovery, is not counted).
type fetchCounter struct {
	Source
	mu      sync.Mutex
	fetches map[digest.Digest]int
}

func (f *fetchCounter) Repository(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	t, err := f.Source.Repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	return countingFetches{ReadOnlyTarget: t, f: f}, nil
}

func (f *fetchCounter) count(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches[d]
}

type countingFetches struct {
	oras.ReadOnlyTarget
	f *fetchCounter
}

func (c countingFetches) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	c.f.mu.Lock()
	c.f.fetches[desc.Digest]++
	c.f.mu.Unlock()
	return c.ReadOnlyTarget.Fetch(ctx, desc)
}

// TestGatherServesManifestsFromMemory checks that Gather does not ask the
// source again for the manifests and indexes Discover read (nodes and
// index children): they come from the graph, verified then, while every
// blob still reaches local storage and WrapReader still sees them.
func TestGatherServesManifestsFromMemory(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	manifests := []ocispec.Descriptor{w.a, w.b, w.m, w.m1, w.m2, w.i, w.o}
	for _, m := range manifests {
		if _, ok := g.manifests[m.Digest]; !ok {
			t.Fatalf("Discover did not keep %s", m.Digest)
		}
	}
	for _, fills := range []bool{false, true} {
		t.Run(fmt.Sprintf("SourceFillsLocal=%v", fills), func(t *testing.T) {
			src := &fetchCounter{Source: w.src, fetches: map[digest.Digest]int{}}
			local := memory.New()
			var mu sync.Mutex
			wrapped := map[digest.Digest]int{}
			opts := GatherOptions{WrapReader: func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
				mu.Lock()
				wrapped[desc.Digest]++
				mu.Unlock()
				return rc
			}}
			if fills {
				// A memory store does not fill local as it serves:
				// the blobs are put there first, as a caching store
				// would have while serving them.
				for _, n := range g.Nodes {
					for _, d := range blobsOf(t, w.src.store(n.Repo), n.Desc) {
						if isImageManifest(d.MediaType) || isIndex(d.MediaType) {
							continue
						}
						rc, err := w.src.store(n.Repo).Fetch(ctx, d)
						if err != nil {
							t.Fatal(err)
						}
						if err := local.Push(ctx, d, rc); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
							t.Fatal(err)
						}
						rc.Close()
					}
				}
				opts.SourceFillsLocal = true
			}
			got, err := Gather(ctx, src, g, local, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range manifests {
				if n := src.count(m.Digest); n != 0 {
					t.Errorf("manifest %s fetched %d times from the source, want 0", m.Digest, n)
				}
				if wrapped[m.Digest] == 0 {
					t.Errorf("manifest %s not shown to WrapReader", m.Digest)
				}
				body, err := content.FetchAll(ctx, local, m)
				if err != nil {
					t.Errorf("manifest %s not in local storage: %v", m.Digest, err)
				} else if !bytes.Equal(body, g.manifests[m.Digest]) {
					t.Errorf("local holds other bytes for %s", m.Digest)
				}
			}
			if len(got.Blobs) < len(manifests)+5 {
				t.Errorf("gathered only %d blobs", len(got.Blobs))
			}
			for _, d := range got.Blobs {
				if ok, err := local.Exists(ctx, d); err != nil || !ok {
					t.Errorf("%s not in local storage (err %v)", d.Digest, err)
				}
			}
		})
	}
}

// recordingReader is a blob reader that records whether it was read and
// can fail at its end.
type recordingReader struct {
	r    io.Reader
	read bool
	err  error // returned instead of io.EOF
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.read = true
	n, err := r.r.Read(p)
	if err == io.EOF && r.err != nil {
		return n, r.err
	}
	return n, err
}

// TestReadThroughPush checks what pushing into local storage filled by the
// source does: a small blob local already has is not read when nobody
// watches the bytes; other blobs are read to their end and must then be
// local; manifests Discover kept are not read nor hashed again, and are
// pushed from memory when local lacks them; others are checked.
func TestReadThroughPush(t *testing.T) {
	ctx := context.Background()
	small := []byte("small layer")
	smallDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, small)
	large := bytes.Repeat([]byte("large layer "), (largeBlobBytes+readThroughBuffer)/12+1)
	largeDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, large)
	manifest := []byte(`{"schemaVersion":2}`)
	manifestDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifest)
	errCut := errors.New("cut")
	cases := []struct {
		name     string
		desc     ocispec.Descriptor
		reader   []byte // what the reader serves
		readErr  error  // returned by the reader at its end
		inLocal  bool   // local has desc before the push
		kept     bool   // desc is in bodies
		skipRead bool
		wantRead bool
		wantErr  error // nil: success, and local has desc afterwards
		anyErr   bool  // an error not matched by errors.Is
	}{
		{name: "small blob local has, no watcher: not read", desc: smallDesc, reader: small, inLocal: true, skipRead: true},
		{name: "small blob local has, watched: read", desc: smallDesc, reader: small, inLocal: true, wantRead: true},
		{name: "small blob local lacks: read, then missing", desc: smallDesc, reader: small, skipRead: true, wantRead: true, anyErr: true},
		{name: "large blob local has: read to its end", desc: largeDesc, reader: large, inLocal: true, skipRead: true, wantRead: true},
		{name: "reader fails at its end", desc: largeDesc, reader: large, readErr: errCut, inLocal: true, skipRead: true, wantRead: true, wantErr: errCut},
		{name: "kept manifest local lacks: pushed from memory", desc: manifestDesc, reader: []byte("not read"), kept: true},
		{name: "kept manifest local has", desc: manifestDesc, reader: []byte("not read"), inLocal: true, kept: true},
		{name: "other manifest: read and pushed", desc: manifestDesc, reader: manifest, wantRead: true},
		{name: "other manifest, wrong bytes", desc: manifestDesc, reader: []byte(`{"schemaVersion":3}`), wantRead: true, wantErr: ErrDigestMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			local := memory.New()
			if tc.inLocal {
				data := tc.reader
				if tc.kept {
					data = manifest
				}
				if err := local.Push(ctx, tc.desc, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			}
			rt := &readThrough{Storage: local, skipRead: tc.skipRead, bufs: &sync.Pool{New: func() any { return new([readThroughBuffer]byte) }}}
			if tc.kept {
				rt.bodies = map[digest.Digest][]byte{manifestDesc.Digest: manifest}
			}
			rd := &recordingReader{r: bytes.NewReader(tc.reader), err: tc.readErr}
			err := rt.Push(ctx, tc.desc, rd)
			switch {
			case tc.anyErr:
				if err == nil {
					t.Fatal("Push succeeded, want an error")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Push: %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("Push: %v", err)
			default:
				if ok, _ := local.Exists(ctx, tc.desc); !ok {
					t.Error("local lacks the blob after Push")
				}
			}
			if rd.read != tc.wantRead {
				t.Errorf("reader read: %v, want %v", rd.read, tc.wantRead)
			}
		})
	}
}
