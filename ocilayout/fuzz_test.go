package ocilayout

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fuzzMax bounds fuzz inputs: the readers only ever see small files here.
const fuzzMax = 1 << 20

// exercise reads everything a reader offers; it must never panic.
func exercise(ctx context.Context, t interface {
	Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error)
}, blobs []BlobInfo) {
	for _, bi := range blobs {
		rc, err := t.Fetch(ctx, ocispec.Descriptor{Digest: bi.Digest, Size: bi.Size})
		if err == nil {
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	}
}

func fuzzFile(t *testing.T, data []byte) string {
	p := filepath.Join(t.TempDir(), "f.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func FuzzOpenTar(f *testing.F) {
	fx := newFixture(f)
	good, err := os.ReadFile(writeFixtureTar(f, fx))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:1024])
	for _, p := range []string{"testdata/imgpkg-bundle.tar", "testdata/imgpkg-image.tar"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMax {
			t.Skip()
		}
		ctx := context.Background()
		p := fuzzFile(t, data)
		Detect(ctx, p)
		lt, err := OpenTar(ctx, p)
		if err != nil {
			return
		}
		defer lt.Close()
		exercise(ctx, lt, lt.Blobs())
		for _, r := range lt.Roots() {
			lt.Resolve(ctx, r.RefName())
			lt.Resolve(ctx, r.Desc.Digest.String())
		}
		if _, err := lt.Verify(ctx); err != nil {
			t.Fatalf("Verify I/O error on a file that opened: %v", err)
		}
	})
}

func FuzzOpenImgpkgTar(f *testing.F) {
	for _, p := range []string{"testdata/imgpkg-bundle.tar", "testdata/imgpkg-image.tar"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1024])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMax {
			t.Skip()
		}
		ctx := context.Background()
		p := fuzzFile(t, data)
		Detect(ctx, p)
		it, err := OpenImgpkgTar(ctx, p)
		if err != nil {
			return
		}
		defer it.Close()
		exercise(ctx, it, it.Blobs())
		for _, r := range it.Roots() {
			it.Resolve(ctx, r.RefName())
		}
		if _, err := it.Verify(ctx); err != nil {
			t.Fatalf("Verify I/O error on a file that opened: %v", err)
		}
	})
}
