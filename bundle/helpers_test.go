package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// entry describes one tar entry built by the tests.
type entry struct {
	name     string
	typ      byte // 0 means a regular file
	body     string
	linkname string
	mode     int64 // 0 means 0644 for files, 0755 for directories
}

func file(name, body string) entry { return entry{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) entry        { return entry{name: name, typ: tar.TypeDir} }
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, linkname: target}
}
func hardlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeLink, linkname: target}
}

// makeTar writes entries as an uncompressed tar.
func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Typeflag: typ, Name: e.name, Linkname: e.linkname, Mode: mode}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// memLayer is a layer served from memory.
func memLayer(mediaType string, blob []byte) bundle.Layer {
	return bundle.Layer{
		MediaType: mediaType,
		Digest:    digest.FromBytes(blob),
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(blob)), nil
		},
	}
}

func tarLayer(t testing.TB, entries ...entry) bundle.Layer {
	t.Helper()
	return memLayer(ocispec.MediaTypeImageLayerGzip, gzipBytes(t, makeTar(t, entries...)))
}

// snapshot records every path below root with its type, mode and content,
// to show that nothing changed.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case info.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			desc += " " + string(data)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) string {
	var lines []string
	for k, v := range a {
		if b[k] != v {
			lines = append(lines, "- "+k+": "+v)
		}
	}
	for k, v := range b {
		if a[k] != v {
			lines = append(lines, "+ "+k+": "+v)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// symlinksStayInside walks dir and fails for a symbolic link that resolves
// outside it, following links on the real filesystem (independent of the
// package's own resolver).
func symlinksStayInside(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		if reason := escapes(dir, p); reason != "" {
			t.Errorf("symbolic link %s escapes %s: %s", p, dir, reason)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// escapes resolves link inside root component by component; it returns why
// the resolution leaves root, or "".
func escapes(root, link string) string {
	rel, _ := filepath.Rel(root, link)
	stack := strings.Split(filepath.Dir(rel), string(filepath.Separator))
	if filepath.Dir(rel) == "." {
		stack = nil
	}
	target, err := os.Readlink(link)
	if err != nil {
		return err.Error()
	}
	if filepath.IsAbs(target) {
		return "absolute target " + target
	}
	pending := strings.Split(target, "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "goes above the root via " + target
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := filepath.Join(append([]string{root}, append(stack, c)...)...)
		fi, err := os.Lstat(cur)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if hops++; hops > 255 {
				return "loop"
			}
			next, _ := os.Readlink(cur)
			if filepath.IsAbs(next) {
				return "absolute target " + next
			}
			pending = append(strings.Split(next, "/"), pending...)
			continue
		}
		stack = append(stack, c)
	}
	return ""
}
