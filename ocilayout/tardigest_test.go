package ocilayout

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// memoDigests is a TarDigests in memory that counts its lookups.
type memoDigests struct {
	mu      sync.Mutex
	m       map[digest.Digest]digest.Digest
	lookups int
}

func (m *memoDigests) TarDigest(key digest.Digest) (digest.Digest, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	d, ok := m.m[key]
	return d, ok
}

func (m *memoDigests) RememberTarDigest(key, tar digest.Digest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[key] = tar
}

func fileDigest(t *testing.T, p string) digest.Digest {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h)
}

// TestWriteTarRemembersDigest: the first tar of some blobs and index is
// hashed and its digest remembered under TarKey; writing the same tar again
// returns the remembered digest without hashing (a planted digest shows it),
// and another index is another key.
func TestWriteTarRemembersDigest(t *testing.T) {
	ctx := context.Background()
	layer := randomBytes(3, 100_000)
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	cfg := []byte(`{}`)
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: 2}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layerDesc}}
	m.SchemaVersion = 2
	mb := mustJSON(t, m)
	man := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	src := streamOpener{layerDesc.Digest: layer, cfgDesc.Digest: cfg, man.Digest: mb}
	blobs := []ocispec.Descriptor{layerDesc, cfgDesc, man, layerDesc} // a duplicate: same key
	idx, err := NewIndex([]Root{{Desc: man, Tag: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	memo := &memoDigests{m: map[digest.Digest]digest.Digest{}}
	dir := t.TempDir()

	first := filepath.Join(dir, "first.tar")
	sum, err := WriteTar(ctx, first, blobs, idx, src, WriteOptions{Digests: memo})
	if err != nil {
		t.Fatal(err)
	}
	if want := fileDigest(t, first); sum != want {
		t.Fatalf("first write returned %s, the file hashes to %s", sum, want)
	}
	key, err := TarKey(blobs[:3], idx)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := memo.m[key]; !ok || got != sum {
		t.Fatalf("remembered %v under the key, want %s", memo.m, sum)
	}

	second := filepath.Join(dir, "second.tar")
	again, err := WriteTar(ctx, second, blobs[:3], idx, src, WriteOptions{Digests: memo})
	if err != nil || again != sum || fileDigest(t, second) != sum {
		t.Fatalf("second write = %s, %v; want %s and the same bytes", again, err, sum)
	}

	// A planted digest is returned as it is: the tar was not hashed.
	planted := digest.FromString("planted")
	memo.m[key] = planted
	if got, err := WriteTar(ctx, filepath.Join(dir, "third.tar"), blobs, idx, src, WriteOptions{Digests: memo}); err != nil || got != planted {
		t.Errorf("write with a remembered digest = %s, %v; want the remembered %s", got, err, planted)
	}
	// Not a sha256 digest: ignored, the tar is hashed.
	memo.m[key] = "md5:0123"
	if got, err := WriteTar(ctx, filepath.Join(dir, "fourth.tar"), blobs, idx, src, WriteOptions{Digests: memo}); err != nil || got != sum {
		t.Errorf("write with an invalid remembered digest = %s, %v; want %s", got, err, sum)
	}

	// Another index (another tag): another key.
	idx2, err := NewIndex([]Root{{Desc: man, Tag: "v2"}})
	if err != nil {
		t.Fatal(err)
	}
	if key2, _ := TarKey(blobs, idx2); key2 == key {
		t.Error("another index.json gives the same key")
	}
	// SkipDigest wins over the memo.
	lookups := memo.lookups
	if got, err := WriteTar(ctx, filepath.Join(dir, "fifth.tar"), blobs, idx, src, WriteOptions{Digests: memo, SkipDigest: true}); err != nil || got != "" || memo.lookups != lookups {
		t.Errorf("SkipDigest write = %q, %v, %d lookups; want no digest, no lookup", got, err, memo.lookups-lookups)
	}
}
