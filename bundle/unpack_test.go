package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/bundle"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// currentUmask reads the process umask (tests in this file do not run in
// parallel).
func currentUmask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}

// workspace is base/{outside/secret, out/old.txt}: out is the directory to
// replace, outside is what must never change.
func workspace(t *testing.T) (base, out string) {
	t.Helper()
	base = t.TempDir()
	out = filepath.Join(base, "out")
	for _, d := range []string{"outside", "out", "out/olddir"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"outside/secret": "secret", "out/old.txt": "old", "out/olddir/x": "x"} {
		if err := os.WriteFile(filepath.Join(base, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return base, out
}

func TestUnpackBuiltBundle(t *testing.T) {
	img := build(t, []string{vectorInput(t, "bundle")}, bundle.BuildOptions{Bundle: true})
	base, out := workspace(t)
	layer := bundle.Layer{
		MediaType: img.LayerDesc.MediaType,
		Digest:    img.LayerDesc.Digest,
		Open:      func(context.Context) (io.ReadCloser, error) { return img.OpenLayer() },
	}
	if err := bundle.Unpack(context.Background(), out, []bundle.Layer{layer}); err != nil {
		t.Fatal(err)
	}
	umask := currentUmask()
	want := map[string]struct {
		mode fs.FileMode
		body string
	}{
		"README.md":                   {0o666 &^ umask, ""},
		".imgpkg/images.yml":          {0o666 &^ umask, ""},
		"config/app.yml":              {0o666 &^ umask, ""},
		"config/overlays/values.star": {0o777 &^ umask, ""},
		".imgpkg":                     {fs.ModeDir | 0o777&^umask, ""},
		"config":                      {fs.ModeDir | 0o777&^umask, ""},
	}
	for name, w := range want {
		p := filepath.Join(out, filepath.FromSlash(name))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode() != w.mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), w.mode)
		}
		if fi.Mode().IsRegular() {
			got, _ := os.ReadFile(p)
			src, _ := os.ReadFile(filepath.Join(vectorDir, "bundle", filepath.FromSlash(name)))
			if !bytes.Equal(got, src) {
				t.Errorf("%s: content %q, want %q", name, got, src)
			}
			if w.body != "" && string(got) != w.body {
				t.Errorf("%s: content %q", name, got)
			}
			if fi.ModTime().Unix() != 0 {
				t.Errorf("%s: mtime %v, want the entry's (epoch)", name, fi.ModTime())
			}
		}
	}
	// The old contents are gone, nothing else is left next to out.
	if _, err := os.Lstat(filepath.Join(out, "old.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old.txt survived the replacement: %v", err)
	}
	entries, _ := os.ReadDir(base)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "out,outside" {
		t.Errorf("left next to out: %v", names)
	}

	// Pushing the pulled directory again gives the same bundle.
	again := build(t, []string{out}, bundle.BuildOptions{Bundle: true})
	if again.ManifestDesc.Digest != vectorCases[0].manifestDigest {
		t.Errorf("re-push of the pulled bundle: %s, want %s", again.ManifestDesc.Digest, vectorCases[0].manifestDigest)
	}
}

func TestUnpackCreatesMissingDir(t *testing.T) {
	base := t.TempDir()
	out := filepath.Join(base, "a", "b", "out")
	if err := bundle.Unpack(context.Background(), out, []bundle.Layer{tarLayer(t, file("f", "1"))}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "f")); string(got) != "1" {
		t.Errorf("f = %q", got)
	}

	// On error the parents created for it are removed again.
	out2 := filepath.Join(base, "c", "d", "out")
	err := bundle.Unpack(context.Background(), out2, []bundle.Layer{tarLayer(t, file("../x", "1"))})
	if !errors.Is(err, bundle.ErrUnsafePath) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "c")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("parent created for a failed unpack was left: %v", err)
	}
}

