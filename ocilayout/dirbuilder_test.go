package ocilayout

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dirFiles maps every regular file under dir (slash-separated relative
// paths) to its content.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for name, b := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, b) {
			t.Errorf("%s: present %v, same content %v", name, ok, bytes.Equal(g, b))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: not expected", name)
		}
	}
}

// Blobs written one by one, in reverse order and twice each, give the
// directory WriteDir gives; index.json appears only at Commit, and OnBlob
// hears of each blob once.
func TestDirBuilderMatchesWriteDir(t *testing.T) {
	ctx := context.Background()
	fx := goldenInput(t)
	want := filepath.Join(t.TempDir(), "want")
	if err := WriteDir(ctx, want, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	heard := map[digest.Digest]int{}
	dir := filepath.Join(t.TempDir(), "got")
	b, err := CreateDir(ctx, dir, fx.blobs, fx.index, WriteOptions{OnBlob: func(d ocispec.Descriptor) {
		mu.Lock()
		heard[d.Digest]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if key, _ := TarKey(fx.blobs, fx.index); b.Key() != key {
		t.Errorf("Key %s, want TarKey %s", b.Key(), key)
	}
	src := newFileOpener(t, fx.data)
	for _, d := range slices.Backward(fx.blobs[1:]) { // the first is left to Commit
		for range 2 {
			if err := b.WriteBlob(ctx, d, src); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("index.json before Commit: %v", err)
	}
	if err := b.Commit(ctx, src); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, dirFiles(t, dir), dirFiles(t, want))
	for _, d := range fx.blobs {
		if heard[d.Digest] != 1 {
			t.Errorf("OnBlob heard of %s %d times, want 1", d.Digest, heard[d.Digest])
		}
	}
	if err := b.WriteBlob(ctx, fx.blobs[0], src); !errors.Is(err, ErrBuilderClosed) {
		t.Errorf("WriteBlob after Commit: %v, want ErrBuilderClosed", err)
	}
	if err := b.Commit(ctx, src); !errors.Is(err, ErrBuilderClosed) {
		t.Errorf("second Commit: %v, want ErrBuilderClosed", err)
	}
	b.Abort() // after Commit: keeps everything
	sameFiles(t, dirFiles(t, dir), dirFiles(t, want))
}

func TestDirBuilderRefusesOtherBlobs(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	b, err := CreateDir(ctx, t.TempDir(), fx.blobs, fx.index, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	other := ocispec.Descriptor{Digest: digest.FromString("other"), Size: 5}
	if err := b.WriteBlob(ctx, other, streamOpener(fx.data)); !errors.Is(err, ErrUnknownBlob) {
		t.Errorf("unknown blob: %v, want ErrUnknownBlob", err)
	}
	wrong := fx.appLay
	wrong.Size++
	if err := b.WriteBlob(ctx, wrong, streamOpener(fx.data)); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("other size: %v, want ErrSizeMismatch", err)
	}
}

// Abort, and a Commit that fails, remove what the builder added and
// nothing else: a new directory goes entirely; in a layout already there,
// its files stay as they were.
func TestDirBuilderLeavesNothingOnFailure(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	half := func(t *testing.T, b *DirBuilder) {
		for _, d := range fx.blobs[:len(fx.blobs)/2] {
			if err := b.WriteBlob(ctx, d, streamOpener(fx.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ends := map[string]func(t *testing.T, b *DirBuilder){
		"abort": func(t *testing.T, b *DirBuilder) { b.Abort() },
		"failed commit": func(t *testing.T, b *DirBuilder) {
			src := wrongOpener{streamOpener(fx.data), fx.blobs[len(fx.blobs)-1].Digest, []byte("x"), false}
			if err := b.Commit(ctx, src); !errors.Is(err, ErrSizeMismatch) {
				t.Errorf("Commit: %v, want ErrSizeMismatch", err)
			}
		},
	}
	for name, end := range ends {
		t.Run(name+"/new directory", func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "new", "nested")
			b, err := CreateDir(ctx, dir, fx.blobs, fx.index, WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			half(t, b)
			end(t, b)
			if left := listDir(t, parent); len(left) != 0 {
				t.Errorf("left in %s: %v, want nothing (the builder created new/nested)", parent, left)
			}
		})
		t.Run(name+"/existing layout", func(t *testing.T) {
			dir := t.TempDir()
			// A layout holding the first blob (whose index.json names it)
			// and a file of another tool.
			first := fx.blobs[0]
			idx := ocispec.Index{Manifests: []ocispec.Descriptor{first}}
			if err := WriteDir(ctx, dir, []ocispec.Descriptor{first}, idx, streamOpener(fx.data), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
			// A file of the wrong size where the second blob goes: the
			// builder replaces it, and must not remove it on failure.
			odd := filepath.Join(dir, filepath.FromSlash(blobPath(fx.blobs[1].Digest)))
			if err := os.WriteFile(odd, []byte("not this blob"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := dirFiles(t, dir)
			b, err := CreateDir(ctx, dir, fx.blobs, fx.index, WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			half(t, b)
			end(t, b)
			after := dirFiles(t, dir)
			oddName := filepath.ToSlash(blobPath(fx.blobs[1].Digest))
			if _, ok := after[oddName]; !ok {
				t.Errorf("%s, there before the builder, was removed", oddName)
			}
			delete(after, oddName) // replaced by the blob: either content is fine
			delete(before, oddName)
			sameFiles(t, after, before)
		})
	}
}

// An index.json that Commit could not merge fails CreateDir, before any
// blob is written.
func TestCreateDirRefusesBadIndex(t *testing.T) {
	fx := newFixture(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateDir(context.Background(), dir, fx.blobs, fx.index, WriteOptions{}); !errors.Is(err, ErrMalformedIndex) {
		t.Errorf("CreateDir over a malformed index.json: %v, want ErrMalformedIndex", err)
	}
}
