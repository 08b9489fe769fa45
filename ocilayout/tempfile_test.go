//go:build unix

package ocilayout

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// leaveTemp creates the file dir/name holding junk; with locked it also
// opens it and takes its flock, like a live writer, until the test ends.
func leaveTemp(t *testing.T, dir, name string, locked bool) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("partial tar of a killed run"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !locked {
		return
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
}

// exists reports whether p exists (without following a symlink).
func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestWriteTarRemovesStaleTemps(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	ref := filepath.Join(t.TempDir(), "ref.tar")
	refDigest, err := WriteTar(ctx, ref, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		temp   string
		locked bool
		kept   bool
	}{
		{"stale, os.CreateTemp suffix", ".out.tar.tmp-123456", false, false},
		{"stale, hex suffix", ".out.tar.tmp-0123456789abcdef", false, false},
		{"live writer holds it", ".out.tar.tmp-987654", true, true},
		{"other target", ".other.tar.tmp-123456", false, true},
		{"target sharing the prefix", ".out.tarx.tmp-123456", false, true},
		{"temporary of out.tar.tmp-1", ".out.tar.tmp-1.tmp-2", false, true},
		{"no leading dot", "out.tar.tmp-123456", false, true},
		{"empty suffix", ".out.tar.tmp-", false, true},
		{"not a temporary name", ".out.tar.bak", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			leaveTemp(t, dir, tt.temp, tt.locked)
			out := filepath.Join(dir, "out.tar")
			dg, err := WriteTar(ctx, out, fx.blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if dg != refDigest {
				t.Errorf("WriteTar returned %s, want %s", dg, refDigest)
			}
			got, err := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("out.tar differs from the reference tar (%d vs %d bytes, %v)", len(got), len(want), err)
			}
			if kept := exists(t, filepath.Join(dir, tt.temp)); kept != tt.kept {
				t.Errorf("%s kept = %v, want %v", tt.temp, kept, tt.kept)
			}
			wantNames := []string{"out.tar"}
			if tt.kept {
				wantNames = append(wantNames, tt.temp)
			}
			slices.Sort(wantNames)
			if names := listDir(t, dir); !slices.Equal(names, wantNames) {
				t.Errorf("directory holds %v, want %v", names, wantNames)
			}
		})
	}
}

func TestWriteTarKeepsStaleTempDirectory(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, ".out.tar.tmp-42")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t)
	if _, err := WriteTar(context.Background(), filepath.Join(dir, "out.tar"), fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{SkipDigest: true}); err != nil {
		t.Fatal(err)
	}
	if !exists(t, sub) {
		t.Errorf("the directory %s was removed", sub)
	}
}

// TestWriteTarLocksItsTemp checks that a writer's temporary file is locked
// while it writes, so that a second WriteTar of the same path started in
// the middle leaves it alone and both complete.
func TestWriteTarLocksItsTemp(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.tar")
	var inner error
	var tempsDuring []string
	calls := 0
	onBlob := func(ocispec.Descriptor) {
		calls++
		if calls != 1 {
			return
		}
		for _, n := range listDir(t, dir) {
			if strings.HasPrefix(n, ".out.tar.tmp-") {
				tempsDuring = append(tempsDuring, n)
				f, err := os.Open(filepath.Join(dir, n))
				if err != nil {
					t.Error(err)
					continue
				}
				if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
					t.Errorf("flock of the writer's temporary file %s = %v, want EWOULDBLOCK", n, err)
				}
				f.Close()
			}
		}
		_, inner = WriteTar(ctx, out, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{})
	}
	dg, err := WriteTar(ctx, out, fx.blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{OnBlob: onBlob})
	if err != nil {
		t.Fatalf("the outer WriteTar: %v", err)
	}
	if inner != nil {
		t.Fatalf("the WriteTar started meanwhile: %v", inner)
	}
	if len(tempsDuring) != 1 {
		t.Errorf("temporary files while writing: %v, want one", tempsDuring)
	}
	if dg == "" {
		t.Error("empty digest")
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"out.tar"}) {
		t.Errorf("directory holds %v, want only out.tar", names)
	}
	lt, err := OpenTar(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	if problems, err := lt.Verify(ctx); err != nil || len(problems) != 0 {
		t.Errorf("Verify = %v, %v", problems, err)
	}
}

func TestWriteDirRemovesStaleTemps(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	dir := filepath.Join(t.TempDir(), "layout")
	blobDir := filepath.Join("blobs", "sha256")
	hexName := fx.app.Digest.Encoded()
	temps := []struct {
		name   string
		locked bool
		kept   bool
	}{
		{".index.json.tmp-0123456789abcdef", false, false},
		{".oci-layout.tmp-0123456789abcdef", false, false},
		{filepath.Join(blobDir, "."+hexName+".tmp-0123456789abcdef"), false, false},
		{filepath.Join(blobDir, ".0000.tmp-1"), false, false},
		{filepath.Join(blobDir, "."+hexName+".tmp-fedcba9876543210"), true, true},
		{".index.json.tmp-fedcba9876543210", true, true},
		{".notes.txt.tmp-1", false, true},
		{filepath.Join("blobs", ".sha256.tmp-1"), false, true},
	}
	for _, tt := range temps {
		leaveTemp(t, dir, tt.name, tt.locked)
	}
	if err := WriteDir(ctx, dir, fx.blobs, fx.index, newFileOpener(t, fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range temps {
		if kept := exists(t, filepath.Join(dir, tt.name)); kept != tt.kept {
			t.Errorf("%s kept = %v, want %v", tt.name, kept, tt.kept)
		}
	}
	d, err := OpenDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if problems, err := d.Verify(ctx); err != nil || len(problems) != 0 {
		t.Errorf("Verify = %v, %v", problems, err)
	}
	if got := len(d.Index().Manifests); got != len(fx.index.Manifests) {
		t.Errorf("index.json lists %d manifests, want %d", got, len(fx.index.Manifests))
	}
}

func TestTempTarget(t *testing.T) {
	tests := []struct {
		name, target string
		ok           bool
	}{
		{".out.tar.tmp-123", "out.tar", true},
		{".a.tmp-1.tmp-2", "a.tmp-1", true},
		{".out.tar.tmp-", "", false},
		{"out.tar.tmp-1", "", false},
		{"..tmp-1", "", false},
		{".tmp-1", "", false},
		{".out.tar", "", false},
	}
	for _, tt := range tests {
		target, ok := tempTarget(tt.name)
		if target != tt.target || ok != tt.ok {
			t.Errorf("tempTarget(%q) = %q, %v; want %q, %v", tt.name, target, ok, tt.target, tt.ok)
		}
	}
}
