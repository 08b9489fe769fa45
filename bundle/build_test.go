package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
	digest "github.com/opencontainers/go-digest"
)

const vectorDir = "testdata/imgpkg-push-vector"

// vectorCase is one push recorded with imgpkg 0.43 (see the vector's README).
type vectorCase struct {
	name           string
	input          string
	bundle         bool
	manifestDigest digest.Digest
	configDigest   digest.Digest
	layerDigest    digest.Digest
	layerSize      int64
	diffID         digest.Digest
	manifestFile   string
	configFile     string
	entries        []tarEntry
}

// tarEntry is what the test expects of one layer entry.
type tarEntry struct {
	name string
	typ  byte
	mode int64
}

var vectorCases = []vectorCase{
	{
		name:           "bundle",
		input:          "bundle",
		bundle:         true,
		manifestDigest: "sha256:0202fecf9e1d820d721d3af134fb86be794681f808f85ba9242ca285b55b5f76",
		configDigest:   "sha256:ab23481b145e4df05564077cbbd922af5e09449e439792abd7489cce2959234a",
		layerDigest:    "sha256:91fe5d6114ef997691fd0dc57bdde39bcd34ffa0fa7120afd6098b22be906a3a",
		layerSize:      487,
		diffID:         "sha256:8756124dea284713a03204bcfb4907c7331510f282ea779620976d0dd84fda7f",
		manifestFile:   "vector-bundle.manifest.json",
		configFile:     "vector-bundle.config.json",
		entries: []tarEntry{
			{".", tar.TypeDir, 0o700},
			{".imgpkg", tar.TypeDir, 0o700},
			{".imgpkg/images.yml", tar.TypeReg, 0o600},
			{"README.md", tar.TypeReg, 0o600},
			{"config", tar.TypeDir, 0o700},
			{"config/app.yml", tar.TypeReg, 0o600},
			{"config/overlays", tar.TypeDir, 0o700},
			{"config/overlays/values.star", tar.TypeReg, 0o700},
		},
	},
	{
		name:           "image",
		input:          "image",
		manifestDigest: "sha256:be0fcc8efc54c5ba0e03143228abed2fed5c70a16ed5af627858d2008b8e3ea4",
		configDigest:   "sha256:105f5ab307d8c157a40abccfbac860b8db341dd54a68f88d8654dfa61eda9784",
		layerDigest:    "sha256:cf7dfa70440dd29092867fa20ce5a326070c72eae69855c8afdc397e23ad65de",
		layerSize:      217,
		diffID:         "sha256:e9335718cff12e6fb29132c3e9e1bda1c059be1d351f831d66c76e581cfb8eac",
		manifestFile:   "vector-image.manifest.json",
		configFile:     "vector-image.config.json",
		entries: []tarEntry{
			{".", tar.TypeDir, 0o700},
			{"files", tar.TypeDir, 0o700},
			{"files/hello.txt", tar.TypeReg, 0o600},
			{"files/run.sh", tar.TypeReg, 0o700},
		},
	},
}

