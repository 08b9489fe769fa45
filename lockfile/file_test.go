package lockfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadImagesLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "images.yml")
	lock := &ImagesLock{Images: []ImageRef{{Image: "reg.io/a@sha256:" + hexA, Annotations: map[string]string{"k": "v"}}}}
	data, err := lock.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, data); err != nil {
		t.Fatal(err)
	}
	got, err := ReadImagesLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, lock) {
		t.Fatalf("got %+v, want %+v", got, lock)
	}

	// Errors in the file name the path.
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte(header+"images:\n- image: nginx:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadImagesLock(bad)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != bad || fe.Field != "images[0].image" {
		t.Fatalf("ReadImagesLock(bad) = %v, want FieldError for %s images[0].image", err, bad)
	}

	// A missing file is an I/O error, not ErrInvalid.
	_, err = ReadImagesLock(filepath.Join(dir, "missing.yml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist and not ErrInvalid", err)
	}
}

func TestReadBundleLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bundle.lock.yml")
	in := "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\nbundle:\n  image: reg.io/b@sha256:" + hexA + "\n  tag: v1\n"
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadBundleLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (BundleRef{Image: "reg.io/b@sha256:" + hexA, Tag: "v1"}); got.Bundle != want {
		t.Fatalf("got %+v, want %+v", got.Bundle, want)
	}
}

func TestReadOversized(t *testing.T) {
	dir := t.TempDir()
	// A sparse file: larger than the limit without writing 16 MiB.
	big := filepath.Join(dir, "big.yml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()

	exact := filepath.Join(dir, "exact.yml")
	prefix := header + "images: []\n#"
	if err := os.WriteFile(exact, append([]byte(prefix), make([]byte, MaxFileSize-len(prefix))...), 0o644); err != nil {
		t.Fatal(err)
	}

	readers := map[string]func(string) error{
		"ReadImagesLock": func(p string) error { _, err := ReadImagesLock(p); return err },
		"ReadBundleLock": func(p string) error { _, err := ReadBundleLock(p); return err },
		"ReadFile":       func(p string) error { _, err := ReadFile(p); return err },
	}
	for name, read := range readers {
		t.Run(name, func(t *testing.T) {
			err := read(big)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s(big) = %v, want a *FieldError matching ErrInvalid", name, err)
			}
			if fe.File != big || !strings.Contains(err.Error(), "too large") || !strings.Contains(err.Error(), "16 MiB") {
				t.Fatalf("message %q should name %s and the 16 MiB limit", err, big)
			}
		})
	}

	// Exactly at the limit is read (and then fails only on content, here on the NUL bytes).
	data, err := ReadFile(exact)
	if err != nil || len(data) != MaxFileSize {
		t.Fatalf("ReadFile(exact) = %d bytes, %v; want %d bytes", len(data), err, MaxFileSize)
	}

	// Parse refuses oversized input too.
	_, err = ParseImagesLock("mem.yml", make([]byte, MaxFileSize+1))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != "mem.yml" || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("ParseImagesLock(oversized) = %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // nil: no file before
	}{
		{name: "new file"},
		{name: "replaces existing", existing: []byte("old content that is longer than the new one\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "lock.yml")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, []byte("new\n")); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != "new\n" {
				t.Fatalf("content %q, %v; want %q", got, err, "new\n")
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := info.Mode().Perm(); perm != 0o644 {
				t.Fatalf("mode %v, want 0644", perm)
			}
			assertOnlyFiles(t, dir, "lock.yml")
		})
	}
}

func TestWriteFileErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the rename fails after the temp file was written.
	target := filepath.Join(dir, "lock.yml")
	if err := os.MkdirAll(filepath.Join(target, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("x")); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	assertOnlyFiles(t, dir, "lock.yml")

	// Missing parent directory.
	if err := WriteFile(filepath.Join(dir, "nope", "lock.yml"), []byte("x")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v, want fs.ErrNotExist", err)
	}
	assertOnlyFiles(t, dir, "lock.yml")
}

func TestWriteFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("lock.yml", []byte("x")); err != nil {
		t.Fatal(err)
	}
	assertOnlyFiles(t, dir, "lock.yml")
}

func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, names) {
		t.Fatalf("directory holds %q, want %q (temporary file left behind?)", got, names)
	}
}