func TestUnpackLayersAndWhiteouts(t *testing.T) {
	_, out := workspace(t)
	l1 := tarLayer(t,
		dir("a"), file("a/x", "x1"), file("a/y", "y1"),
		dir("b"), file("b/old", "o"), dir("b/sub"), file("b/sub/deep", "d"),
		file("c", "c1"),
		dir("d"), file("d/keep", "k"))
	l2 := memLayer(ocispec.MediaTypeImageLayerZstd, zstdBytes(t, makeTar(t,
		file("a/.wh.x", ""),
		file("b/new", "n"),
		file("b/sub/fresh", "f"),   // written into a lower directory, then
		file("b/.wh..wh..opq", ""), // the opaque marker hides the rest of b
		file("c", "c2"),            // file replaced
		dir("d"),                   // directory merged
		file("e/implicit", "i"),    // parent created implicitly
		file(".wh.missing", ""),
	)))
	l3 := memLayer(ocispec.MediaTypeImageLayer, makeTar(t,
		file("a", "now a file"), // directory replaced by a file
		hardlink("d/link", "d/keep"),
		symlink("s", "e/implicit"),
	))
	if err := bundle.Unpack(context.Background(), out, []bundle.Layer{l1, l2, l3}); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, out)
	want := map[string]string{
		"a":           "now a file",
		"b/new":       "n",
		"b/sub/fresh": "f",
		"c":           "c2",
		"d/keep":      "k",
		"d/link":      "k",
		"e/implicit":  "i",
	}
	for name, body := range want {
		desc, ok := got[filepath.FromSlash(name)]
		if !ok || !strings.HasSuffix(desc, " "+body) {
			t.Errorf("%s: %q, want content %q", name, desc, body)
		}
	}
	for _, gone := range []string{"b/old", "b/sub/deep", "a/x", "a/y", "old.txt"} {
		if _, ok := got[filepath.FromSlash(gone)]; ok {
			t.Errorf("%s should have been removed", gone)
		}
	}
	if desc := got["s"]; !strings.HasSuffix(desc, "-> e/implicit") {
		t.Errorf("symlink s: %q", desc)
	}
	a, _ := os.Stat(filepath.Join(out, "d", "keep"))
	b, _ := os.Stat(filepath.Join(out, "d", "link"))
	if !os.SameFile(a, b) {
		t.Error("d/link is not a hard link to d/keep")
	}
}

// badLayerDir holds the malicious layers, one gzip tar per file, written
// from badLayers by `go test ./bundle -run TestBadLayerCorpus -update`.
const badLayerDir = "testdata/bad-layers"

var update = flag.Bool("update", false, "rewrite testdata/bad-layers from badLayers")

// badLayers is the corpus of malicious layers: each file
// testdata/bad-layers/NAME.tar.gz holds a regular file "good" followed by
// entries, and Unpack must refuse it with an error matching want that names
// the entry (names, when set) and the layer's digest.
var badLayers = []struct {
	name    string
	entries []entry
	want    error
	names   string
}{
	{"dotdot-escape", []entry{file("../outside/secret", "pwned")}, bundle.ErrUnsafePath, "../outside/secret"},
	{"nested-dotdot", []entry{dir("a"), file("a/../../outside/new", "x")}, bundle.ErrUnsafePath, "a/../../outside/new"},
	{"dotdot-inside", []entry{file("a/../b", "x")}, bundle.ErrUnsafePath, "a/../b"},
	{"backslash-dotdot", []entry{file(`..\outside\secret`, "pwned")}, bundle.ErrUnsafePath, `..\\outside\\secret`},
	{"absolute-path", []entry{file("/tmp/ferry-absolute-test", "x")}, bundle.ErrUnsafePath, "/tmp/ferry-absolute-test"},
	{"symlink-out", []entry{symlink("link", "../outside"), file("link/secret", "pwned")}, bundle.ErrUnsafePath, "link"},
	{"symlink-absolute", []entry{symlink("link", "/etc")}, bundle.ErrUnsafePath, "link"},
	{"symlink-deep-out", []entry{dir("a"), dir("a/b"), symlink("a/b/l", "../../../outside/secret")}, bundle.ErrUnsafePath, "a/b/l"},
	{"write-through-inside-symlink", []entry{dir("real"), symlink("link", "real"), file("link/f", "x")}, bundle.ErrUnsafePath, "link/f"},
	{"hardlink-out", []entry{hardlink("hl", "../outside/secret")}, bundle.ErrUnsafePath, "hl"},
	{"hardlink-absolute", []entry{hardlink("hl", "/etc/passwd")}, bundle.ErrUnsafePath, "hl"},
	{"hardlink-to-symlink", []entry{symlink("s", "x"), hardlink("hl", "s")}, bundle.ErrUnsafePath, "hl"},
	{"hardlink-through-symlink", []entry{dir("d"), file("d/f", "x"), symlink("s", "d"), hardlink("hl", "s/f")}, bundle.ErrUnsafePath, "hl"},
	{"symlink-chain-link-first", []entry{symlink("a", "b/.."), symlink("b", ".")}, bundle.ErrUnsafePath, `"a"`},
	{"symlink-chain-link-last", []entry{symlink("b", "."), symlink("a", "b/..")}, bundle.ErrUnsafePath, `"a"`},
	{"symlink-loop", []entry{symlink("a", "b"), symlink("b", "a")}, bundle.ErrUnsafePath, `"a"`},
	{"char-device", []entry{{name: "dev", typ: tar.TypeChar}}, bundle.ErrUnsupportedFile, "dev"},
	{"block-device", []entry{{name: "blk", typ: tar.TypeBlock}}, bundle.ErrUnsupportedFile, "blk"},
	{"fifo", []entry{{name: "pipe", typ: tar.TypeFifo}}, bundle.ErrUnsupportedFile, "pipe"},
	{"whiteout-of-parent", []entry{file(".wh...", "")}, bundle.ErrUnsafePath, ".wh..."},
	{"whiteout-through-symlink", []entry{dir("d"), symlink("s", "d"), file("s/.wh.x", "")}, bundle.ErrUnsafePath, "s/.wh.x"},
	{"file-under-a-file", []entry{file("f", "x"), file("f/g", "y")}, bundle.ErrInvalidLayer, "f/g"},
	{"root-is-a-file", []entry{file(".", "x")}, bundle.ErrInvalidLayer, `"."`},
}

