package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/ocilayout"
	"github.com/ferry-oci/ferry/store"
)

// oneRepo serves every repository from one target.
type oneRepo struct{ t oras.ReadOnlyTarget }

func (s oneRepo) Repository(context.Context, string) (oras.ReadOnlyTarget, error) { return s.t, nil }

// corrupting serves bad's bytes with one byte flipped (same length), as a
// registry or a disk that went wrong would; everything else as it is.
type corrupting struct {
	oras.ReadOnlyTarget
	bad ocispec.Descriptor
}

func (c corrupting) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := c.ReadOnlyTarget.Fetch(ctx, desc)
	if err != nil || desc.Digest != c.bad.Digest {
		return rc, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	data[len(data)/2] ^= 0x01
	return io.NopCloser(bytes.NewReader(data)), nil
}

// testImage is an image in a memory "registry": manifest, config, layer.
type testImage struct {
	remote                  *memory.Store
	manifest, config, layer ocispec.Descriptor
	blobs                   map[string][]byte // by digest
}

func newTestImage(t *testing.T) testImage {
	t.Helper()
	ctx := context.Background()
	img := testImage{remote: memory.New(), blobs: map[string][]byte{}}
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		desc := content.NewDescriptorFromBytes(mediaType, data)
		if err := img.remote.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		img.blobs[desc.Digest.String()] = data
		return desc
	}
	img.config = push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	img.layer = push(ocispec.MediaTypeImageLayerGzip, bytes.Repeat([]byte("layer bytes "), 20000))
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: img.config, Layers: []ocispec.Descriptor{img.layer}}
	m.SchemaVersion = 2
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	img.manifest = push(ocispec.MediaTypeImageManifest, mb)
	if err := img.remote.Tag(ctx, img.manifest, img.manifest.Digest.String()); err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes the image as a layout tar or directory, the layer's