// vectorInput copies a vector directory into a temporary directory with the
// modes the vector was recorded with (0644/0755; a checkout may differ), so
// the test depends neither on the umask nor on how the repository was cloned.
func vectorInput(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	src := filepath.Join(vectorDir, name)
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if info.IsDir() {
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			return os.Chmod(out, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if info.Mode()&0o100 != 0 {
			mode = 0o755
		}
		if err := os.WriteFile(out, data, mode); err != nil {
			return err
		}
		return os.Chmod(out, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func build(t *testing.T, inputs []string, opts bundle.BuildOptions) *bundle.Image {
	t.Helper()
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	img, err := bundle.Build(context.Background(), inputs, opts)
	if err != nil {
		t.Fatalf("Build(%v): %v", inputs, err)
	}
	t.Cleanup(func() { _ = img.Close() })
	return img
}

func readLayer(t *testing.T, img *bundle.Image) []byte {
	t.Helper()
	rc, err := img.OpenLayer()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func gunzip(t *testing.T, blob []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// listTar returns the entries of an uncompressed tar with their headers.
func listTar(t *testing.T, data []byte) []*tar.Header {
	t.Helper()
	var hdrs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
	}
}

func TestBuildMatchesImgpkgVector(t *testing.T) {
	for _, tc := range vectorCases {
		t.Run(tc.name, func(t *testing.T) {
			img := build(t, []string{vectorInput(t, tc.input)}, bundle.BuildOptions{
				Bundle:         tc.bundle,
				FileExclusions: []string{".git"},
			})

			wantManifest, err := os.ReadFile(filepath.Join(vectorDir, tc.manifestFile))
			if err != nil {
				t.Fatal(err)
			}
			wantConfig, err := os.ReadFile(filepath.Join(vectorDir, tc.configFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img.Manifest, wantManifest) {
				t.Errorf("manifest bytes:\n got %s\nwant %s", img.Manifest, wantManifest)
			}
			if !bytes.Equal(img.Config, wantConfig) {
				t.Errorf("config bytes:\n got %s\nwant %s", img.Config, wantConfig)
			}

			checks := []struct {
				what      string
				got, want digest.Digest
			}{
				{"manifest digest", img.ManifestDesc.Digest, tc.manifestDigest},
				{"manifest bytes digest", digest.FromBytes(img.Manifest), tc.manifestDigest},
				{"config digest", img.ConfigDesc.Digest, tc.configDigest},
				{"config bytes digest", digest.FromBytes(img.Config), tc.configDigest},
				{"layer digest", img.LayerDesc.Digest, tc.layerDigest},
				{"diff_id", img.DiffID, tc.diffID},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %s, want %s", c.what, c.got, c.want)
				}
			}
			if img.ManifestDesc.Size != int64(len(wantManifest)) || img.ConfigDesc.Size != int64(len(wantConfig)) || img.LayerDesc.Size != tc.layerSize {
				t.Errorf("sizes manifest %d config %d layer %d, want %d %d %d",
					img.ManifestDesc.Size, img.ConfigDesc.Size, img.LayerDesc.Size, len(wantManifest), len(wantConfig), tc.layerSize)
			}
			if img.ManifestDesc.MediaType != bundle.MediaTypeDockerManifest ||
				img.ConfigDesc.MediaType != bundle.MediaTypeDockerConfig ||
				img.LayerDesc.MediaType != bundle.MediaTypeDockerLayer {
				t.Errorf("media types %q %q %q", img.ManifestDesc.MediaType, img.ConfigDesc.MediaType, img.LayerDesc.MediaType)
			}

			// The blob on disk is what the descriptors say.
			blob := readLayer(t, img)
			if got := digest.FromBytes(blob); got != tc.layerDigest || int64(len(blob)) != tc.layerSize {
				t.Errorf("layer file: digest %s size %d, want %s %d", got, len(blob), tc.layerDigest, tc.layerSize)
			}
			if want := "1f8b08000000000004ff"; hex.EncodeToString(blob[:10]) != want {
				t.Errorf("gzip header %x, want %s", blob[:10], want)
			}
			tarBytes := gunzip(t, blob)
			if got := digest.FromBytes(tarBytes); got != tc.diffID {
				t.Errorf("uncompressed layer digest %s, want diff_id %s", got, tc.diffID)
			}
			hdrs := listTar(t, tarBytes)
			var got []tarEntry
			for _, h := range hdrs {
				got = append(got, tarEntry{h.Name, h.Typeflag, h.Mode})
				if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 {
					t.Errorf("entry %s: uid %d gid %d uname %q gname %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
				}
			}
			if !equalEntries(got, tc.entries) {
				t.Errorf("entries:\n got %v\nwant %v", got, tc.entries)
			}
		})
	}
}

func equalEntries(a, b []tarEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBuildIsDeterministic(t *testing.T) {
	in := vectorInput(t, "bundle")
	a := build(t, []string{in}, bundle.BuildOptions{Bundle: true})
	// Touch every file: mtimes, atimes and the umask must not matter.
	if err := os.Chtimes(filepath.Join(in, "README.md"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	b := build(t, []string{in}, bundle.BuildOptions{Bundle: true})
	if a.ManifestDesc.Digest != b.ManifestDesc.Digest || a.LayerDesc.Digest != b.LayerDesc.Digest || a.DiffID != b.DiffID {
		t.Errorf("two builds differ: %s/%s vs %s/%s", a.ManifestDesc.Digest, a.LayerDesc.Digest, b.ManifestDesc.Digest, b.LayerDesc.Digest)
	}
	// Group and other permission bits are masked away.
	if err := os.Chmod(filepath.Join(in, "README.md"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := build(t, []string{in}, bundle.BuildOptions{Bundle: true})
	if c.ManifestDesc.Digest != a.ManifestDesc.Digest {
		t.Errorf("chmod go-rw changed the digest: %s vs %s", c.ManifestDesc.Digest, a.ManifestDesc.Digest)
	}
}

// writeTree creates files (content = name) and directories (names ending
// in "/") below a new temporary directory.
func writeTree(t *testing.T, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range paths {
		full := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const validLock = `apiVersion: imgpkg.carvel.dev/v1alpha1
kind: ImagesLock
images:
- image: registry.example.com/app@sha256:1111111111111111111111111111111111111111111111111111111111111111
`

func writeLock(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, ".imgpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".imgpkg", "images.yml"), []byte(validLock), 0o644); err != nil {
		t.Fatal(err)
	}
}

func entryNames(t *testing.T, img *bundle.Image) []string {
	t.Helper()
	var names []string
	for _, h := range listTar(t, gunzip(t, readLayer(t, img))) {
		names = append(names, h.Name)
	}
	return names
}

func TestBuildFileExclusions(t *testing.T) {
	root := writeTree(t, ".git/HEAD", "a/.git/HEAD", "a/keep.txt", "b/skip/x", "b/y", "top.txt")
	tests := []struct {
		name       string
		exclusions []string
		want       []string
	}{
		{"none", nil, []string{".", ".git", ".git/HEAD", "a", "a/.git", "a/.git/HEAD", "a/keep.txt", "b", "b/skip", "b/skip/x", "b/y", "top.txt"}},
		// Only the exact relative path is excluded; a/.git stays, as with imgpkg.
		{"default .git", []string{".git"}, []string{".", "a", "a/.git", "a/.git/HEAD", "a/keep.txt", "b", "b/skip", "b/skip/x", "b/y", "top.txt"}},
		{"nested path listed", []string{".git", "a/.git"}, []string{".", "a", "a/keep.txt", "b", "b/skip", "b/skip/x", "b/y", "top.txt"}},
		{"file and subdir", []string{"top.txt", "b/skip"}, []string{".", ".git", ".git/HEAD", "a", "a/.git", "a/.git/HEAD", "a/keep.txt", "b", "b/y"}},
		{"not normalised", []string{".git/", "./top.txt"}, []string{".", ".git", ".git/HEAD", "a", "a/.git", "a/.git/HEAD", "a/keep.txt", "b", "b/skip", "b/skip/x", "b/y", "top.txt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := build(t, []string{root}, bundle.BuildOptions{FileExclusions: tc.exclusions})
			got := entryNames(t, img)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("entries\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestBuildSeveralInputs(t *testing.T) {
	dir := writeTree(t, "config/app.yml")
	writeLock(t, dir)
	other := writeTree(t, "extra.yml", "more/x.yml")
	img := build(t, []string{dir, filepath.Join(other, "extra.yml"), filepath.Join(other, "more")}, bundle.BuildOptions{Bundle: true})
	want := []string{".", ".imgpkg", ".imgpkg/images.yml", "config", "config/app.yml", "extra.yml", ".", "x.yml"}
	if got := entryNames(t, img); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("entries\n got %v\nwant %v", got, want)
	}
}

func TestBuildPreservePermissions(t *testing.T) {
	in := vectorInput(t, "image")
	masked := build(t, []string{in}, bundle.BuildOptions{})
	kept := build(t, []string{in}, bundle.BuildOptions{PreservePermissions: true})
	if masked.LayerDesc.Digest == kept.LayerDesc.Digest || masked.ManifestDesc.Digest == kept.ManifestDesc.Digest {
		t.Fatalf("PreservePermissions did not change the digest (%s)", kept.LayerDesc.Digest)
	}
	modes := map[string]int64{}
	for _, h := range listTar(t, gunzip(t, readLayer(t, kept))) {
		modes[h.Name] = h.Mode
	}
	// imgpkg writes the Go file mode: directories carry os.ModeDir and the
	// mode of the pushed directory.
	want := map[string]int64{
		".":               int64(os.ModeDir | 0o755),
		"files":           int64(os.ModeDir | 0o755),
		"files/hello.txt": 0o644,
		"files/run.sh":    0o755,
	}
	for name, m := range want {
		if modes[name] != m {
			t.Errorf("%s: mode %o, want %o", name, modes[name], m)
		}
	}
}

func TestBuildLabels(t *testing.T) {
	in := vectorInput(t, "image")
	labels := map[string]string{"b": "2", "a": "<1>"}
	img := build(t, []string{in}, bundle.BuildOptions{Labels: labels})
	if !bytes.Contains(img.Config, []byte(`"config":{"Labels":{"a":"\u003c1\u003e","b":"2"}}`)) {
		t.Errorf("config %s lacks the sorted, escaped labels", img.Config)
	}
	if len(labels) != 2 {
		t.Errorf("Build modified the caller's labels: %v", labels)
	}

	bin := vectorInput(t, "bundle")
	bimg := build(t, []string{bin}, bundle.BuildOptions{Bundle: true, Labels: map[string]string{"z": "9"}})
	if !bytes.Contains(bimg.Config, []byte(`"config":{"Labels":{"dev.carvel.imgpkg.bundle":"true","z":"9"}}`)) {
		t.Errorf("bundle config %s", bimg.Config)
	}

	_, err := bundle.Build(context.Background(), []string{bin}, bundle.BuildOptions{
		Bundle: true, TempDir: t.TempDir(), Labels: map[string]string{bundle.BundleLabel: "false"},
	})
	if !errors.Is(err, bundle.ErrReservedLabel) {
		t.Errorf("reserved label: err = %v, want ErrReservedLabel", err)
	}
}

func TestBuildRefusals(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T) []string
		isBundle bool
		wantErr  error
		mention  []string // substrings the message must contain
	}{
		{
			name:     "bundle without .imgpkg",
			setup:    func(t *testing.T) []string { return []string{writeTree(t, "a.yml")} },
			isBundle: true,
			wantErr:  bundle.ErrNotBundleDir,
			mention:  []string{"expected one directory to contain '.imgpkg' dir, found none; use -i to push a plain image"},
		},
		{
			name: "bundle with two .imgpkg",
			setup: func(t *testing.T) []string {
				a, b := writeTree(t, "a.yml"), writeTree(t, "b.yml")
				writeLock(t, a)
				writeLock(t, b)
				return []string{a, b}
			},
			isBundle: true,
			wantErr:  bundle.ErrNotBundleDir,
			mention:  []string{"found 2"},
		},
		{
			name: "bundle with nested .imgpkg only",
			setup: func(t *testing.T) []string {
				a := writeTree(t, "sub/a.yml")
				writeLock(t, filepath.Join(a, "sub"))
				return []string{a}
			},
			isBundle: true,
			wantErr:  bundle.ErrNotBundleDir,
			mention:  []string{"direct child"},
		},
		{
			name:     "bundle without images.yml",
			setup:    func(t *testing.T) []string { return []string{writeTree(t, ".imgpkg/bundle.yml")} },
			isBundle: true,
			wantErr:  bundle.ErrNoImagesLock,
			mention:  []string{"images.yml"},
		},
		{
			name: "bundle with invalid images.yml",
			setup: func(t *testing.T) []string {
				d := writeTree(t, ".imgpkg/")
				if err := os.WriteFile(filepath.Join(d, ".imgpkg", "images.yml"), []byte("apiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:latest\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{d}
			},
			isBundle: true,
			wantErr:  lockfile.ErrInvalid,
			mention:  []string{filepath.Join(".imgpkg", "images.yml")},
		},
		{
			name: "image with .imgpkg",
			setup: func(t *testing.T) []string {
				d := writeTree(t, "a.yml")
				writeLock(t, d)
				return []string{d}
			},
			wantErr: bundle.ErrBundleDirInImage,
			mention: []string{"-b", ".imgpkg"},
		},
		{
			name: "symlink",
			setup: func(t *testing.T) []string {
				d := writeTree(t, "a.yml", "sub/")
				if err := os.Symlink("../a.yml", filepath.Join(d, "sub", "link")); err != nil {
					t.Fatal(err)
				}
				return []string{d}
			},
			wantErr: bundle.ErrUnsupportedFile,
			mention: []string{filepath.Join("sub", "link"), "symbolic link"},
		},
		{
			name: "fifo",
			setup: func(t *testing.T) []string {
				d := writeTree(t, "a.yml")
				if err := syscall.Mkfifo(filepath.Join(d, "pipe"), 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{d}
			},
			wantErr: bundle.ErrUnsupportedFile,
			mention: []string{"pipe"},
		},
		{
			name: "fifo as input",
			setup: func(t *testing.T) []string {
				d := t.TempDir()
				p := filepath.Join(d, "pipe")
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{p}
			},
			wantErr: bundle.ErrUnsupportedFile,
			mention: []string{"pipe"},
		},
		{
			name:    "missing input",
			setup:   func(t *testing.T) []string { return []string{filepath.Join(t.TempDir(), "nope")} },
			wantErr: os.ErrNotExist,
			mention: []string{"nope"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			img, err := bundle.Build(context.Background(), tc.setup(t), bundle.BuildOptions{Bundle: tc.isBundle, TempDir: tmp})
			if err == nil {
				_ = img.Close()
				t.Fatal("Build succeeded, want an error")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

func TestBuildExcludedSymlinkIsFine(t *testing.T) {
	d := writeTree(t, "a.yml")
	if err := os.Symlink("a.yml", filepath.Join(d, ".git")); err != nil {
		t.Fatal(err)
	}
	img := build(t, []string{d}, bundle.BuildOptions{FileExclusions: []string{".git"}})
	if got := entryNames(t, img); strings.Join(got, ",") != ".,a.yml" {
		t.Errorf("entries %v", got)
	}
}

func TestBuildSymlinkedInputDir(t *testing.T) {
	in := vectorInput(t, "image")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	img := build(t, []string{link}, bundle.BuildOptions{})
	if img.ManifestDesc.Digest != vectorCases[1].manifestDigest {
		t.Errorf("digest through a symlinked input: %s", img.ManifestDesc.Digest)
	}
}

func TestBuildCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tmp := t.TempDir()
	_, err := bundle.Build(ctx, []string{vectorInput(t, "image")}, bundle.BuildOptions{TempDir: tmp})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestImageClose(t *testing.T) {
	tmp := t.TempDir()
	img, err := bundle.Build(context.Background(), []string{vectorInput(t, "image")}, bundle.BuildOptions{TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 1 {
		t.Fatalf("want one layer file in TempDir, got %v", left)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Close left %v", left)
	}
}