// badLayerTar is the uncompressed tar of a corpus layer.
func badLayerTar(t testing.TB, entries []entry) []byte {
	return makeTar(t, append([]entry{file("good", "g")}, entries...)...)
}

// TestBadLayerCorpus unpacks each malicious layer of testdata/bad-layers
// (after a harmless first layer) into a directory that already has content,
// next to a directory that must not change. Unpack must refuse it with the
// expected sentinel error naming the entry and the layer digest, and nothing
// may change: not the output directory, not its parent, not the absolute
// paths an entry names or points at. With -update the files are rewritten
// from badLayers first.
func TestBadLayerCorpus(t *testing.T) {
	if *update {
		if err := os.RemoveAll(badLayerDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(badLayerDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, tc := range badLayers {
			if err := os.WriteFile(filepath.Join(badLayerDir, tc.name+".tar.gz"), gzipBytes(t, badLayerTar(t, tc.entries)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(badLayerDir, "README.md"), []byte(badLayerReadme()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if readme, err := os.ReadFile(filepath.Join(badLayerDir, "README.md")); err != nil || string(readme) != badLayerReadme() {
		t.Errorf("%s/README.md is not what badLayers gives (%v); run with -update", badLayerDir, err)
	}
	files, err := filepath.Glob(filepath.Join(badLayerDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	expected := map[string]bool{"README.md": true}
	for _, tc := range badLayers {
		expected[tc.name+".tar.gz"] = true
	}
	for _, f := range files {
		if !expected[filepath.Base(f)] {
			t.Errorf("%s has no entry in badLayers (run go test ./bundle -run TestBadLayerCorpus -update after adding one)", f)
		}
	}
	for _, tc := range badLayers {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(badLayerDir, tc.name+".tar.gz")
			blob, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bundle -run TestBadLayerCorpus -update)", err)
			}
			// The file is what badLayers says it is.
			if got := gunzip(t, blob); !bytes.Equal(got, badLayerTar(t, tc.entries)) {
				t.Fatalf("%s does not hold the entries badLayers lists (run with -update)", path)
			}
			layer := memLayer(ocispec.MediaTypeImageLayerGzip, blob)

			base, out := workspace(t)
			before := snapshot(t, base)
			outsideBefore := absolutePaths(tc.entries)
			err = bundle.Unpack(context.Background(), out, []bundle.Layer{tarLayer(t, file("first", "1")), layer})
			if err == nil {
				t.Fatal("Unpack succeeded")
			}
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if tc.names != "" && !strings.Contains(err.Error(), tc.names) {
				t.Errorf("error %q does not name entry %s", err, tc.names)
			}
			if !strings.Contains(err.Error(), string(layer.Digest)) {
				t.Errorf("error %q does not name layer %s", err, layer.Digest)
			}
			if diff := diffSnapshots(before, snapshot(t, base)); diff != "" {
				t.Errorf("the filesystem changed:\n%s", diff)
			}
			if after := absolutePaths(tc.entries); after != outsideBefore {
				t.Errorf("absolute paths named by the layer changed:\nbefore %s\nafter  %s", outsideBefore, after)
			}
		})
	}
}

// badLayerReadme is testdata/bad-layers/README.md: the corpus listed from
// badLayers.
func badLayerReadme() string {
	var b strings.Builder
	b.WriteString("# Malicious layers\n\n" +
		"Each file is a gzip tar (an imgpkg layer) holding a regular file `good`, then the entries\n" +
		"listed below. `bundle.Unpack` must refuse it with the error named, mentioning the entry,\n" +
		"and leave the output directory and everything around it as they were.\n\n" +
		"Written from `badLayers` in bundle/unpack_test.go by\n" +
		"`go test ./bundle -run TestBadLayerCorpus -update` (this file too); the normal run reads\n" +
		"the files and fails when a file and the table disagree.\n\n" +
		"| file | entries after `good` | error | names |\n| --- | --- | --- | --- |\n")
	for _, tc := range badLayers {
		var es []string
		for _, e := range tc.entries {
			desc := e.name
			switch e.typ {
			case tar.TypeDir:
				desc += "/"
			case tar.TypeSymlink:
				desc += " -> " + e.linkname
			case tar.TypeLink:
				desc += " => " + e.linkname + " (hard link)"
			case tar.TypeChar:
				desc += " (char device)"
			case tar.TypeBlock:
				desc += " (block device)"
			case tar.TypeFifo:
				desc += " (fifo)"
			}
			es = append(es, "`"+desc+"`")
		}
		fmt.Fprintf(&b, "| `%s.tar.gz` | %s | `%s` | `%s` |\n", tc.name, strings.Join(es, ", "), sentinelName(tc.want), tc.names)
	}
	return b.String()
}

// sentinelName is the Go name of one of bundle's sentinel errors.
func sentinelName(err error) string {
	for name, e := range map[string]error{
		"ErrUnsafePath": bundle.ErrUnsafePath, "ErrUnsupportedFile": bundle.ErrUnsupportedFile, "ErrInvalidLayer": bundle.ErrInvalidLayer,
	} {
		if e == err {
			return "bundle." + name
		}
	}
	return err.Error()
}

// absolutePaths describes (type, size, mtime) every absolute path the
// entries name or point at, to show an Unpack did not touch them.
func absolutePaths(entries []entry) string {
	var b strings.Builder
	for _, e := range entries {
		for _, p := range []string{e.name, e.linkname} {
			if !strings.HasPrefix(p, "/") {
				continue
			}
			fi, err := os.Lstat(p)
			if err != nil {
				fmt.Fprintf(&b, "%s: %v; ", p, errors.Is(err, fs.ErrNotExist))
				continue
			}
			fmt.Fprintf(&b, "%s: %v %d %d; ", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// A link whose target is redirected later is caught by the final check, or
// refused at the first entry that writes through a symlink.
func TestUnpackSymlinkChainAcrossLayers(t *testing.T) {
	base, out := workspace(t)
	before := snapshot(t, base)
	l1 := tarLayer(t, dir("d"), symlink("a", "d/.."))
	l2 := tarLayer(t, file("d", "now a file"), symlink("d", "."))
	err := bundle.Unpack(context.Background(), out, []bundle.Layer{l1, l2})
	if !errors.Is(err, bundle.ErrUnsafePath) || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), string(l1.Digest)) {
		t.Errorf("err = %v, want ErrUnsafePath naming a and layer 1", err)
	}
	if diff := diffSnapshots(before, snapshot(t, base)); diff != "" {
		t.Errorf("the filesystem changed:\n%s", diff)
	}
}

func TestUnpackAllowsInsideSymlinks(t *testing.T) {
	_, out := workspace(t)
	layer := tarLayer(t,
		dir("a"), dir("a/b"), file("a/b/f", "x"),
		symlink("a/b/up", "../../a/b/f"),
		symlink("dangling", "nothing/here"),
		symlink("self", "."),
		symlink("viaself", "self/a"),
	)
	if err := bundle.Unpack(context.Background(), out, []bundle.Layer{layer}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(out, "a", "b", "up")); err != nil || string(got) != "x" {
		t.Errorf("a/b/up: %q %v", got, err)
	}
	symlinksStayInside(t, out)
}

func TestUnpackVerifiesDigest(t *testing.T) {
	base, out := workspace(t)
	before := snapshot(t, base)
	layer := tarLayer(t, file("f", "x"))
	layer.Digest = digest.FromString("something else")
	err := bundle.Unpack(context.Background(), out, []bundle.Layer{layer})
	if !errors.Is(err, bundle.ErrInvalidLayer) || !strings.Contains(err.Error(), string(layer.Digest)) {
		t.Errorf("err = %v, want ErrInvalidLayer naming the digest", err)
	}
	if diff := diffSnapshots(before, snapshot(t, base)); diff != "" {
		t.Errorf("the filesystem changed:\n%s", diff)
	}
}

func TestUnpackRefusesOutputDirs(t *testing.T) {
	base := t.TempDir()
	fileOut := filepath.Join(base, "file")
	if err := os.WriteFile(fileOut, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", ".", "..", "/", "./", "a/..", "../..", "/..", wd, filepath.Dir(wd), fileOut} {
		err := bundle.Unpack(context.Background(), d, []bundle.Layer{tarLayer(t, file("f", "x"))})
		if !errors.Is(err, bundle.ErrUnsafeOutput) {
			t.Errorf("Unpack(%q): err = %v, want ErrUnsafeOutput", d, err)
		}
	}
	if got, _ := os.ReadFile(fileOut); string(got) != "x" {
		t.Errorf("the file output was changed: %q", got)
	}
}

func TestUnpackReplacesSymlinkOutput(t *testing.T) {
	base, _ := workspace(t)
	link := filepath.Join(base, "link")
	if err := os.Symlink("outside", link); err != nil {
		t.Fatal(err)
	}
	if err := bundle.Unpack(context.Background(), link, []bundle.Layer{tarLayer(t, file("f", "x"))}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.IsDir() {
		t.Errorf("link is not a directory now: %v %v", fi, err)
	}
	if got, _ := os.ReadFile(filepath.Join(base, "outside", "secret")); string(got) != "secret" {
		t.Error("the symlink's target was touched")
	}
}

func TestUnpackCanceled(t *testing.T) {
	base, out := workspace(t)
	before := snapshot(t, base)
	ctx, cancel := context.WithCancel(context.Background())
	layer := tarLayer(t, file("f", strings.Repeat("x", 1<<20)))
	open := layer.Open
	layer.Open = func(ctx context.Context) (io.ReadCloser, error) {
		cancel()
		return open(ctx)
	}
	err := bundle.Unpack(ctx, out, []bundle.Layer{layer})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if diff := diffSnapshots(before, snapshot(t, base)); diff != "" {
		t.Errorf("the filesystem changed:\n%s", diff)
	}
}

func TestUnpackModesAndTimes(t *testing.T) {
	_, out := workspace(t)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "ro/", Mode: 0o500, ModTime: mtime},
		{Typeflag: tar.TypeReg, Name: "ro/f", Mode: 0o4755, ModTime: mtime},
		{Typeflag: tar.TypeReg, Name: "private", Mode: 0o600, ModTime: mtime},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bundle.Unpack(context.Background(), out, []bundle.Layer{memLayer("", buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	umask := currentUmask()
	for name, want := range map[string]fs.FileMode{
		"ro":      fs.ModeDir | (0o755 &^ umask), // directories stay owner-writable
		"ro/f":    0o777 &^ umask,                // no setuid
		"private": 0o666 &^ umask,
	} {
		fi, err := os.Lstat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
		if !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), mtime)
		}
	}
}
