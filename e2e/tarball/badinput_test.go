package tarball_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestTarBadInput runs ferry copy --tar FILE --to-repo and ferry tar verify
// FILE on damaged copies of a good tarball: each exits 1 with one
// "ferry: Error:" line naming the entry or digest at fault, without a
// panic, and the destination repository gets no tag at all (nothing was
// asked for by a verified tarball); a blob with wrong bytes never reaches
// it, nor the manifest above it.
func TestTarBadInput(t *testing.T) {
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(101)
	app := b.Image(ctx, t, src.Ref("bad/app"), harness.ImageSpec{Layers: []int{5000}})
	multi := b.Index(ctx, t, src.Ref("bad/multi"), harness.IndexSpec{Layers: []int{600}})
	appRef := at(src.Ref("bad/app"), app.Digest)
	b.Bundle(ctx, t, src.Ref("bad/bundle"), harness.BundleSpec{Images: []string{appRef, at(src.Ref("bad/multi"), multi.Digest)}, Tag: "v1"})
	var am ocispec.Manifest
	_, raw := b.FetchManifest(ctx, t, src.Ref("bad/app"), app.Digest.String())
	if err := json.Unmarshal(raw, &am); err != nil {
		t.Fatal(err)
	}
	layer := am.Layers[0]

	work := t.TempDir()
	good := filepath.Join(work, "good.tar")
	harness.RunOK(t, nil, "copy", "-b", src.Ref("bad/bundle")+":v1", "--to-tar", good)
	src.Stop() // the imports below must not need it
	entries, data := readTar(t, good)
	layerEntry := entryNamed(t, entries, blobEntry(layer.Digest))
	index := entryNamed(t, entries, "index.json")
	lastBlob := entries[len(entries)-1]

	// Each case writes a damaged file at path; want are strings the error
	// line must hold.
	cases := []struct {
		name  string
		write func(t *testing.T, path string)
		want  []string
	}{
		{"truncated in the first header", cut(data, 100), []string{"truncated"}},
		{"truncated in index.json", cut(data, int(index.offset)+10), []string{"truncated", `"index.json"`}},
		{"truncated in a blob", cut(data, int(layerEntry.offset)+100), []string{"truncated", layerEntry.hdr.Name}},
		{"truncated before the end marker", cut(data, int(lastBlob.offset)+(len(lastBlob.body)+511)/512*512), []string{"truncated", lastBlob.hdr.Name}},
		{"blob with wrong bytes", func(t *testing.T, path string) {
			d := slices.Clone(data)
			d[layerEntry.offset+int64(len(layerEntry.body))/2] ^= 0x01
			writeFile(t, path, d)
		}, []string{layer.Digest.String(), "digest mismatch"}},
		{"blob with wrong size", rewrite(entries, func(es []tarFile) []tarFile {
			for i := range es {
				if es[i].hdr.Name == layerEntry.hdr.Name {
					es[i].body = append(slices.Clone(es[i].body), 0)
				}
			}
			return es
		}), []string{layer.Digest.String(), "mismatch"}},
		{"missing blob", rewrite(entries, func(es []tarFile) []tarFile {
			return slices.DeleteFunc(es, func(e tarFile) bool { return e.hdr.Name == layerEntry.hdr.Name })
		}), []string{layer.Digest.String(), "missing"}},
		{"duplicate entry", rewrite(entries, func(es []tarFile) []tarFile {
			return append(es, layerEntry)
		}), []string{"duplicate", layerEntry.hdr.Name}},
		{"escaping name", rewrite(entries, func(es []tarFile) []tarFile {
			return append(es, tarFile{hdr: tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte("x")})
		}), []string{`"../x"`, "unsafe"}},
		{"missing index.json", rewrite(entries, func(es []tarFile) []tarFile {
			return slices.DeleteFunc(es, func(e tarFile) bool { return e.hdr.Name == "index.json" })
		}), []string{"no index.json"}},
		{"malformed index.json", rewrite(entries, func(es []tarFile) []tarFile {
			for i := range es {
				if es[i].hdr.Name == "index.json" {
					es[i].body = []byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:nope"`)
				}
			}
			return es
		}), []string{"malformed index.json"}},
		{"not a tar", func(t *testing.T, path string) {
			writeFile(t, path, bytes.Repeat([]byte("this is not a tar\n"), 100))
		}, []string{"not a tar"}},
		{"gzip-compressed tar", func(t *testing.T, path string) {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(data)
			zw.Close()
			writeFile(t, path, buf.Bytes())
		}, []string{"gzip"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(work, strings.ReplaceAll(c.name, " ", "-")+".tar")
			c.write(t, path)
			repoName := "bad/case" + string(rune('a'+i))

			res := harness.Run(t, nil, "copy", "--tar", path, "--to-repo", dst.Ref(repoName), "--registry-retry-count", "0")
			line := errorLine(t, res)
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("copy --tar: error line %q does not hold %q", line, w)
				}
			}
			if strings.Contains(res.Stderr, "Succeeded") {
				t.Errorf("copy --tar printed Succeeded:\n%s", res.Stderr)
			}
			repo := dst.Repository(t, repoName)
			if tags := tagsOf(ctx, t, repo); len(tags) != 0 {
				t.Errorf("the destination got tags %q from a damaged tarball", tags)
			}
			damaged := c.name == "blob with wrong bytes" || c.name == "blob with wrong size"
			if damaged && has(ctx, t, repo, layer) {
				t.Errorf("the corrupted blob %s reached the destination", layer.Digest)
			}
			if (damaged || c.name == "missing blob") && has(ctx, t, repo, app) {
				t.Errorf("the manifest %s above the bad blob reached the destination", app.Digest)
			}

			res = harness.Run(t, nil, "tar", "verify", path)
			line = errorLine(t, res)
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("tar verify: error line %q does not hold %q", line, w)
				}
			}
			if res.Stdout != "" {
				t.Errorf("tar verify stdout %q, want nothing", res.Stdout)
			}
		})
	}
}

// cut returns a writer of the first n bytes of data.
func cut(data []byte, n int) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if n <= 0 || n >= len(data) {
			t.Fatalf("cut at %d of %d bytes", n, len(data))
		}
		writeFile(t, path, data[:n])
	}
}

// rewrite returns a writer of a tar holding edit(a copy of entries).
func rewrite(entries []tarFile, edit func([]tarFile) []tarFile) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		writeTar(t, path, edit(slices.Clone(entries)))
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
