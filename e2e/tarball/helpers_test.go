package tarball_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

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

// graphAt returns every descriptor reachable from the manifest or index d
// in repo (harness.Graph: itself, children, configs, layers, each once) and
// checks that repo holds each of them, failing the test when one is missing.
// Non-distributable layers are returned but not required.
func graphAt(ctx context.Context, t *testing.T, repo *remote.Repository, d digest.Digest) []ocispec.Descriptor {
	t.Helper()
	all := harness.Graph(ctx, t, repo, d)
	for _, desc := range all {
		if !isForeign(desc) && !has(ctx, t, repo, desc) {
			t.Errorf("%s (%s, below %s) missing in %s", desc.Digest, desc.MediaType, d, repo.Reference)
		}
	}
	return all
}

// isForeign reports whether desc is a non-distributable layer.
func isForeign(desc ocispec.Descriptor) bool {
	return strings.Contains(desc.MediaType, ".foreign.") || strings.Contains(desc.MediaType, ".nondistributable.")
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
	hdr  tar.Header
	body []byte
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

// blobEntry is the tar entry name of a blob in an OCI layout.
func blobEntry(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }
