package graph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/lockfile"
)

// relocate copies the world's bundle into dst.io/copy (registered in the
// source, so it can be pulled from there).
func relocate(t *testing.T, w *world) {
	t.Helper()
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	if _, err := CopyToRepo(context.Background(), w.src, g, w.src.store("dst.io/copy"), CopyOptions{DestRepo: "dst.io/copy"}); err != nil {
		t.Fatal(err)
	}
}

func readLock(t *testing.T, path string) *lockfile.ImagesLock {
	t.Helper()
	lock, err := lockfile.ReadImagesLock(path)
	if err != nil {
		t.Fatal(err)
	}
	return lock
}

func pullDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stale"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPullRewrite(t *testing.T) {
	w := newWorld(t)
	relocate(t, w)
	// dst.io/manual: the bundle and copies of its images, but no ImageLocations image
	manual := w.src.store("dst.io/manual")
	pushImage(t, manual, imageSpec{layers: [][]byte{[]byte("layer a1"), []byte("shared layer")}})
	manualBundle := pushBundle(t, manual, "manual", []string{ref("src.io/app1", w.a)}, "v1")
	// dst.io/partial: the bundle only
	partial := pushBundle(t, w.src.store("dst.io/partial"), "partial", []string{ref("src.io/app1", w.a)}, "v1")
	// dst.io/locs: the bundle and its ImageLocations image, no images: the
	// cache image is trusted without looking for each image
	locsRepo := w.src.store("dst.io/locs")
	locsBundle := pushBundle(t, locsRepo, "locs", []string{ref("src.io/app1", w.a)})
	m, blobs, err := imageLocationsImage(&lockfile.ImageLocations{Images: []lockfile.ImageLocation{{Image: ref("src.io/app1", w.a)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range append(blobs, m) {
		pushBlob(t, locsRepo, b.desc.MediaType, b.data)
	}
	if err := locsRepo.Tag(context.Background(), m.desc, ImageLocationsTag(locsBundle.Digest)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		ref       string
		wantRepo  string // "" when images.yml must stay as it is
		wantMsg   string
		wantCount int
	}{
		{"relocated with image locations", "dst.io/copy:v1", "dst.io/copy", fmt.Sprintf(msgHostedFmt, "dst.io/copy"), 4},
		{"every image in bundle repo", ref("dst.io/manual", manualBundle), "dst.io/manual", fmt.Sprintf(msgHostedFmt, "dst.io/manual"), 1},
		{"image locations image only", ref("dst.io/locs", locsBundle), "dst.io/locs", fmt.Sprintf(msgHostedFmt, "dst.io/locs"), 1},
		{"image missing from bundle repo", ref("dst.io/partial", partial), "", msgNotHosted, 1},
		{"original location", "src.io/bundle:v1", "", msgNotHosted, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := pullDir(t)
			var msgs []string
			res, err := Pull(context.Background(), w.src, tt.ref, RootBundle, dir, PullOptions{OnMessage: func(m string) { msgs = append(msgs, m) }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "stale")); !os.IsNotExist(err) {
				t.Errorf("dir was not replaced: %v", err)
			}
			if !res.Bundle || res.LockUpdated != (tt.wantRepo != "") {
				t.Errorf("result = %+v", res)
			}
			if !slices.Contains(msgs, tt.wantMsg) || !slices.Contains(msgs, msgLocating) {
				t.Errorf("messages = %q, want %q", msgs, tt.wantMsg)
			}
			if !strings.HasPrefix(msgs[0], "Pulling bundle '") || !strings.Contains(msgs[0], res.Digest.String()) {
				t.Errorf("first message = %q", msgs[0])
			}
			if len(msgs) < 2 || !strings.HasPrefix(msgs[1], "Extracting layer 'sha256:") || !strings.HasSuffix(msgs[1], "' (1/1)") {
				t.Errorf("second message = %q", msgs[1])
			}
			lock := readLock(t, filepath.Join(dir, ".imgpkg", "images.yml"))
			if len(lock.Images) != tt.wantCount {
				t.Fatalf("images = %d, want %d", len(lock.Images), tt.wantCount)
			}
			for _, img := range lock.Images {
				repo, _, err := lockfile.SplitDigestRef(img.Image)
				if err != nil {
					t.Fatal(err)
				}
				if tt.wantRepo != "" && repo != tt.wantRepo {
					t.Errorf("image %s not rewritten to %s", img.Image, tt.wantRepo)
				}
				if tt.wantRepo == "" && !strings.HasPrefix(repo, "src.io/") {
					t.Errorf("image %s rewritten although not hosted", img.Image)
				}
				if !strings.HasPrefix(img.Annotations["kbld.carvel.dev/id"], "id-of-") {
					t.Errorf("annotations lost: %v", img.Annotations)
				}
			}
			if tt.wantCount == 4 {
				// order kept: A, I, B, M
				for i, d := range []ocispec.Descriptor{w.a, w.i, w.b, w.m} {
					if !strings.HasSuffix(lock.Images[i].Image, "@"+d.Digest.String()) {
						t.Errorf("image %d = %s, want digest %s", i, lock.Images[i].Image, d.Digest)
					}
				}
			}
			if data, err := os.ReadFile(filepath.Join(dir, "config", "app.yml")); err != nil || !strings.HasPrefix(string(data), "note: ") {
				t.Errorf("bundle file: %q, %v", data, err)
			}
		})
	}
}

func TestPullUnchangedLockKeepsBytes(t *testing.T) {
	w := newWorld(t)
	dir := pullDir(t)
	if _, err := Pull(context.Background(), w.src, "src.io/bundle:v1", RootBundle, dir, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, ".imgpkg", "images.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := imagesYML(t, ref("src.io/app1", w.a), ref("src.io/inner", w.i), ref("src.io/app2", w.b), ref("src.io/multi", w.m))
	if string(got) != want {
		t.Errorf("images.yml changed:\n%s\nwant\n%s", got, want)
	}
	entries, err := os.ReadDir(filepath.Join(dir, ".imgpkg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf(".imgpkg holds %d entries (temporary files left?)", len(entries))
	}
}

func TestPullRecursive(t *testing.T) {
	w := newWorld(t)
	relocate(t, w)
	for _, tt := range []struct {
		ref      string
		wantRepo string
	}{
		{"dst.io/copy:v1", "dst.io/copy"},
		{"src.io/bundle:v1", "src.io/app2"},
	} {
		t.Run(tt.ref, func(t *testing.T) {
			dir := pullDir(t)
			var msgs []string
			res, err := Pull(context.Background(), w.src, tt.ref, RootBundle, dir, PullOptions{Recursive: true, OnMessage: func(m string) { msgs = append(msgs, m) }})
			if err != nil {
				t.Fatal(err)
			}
			nestedDir := filepath.Join(dir, ".imgpkg", "bundles", "sha256-"+w.i.Digest.Encoded())
			if len(res.Nested) != 1 || res.Nested[0].Digest != w.i.Digest || res.Nested[0].Dir != nestedDir {
				t.Fatalf("nested = %+v", res.Nested)
			}
			if res.Nested[0].LockUpdated != (tt.wantRepo == "dst.io/copy") || res.LockUpdated != res.Nested[0].LockUpdated {
				t.Errorf("lock updated: top %v, nested %v", res.LockUpdated, res.Nested[0].LockUpdated)
			}
			data, err := os.ReadFile(filepath.Join(nestedDir, "config", "app.yml"))
			if err != nil || string(data) != "note: inner\n" {
				t.Errorf("nested bundle contents: %q, %v", data, err)
			}
			lock := readLock(t, filepath.Join(nestedDir, ".imgpkg", "images.yml"))
			if len(lock.Images) != 1 || lock.Images[0].Image != ref(tt.wantRepo, w.b) {
				t.Errorf("nested images.yml = %+v, want %s", lock.Images, ref(tt.wantRepo, w.b))
			}
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.HasPrefix(m, "Pulling nested bundle '") }) {
				t.Errorf("messages = %q", msgs)
			}
			// the top-level bundle is still there
			if _, err := os.Stat(filepath.Join(dir, "config", "app.yml")); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestPullKinds(t *testing.T) {
	w := newWorld(t)
	st := w.src.store("src.io/files")
	img := pushImage(t, st, imageSpec{layers: [][]byte{
		tarGz(t, map[string]string{"a.txt": "first", "dir/b.txt": "b"}),
		tarGz(t, map[string]string{"a.txt": "second"}),
	}})
	tests := []struct {
		name       string
		ref        string
		kind       RootKind
		skipCheck  bool
		wantErr    error
		wantHint   string
		wantBundle bool
		wantFile   [2]string
	}{
		{"image as -i", ref("src.io/files", img), RootImage, false, nil, "", false, [2]string{"a.txt", "second"}},
		{"image as -b", ref("src.io/files", img), RootBundle, false, ErrNotBundle, "use -i", false, [2]string{}},
		{"bundle as -i", "src.io/bundle:v1", RootImage, false, ErrIsBundle, "use -b", false, [2]string{}},
		{"bundle as -i unchecked", "src.io/bundle:v1", RootImage, true, nil, "", false, [2]string{"config/app.yml", "note: outer\n"}},
		{"bundle as any", "src.io/bundle:v1", RootAny, false, nil, "", true, [2]string{"config/app.yml", "note: outer\n"}},
		{"index", ref("src.io/multi", w.m), RootAny, false, ErrIsIndex, "", false, [2]string{}},
		{"missing tag", "src.io/files:nope", RootAny, false, nil, "", false, [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := pullDir(t)
			var msgs []string
			res, err := Pull(context.Background(), w.src, tt.ref, tt.kind, dir, PullOptions{SkipBundleCheck: tt.skipCheck, OnMessage: func(m string) { msgs = append(msgs, m) }})
			if tt.name == "missing tag" {
				if err == nil || !strings.Contains(err.Error(), tt.ref) {
					t.Fatalf("err = %v, want an error naming %s", err, tt.ref)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantHint) || !strings.Contains(err.Error(), tt.ref) {
					t.Errorf("error %q should name %s and hint %q", err, tt.ref, tt.wantHint)
				}
				if _, serr := os.Stat(filepath.Join(dir, "stale")); serr != nil {
					t.Errorf("dir touched on error: %v", serr)
				}
				return
			}
			if res.Bundle != tt.wantBundle || res.LockUpdated {
				t.Errorf("result = %+v", res)
			}
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tt.wantFile[0])))
			if err != nil || string(data) != tt.wantFile[1] {
				t.Errorf("%s = %q (%v), want %q", tt.wantFile[0], data, err, tt.wantFile[1])
			}
			if !tt.wantBundle && slices.Contains(msgs, msgLocating) {
				t.Errorf("lock file handled for an image pull: %q", msgs)
			}
			if tt.name == "image as -i" {
				want := []string{"Pulling image '" + ref("src.io/files", img) + "'"}
				if len(msgs) != 3 || msgs[0] != want[0] || !strings.HasSuffix(msgs[2], "(2/2)") {
					t.Errorf("messages = %q", msgs)
				}
			}
		})
	}
}
