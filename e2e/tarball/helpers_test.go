package tarball_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// imgpkgTag is imgpkg's tag of an untagged image: sha256-<hex>.imgpkg.
func imgpkgTag(d digest.Digest) string { return "sha256-" + d.Encoded() + ".imgpkg" }

// locationsTag is the tag of a bundle's ImageLocations cache image.
func locationsTag(d digest.Digest) string {
	return "sha256-" + d.Encoded() + ".image-locations.imgpkg"
}

// tagsOf lists the tags of repo, sorted; nil when the registry does not
// know the repository.
func tagsOf(ctx context.Context, t *testing.T, repo *remote.Repository) []string {
	t.Helper()
	var tags []string
	err := repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	})
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, errdef.ErrNotFound), errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound:
		return nil
	case err != nil:
		t.Fatalf("tags of %s: %v", repo.Reference, err)
	}
	slices.Sort(tags)
	return tags
}

// wantTag checks that tag resolves to d in repo.
func wantTag(ctx context.Context, t *testing.T, repo *remote.Repository, tag string, d digest.Digest) {
	t.Helper()
	desc, err := repo.Resolve(ctx, tag)
	if err != nil {
		t.Errorf("%s:%s: %v", repo.Reference, tag, err)
		return
	}
	if desc.Digest != d {
		t.Errorf("%s:%s -> %s, want %s", repo.Reference, tag, desc.Digest, d)
	}
}

// has reports whether repo holds desc (a blob, or a manifest when its media
// type says so).
func has(ctx context.Context, t *testing.T, repo *remote.Repository, desc ocispec.Descriptor) bool {
	t.Helper()
	ok, err := repo.Exists(ctx, desc)
	if err != nil && !errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("exists %s in %s: %v", desc.Digest, repo.Reference, err)
	}
	return ok
}

// graphAt walks the manifest or index d in repo and returns every
// descriptor reachable from it (itself, children, configs, layers), each
// once, failing the test when a manifest cannot be read or a blob is
// missing. Non-distributable layers are returned but not required.
func graphAt(ctx context.Context, t *testing.T, repo *remote.Repository, d digest.Digest) []ocispec.Descriptor {
	t.Helper()
	root, err := repo.Resolve(ctx, d.String())
	if err != nil {
		t.Fatalf("resolve %s@%s: %v", repo.Reference, d, err)
	}
	seen := map[digest.Digest]bool{}
	var out []ocispec.Descriptor
	queue := []ocispec.Descriptor{root}
	for len(queue) > 0 {
		desc := queue[0]
		queue = queue[1:]
		if seen[desc.Digest] {
			continue
		}
		seen[desc.Digest] = true
		out = append(out, desc)
		if isForeign(desc) {
			continue
		}
		if !has(ctx, t, repo, desc) {
			t.Errorf("%s (%s, below %s) missing in %s", desc.Digest, desc.MediaType, d, repo.Reference)
			continue
		}
		succ, err := content.Successors(ctx, repo, desc)
		if err != nil {
			t.Fatalf("successors of %s in %s: %v", desc.Digest, repo.Reference, err)
		}
		queue = append(queue, succ...)
	}
	return out
}

// isForeign reports whether desc is a non-distributable layer.
func isForeign(desc ocispec.Descriptor) bool {
	return strings.Contains(desc.MediaType, ".foreign.") || strings.Contains(desc.MediaType, ".nondistributable.")
}

// fetchBytes reads desc from repo and checks its digest.
func fetchBytes(ctx context.Context, t *testing.T, repo *remote.Repository, desc ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		t.Fatalf("fetch %s from %s: %v", desc.Digest, repo.Reference, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || digest.FromBytes(b) != desc.Digest {
		t.Fatalf("fetch %s from %s: %v (%d bytes)", desc.Digest, repo.Reference, err, len(b))
	}
	return b
}

// gzipTarFile returns the file called name in a gzip tar blob.
func gzipTarFile(t *testing.T, blob []byte, name string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the layer", name)
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// noPanic fails the test when ferry's stderr shows a panic or a goroutine
// dump.
func noPanic(t *testing.T, res harness.Result) {
	t.Helper()
	if strings.Contains(res.Stderr, "panic:") || strings.Contains(res.Stderr, "goroutine ") {
		t.Errorf("ferry panicked:\n%s", res.Stderr)
	}
}

// errorLine returns ferry's "ferry: Error: ..." line, failing the test
// unless the run exited 1 with exactly one such line.
func errorLine(t *testing.T, res harness.Result) string {
	t.Helper()
	noPanic(t, res)
	if res.ExitCode != 1 {
		t.Errorf("exit status %d, want 1", res.ExitCode)
	}
	var lines []string
	for l := range strings.SplitSeq(res.Stderr, "\n") {
		if strings.HasPrefix(l, "ferry: Error: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Errorf("%d ferry: Error: lines in stderr, want 1:\n%s", len(lines), res.Stderr)
		return ""
	}
	return lines[0]
}

// stderrLine reports whether a line of stderr holds every one of parts.
func stderrLine(res harness.Result, parts ...string) bool {
	for l := range strings.SplitSeq(res.Stderr, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// tarFile is one entry of a tar read whole into memory.
type tarFile struct {
	hdr    tar.Header
	body   []byte
	offset int64 // of the body in the file
}

// readTar reads every entry of the tar at path.
func readTar(t *testing.T, path string) ([]tarFile, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	br := bytes.NewReader(data)
	tr := tar.NewReader(br)
	var out []tarFile
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, data
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		off := int64(len(data)) - int64(br.Len())
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, tarFile{hdr: *h, body: body, offset: off})
	}
}

// writeTar writes entries as a tar file at path.
func writeTar(t *testing.T, path string, entries []tarFile) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		if h.Typeflag == tar.TypeDir {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// entryNamed returns the entry called name.
func entryNamed(t *testing.T, entries []tarFile, name string) tarFile {
	t.Helper()
	for _, e := range entries {
		if e.hdr.Name == name {
			return e
		}
	}
	t.Fatalf("no tar entry %q", name)
	return tarFile{}
}

// blobEntry is the tar entry name of a blob in an OCI layout.
func blobEntry(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