// bytes corrupted when corrupt is set (the writers do not hash blobs: they
// trust the store they copy from).
func (img testImage) writeLayout(t *testing.T, asTar, corrupt bool) string {
	t.Helper()
	ctx := context.Background()
	opener := ocilayout.BlobOpenerFunc(func(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		data := bytes.Clone(img.blobs[d.Digest.String()])
		if corrupt && d.Digest == img.layer.Digest {
			data[len(data)/2] ^= 0x01
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	index, err := ocilayout.NewIndex([]ocilayout.Root{{Desc: img.manifest, Tag: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	blobs := []ocispec.Descriptor{img.manifest, img.config, img.layer}
	if asTar {
		p := filepath.Join(t.TempDir(), "img.tar")
		if _, err := ocilayout.WriteTar(ctx, p, blobs, index, opener, ocilayout.WriteOptions{SkipDigest: true}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := filepath.Join(t.TempDir(), "layout")
	if err := ocilayout.WriteDir(ctx, p, blobs, index, opener, ocilayout.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCorruptBytesRefusedOnEveryPath proves that, now that graph leaves the
// hashing to sources that verify what they serve (the store, the layout
// readers), wrong bytes are still refused on every path a blob takes: the
// copy fails with the source's digest-mismatch error, the destination does
// not get the blob, and the store does not commit it. Each case runs with
// sound bytes first, so that the failure is the corruption's.
func TestCorruptBytesRefusedOnEveryPath(t *testing.T) {
	ctx := context.Background()
	img := newTestImage(t)
	type setup struct {
		src   graph.Source
		st    *store.Store // checked not to hold the layer; may be nil
		close func()
	}
	cases := []struct {
		name    string
		open    func(t *testing.T, corrupt bool) setup
		gather  bool // Gather into the store instead of CopyToRepo
		wantErr error
	}{
		{"registry, no store", func(t *testing.T, corrupt bool) setup {
			var r oras.ReadOnlyTarget = img.remote
			if corrupt {
				r = corrupting{img.remote, img.layer}
			}
			return setup{src: oneRepo{r}}
		}, false, graph.ErrDigestMismatch},
		{"registry through the store", func(t *testing.T, corrupt bool) setup {
			st := openStore(t)
			var r oras.ReadOnlyTarget = img.remote
			if corrupt {
				r = corrupting{img.remote, img.layer}
			}
			return setup{src: oneRepo{st.Cache(r)}, st: st}
		}, false, store.ErrDigestMismatch},
		{"registry through the store, into a layout", func(t *testing.T, corrupt bool) setup {
			st := openStore(t)
			var r oras.ReadOnlyTarget = img.remote
			if corrupt {
				r = corrupting{img.remote, img.layer}
			}
			return setup{src: oneRepo{st.Cache(r)}, st: st}
		}, true, store.ErrDigestMismatch},
		{"layout tar", func(t *testing.T, corrupt bool) setup {
			l, err := ocilayout.OpenTar(ctx, img.writeLayout(t, true, corrupt))
			if err != nil {
				t.Fatal(err)
			}
			return setup{src: oneRepo{l}, close: func() { l.Close() }}
		}, false, ocilayout.ErrDigestMismatch},
		{"layout tar, into a layout", func(t *testing.T, corrupt bool) setup {
			l, err := ocilayout.OpenTar(ctx, img.writeLayout(t, true, corrupt))
			if err != nil {
				t.Fatal(err)
			}
			return setup{src: oneRepo{l}, st: openStore(t), close: func() { l.Close() }}
		}, true, ocilayout.ErrDigestMismatch},
		{"layout directory", func(t *testing.T, corrupt bool) setup {
			l, err := ocilayout.OpenDir(ctx, img.writeLayout(t, false, corrupt))
			if err != nil {
				t.Fatal(err)
			}
			return setup{src: oneRepo{l}, close: func() { l.Close() }}
		}, false, ocilayout.ErrDigestMismatch},
	}
	for _, tc := range cases {
		for _, corrupt := range []bool{false, true} {
			name := tc.name + "/sound"
			if corrupt {
				name = tc.name + "/corrupt"
			}
			t.Run(name, func(t *testing.T) {
				s := tc.open(t, corrupt)
				if s.close != nil {
					defer s.close()
				}
				roots := []graph.RootSpec{{Ref: "reg.test/app@" + img.manifest.Digest.String()}}
				g, err := graph.Discover(ctx, s.src, roots, graph.DiscoverOptions{})
				if err != nil {
					t.Fatalf("Discover: %v", err)
				}
				var has func(ocispec.Descriptor) bool
				if tc.gather {
					_, err = graph.Gather(ctx, s.src, g, s.st, graph.GatherOptions{SourceFillsLocal: s.st != nil && !isLayout(s.src)})
					has = func(d ocispec.Descriptor) bool { ok, _ := s.st.Exists(ctx, d); return ok }
				} else {
					dst := &trustingTarget{Target: memory.New(), blobs: map[string][]byte{}}
					_, err = graph.CopyToRepo(ctx, s.src, g, dst, graph.CopyOptions{DestRepo: "dst.test/app"})
					has = func(d ocispec.Descriptor) bool { ok, _ := dst.Exists(ctx, d); return ok }
				}
				if !corrupt {
					if err != nil {
						t.Fatalf("copy of sound bytes: %v", err)
					}
					if !has(img.layer) {
						t.Fatal("the layer did not arrive")
					}
					return
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("copy of corrupt bytes: %v, want an error matching %v", err, tc.wantErr)
				}
				if has(img.layer) {
					t.Error("the destination holds the corrupt layer")
				}
				if s.st != nil {
					if ok, _ := s.st.Exists(ctx, img.layer); ok {
						t.Error("the store committed the corrupt layer")
					}
				}
			})
		}
	}
}

// trustingTarget is a destination that stores blobs without checking them
// (manifests go to the memory store, which tags them), so that only the
// copy's own verification stands between wrong bytes and the destination.
type trustingTarget struct {
	oras.Target
	mu    sync.Mutex
	blobs map[string][]byte
}

func (d *trustingTarget) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if desc.MediaType == ocispec.MediaTypeImageManifest {
		return d.Target.Push(ctx, desc, r)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.blobs[desc.Digest.String()] = data
	d.mu.Unlock()
	return nil
}

func (d *trustingTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	d.mu.Lock()
	_, ok := d.blobs[desc.Digest.String()]
	d.mu.Unlock()
	if ok {
		return true, nil
	}
	return d.Target.Exists(ctx, desc)
}

func isLayout(src graph.Source) bool {
	t, _ := src.Repository(context.Background(), "")
	switch t.(type) {
	case *ocilayout.Tar, *ocilayout.Dir:
		return true
	}
	return false
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// changing serves the manifest bad with one byte flipped once changed is
// set, and counts those reads: a registry or a disk whose content changed
// between discovery and the copy.
type changing struct {
	oras.ReadOnlyTarget
	bad     ocispec.Descriptor
	changed *atomic.Bool
	asked   *atomic.Int32
}

func (c changing) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if desc.Digest != c.bad.Digest || !c.changed.Load() {
		return c.ReadOnlyTarget.Fetch(ctx, desc)
	}
	c.asked.Add(1)
	return corrupting{c.ReadOnlyTarget, c.bad}.Fetch(ctx, desc)
}

// TestManifestChangedAfterDiscoveryNotCopied proves that the copy takes
// the manifests Discover verified from memory: when the source serves other
// bytes for a manifest after discovery, the copy neither asks for them nor
// mixes them in, and the destination (a registry, or the store of a
// layout) gets the bytes discovered.
func TestManifestChangedAfterDiscoveryNotCopied(t *testing.T) {
	ctx := context.Background()
	img := newTestImage(t)
	sound := img.blobs[img.manifest.Digest.String()]
	cases := []struct {
		name     string
		throughS bool // the source is read through a store
		gather   bool // Gather into a store instead of CopyToRepo
	}{
		{"registry, no store", false, false},
		{"registry through the store", true, false},
		{"registry, no store, into a layout", false, true},
		{"registry through the store, into a layout", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var changed atomic.Bool
			var asked atomic.Int32
			var r oras.ReadOnlyTarget = changing{img.remote, img.manifest, &changed, &asked}
			st := openStore(t)
			if tc.throughS {
				r = st.Cache(r)
			}
			src := oneRepo{r}
			roots := []graph.RootSpec{{Ref: "reg.test/app@" + img.manifest.Digest.String()}}
			g, err := graph.Discover(ctx, src, roots, graph.DiscoverOptions{})
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			changed.Store(true)
			var got []byte
			if tc.gather {
				_, err = graph.Gather(ctx, src, g, st, graph.GatherOptions{SourceFillsLocal: tc.throughS})
				if err == nil {
					got, err = content.FetchAll(ctx, st, img.manifest)
				}
			} else {
				dst := &trustingTarget{Target: memory.New(), blobs: map[string][]byte{}}
				_, err = graph.CopyToRepo(ctx, src, g, dst, graph.CopyOptions{DestRepo: "dst.test/app"})
				if err == nil {
					got, err = content.FetchAll(ctx, dst, img.manifest)
				}
			}
			if err != nil {
				t.Fatalf("copy: %v", err)
			}
			if !bytes.Equal(got, sound) {
				t.Errorf("the destination holds other bytes for the manifest")
			}
			if n := asked.Load(); n != 0 {
				t.Errorf("the source was asked %d times for the manifest after discovery, want 0", n)
			}
		})
	}
}
