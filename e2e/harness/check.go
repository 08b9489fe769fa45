package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
)

// Helpers the test packages share to look at what ferry did: references and
// imgpkg's tag names, repositories read without credentials, tags, verified
// fetches, image and manifest graphs, layer contents, files, byte sizes as
// ferry prints them and ferry's error line. All are safe for concurrent use.

// DigestRef returns the digest reference "repoRef@d", for example
// "127.0.0.1:5000/team/app@sha256:...".
func DigestRef(repoRef string, d digest.Digest) string { return repoRef + "@" + d.String() }

// ImgpkgTag returns imgpkg's tag for an image or bundle that has no tag of
// its own: "sha256-<hex>.imgpkg".
func ImgpkgTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".imgpkg"
}

// ImageLocationsTag returns the tag of the ImageLocations cache image that
// imgpkg (and ferry) push next to bundle d: "sha256-<hex>.image-locations.imgpkg".
func ImageLocationsTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".image-locations.imgpkg"
}

// AnonymousRepository opens repoRef ("host:port/name") on a plain-HTTP
// registry with no credentials, ignoring proxies configured in the
// environment. For registries with TLS or auth use [Registry.Repository].
func AnonymousRepository(t testing.TB, repoRef string) *remote.Repository {
	t.Helper()
	r, err := remote.NewRepository(repoRef)
	if err != nil {
		t.Fatalf("repository %s: %v", repoRef, err)
	}
	r.PlainHTTP = true
	r.Client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	return r
}

// Tags returns the tags of repo, sorted; nil when the registry does not
// know the repository (nothing was ever pushed to it). Other errors fail
// the test.
func Tags(ctx context.Context, t testing.TB, repo *remote.Repository) []string {
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

// FetchAll reads desc (a blob, or a manifest when its media type says so)
// from repo and returns its bytes, failing the test when it cannot be read
// or the bytes do not have desc's digest.
func FetchAll(ctx context.Context, t testing.TB, repo *remote.Repository, desc ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		t.Fatalf("fetch %s from %s: %v", desc.Digest, repo.Reference, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s from %s: %v", desc.Digest, repo.Reference, err)
	}
	if got := digest.FromBytes(b); got != desc.Digest {
		t.Fatalf("%s from %s: content has digest %s", desc.Digest, repo.Reference, got)
	}
	return b
}

// ImageGraph returns the descriptors of the single-platform image desc in
// repoRef, read with the builder's client: desc itself (its media type
// taken from the manifest), its config and its layers, in that order. It
// fails the test when the manifest cannot be read or parsed.
func (b *Builder) ImageGraph(ctx context.Context, t testing.TB, repoRef string, desc ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	_, raw := b.FetchManifest(ctx, t, repoRef, desc.Digest.String())
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest %s: %v", desc.Digest, err)
	}
	desc.MediaType = m.MediaType
	return append([]ocispec.Descriptor{desc, m.Config}, m.Layers...)
}

// Graph returns every descriptor reachable from the manifest or index d in
// repo, each digest once, depth first: d itself (as the registry resolves
// it), then for each manifest its subject if it has one, config and layers,
// and for each index its subject and children. Referrers and tag-based
// signatures point at d rather than from it and are not included. Blobs are
// listed from their parent's descriptor without being read, so a missing
// blob is not noticed here; the test fails when d cannot be resolved or a
// manifest below it cannot be fetched or parsed.
func Graph(ctx context.Context, t testing.TB, repo *remote.Repository, d digest.Digest) []ocispec.Descriptor {
	t.Helper()
	root, err := repo.Resolve(ctx, d.String())
	if err != nil {
		t.Fatalf("resolve %s@%s: %v", repo.Reference, d, err)
	}
	seen := map[digest.Digest]bool{}
	var out []ocispec.Descriptor
	var walk func(desc ocispec.Descriptor)
	walk = func(desc ocispec.Descriptor) {
		if seen[desc.Digest] {
			return
		}
		seen[desc.Digest] = true
		out = append(out, desc)
		succ, err := content.Successors(ctx, repo, desc)
		if err != nil {
			t.Fatalf("successors of %s (%s, below %s) in %s: %v", desc.Digest, desc.MediaType, d, repo.Reference, err)
		}
		for _, s := range succ {
			walk(s)
		}
	}
	walk(root)
	return out
}

// HumanBytes formats n as ferry prints byte sizes: "N B" below 1 KiB, else
// binary units with one decimal ("1.5 KiB", "20.0 MiB", up to EiB). It
// follows humanBytes of cmd/ferry, which this module cannot import.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// LayerFiles reads a gzip-compressed tar layer and returns its regular
// files by entry name, a leading "./" removed, failing the test when the
// layer cannot be read.
func LayerFiles(t testing.TB, blob []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("layer: gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("layer: tar: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("layer: tar entry %s: %v", h.Name, err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
}

// ReadFile returns the content of the file at path, failing the test when
// it cannot be read.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ErrorLinePrefix starts the line ferry prints on stderr when a command fails.
const ErrorLinePrefix = "ferry: Error:"

// ErrorLine returns the "ferry: Error: ..." line of a failed run. It marks
// the test failed when the run did not exit with status 1, when stderr
// shows a panic or a goroutine dump, or when there is more than one such
// line, and stops the test when there is none.
func ErrorLine(t testing.TB, res Result) string {
	t.Helper()
	if res.ExitCode != 1 {
		t.Errorf("exit status %d, want 1", res.ExitCode)
	}
	if strings.Contains(res.Stderr, "panic:") || strings.Contains(res.Stderr, "goroutine ") {
		t.Errorf("stderr shows a panic or a goroutine dump:\n%s", res.Stderr)
	}
	var lines []string
	for l := range strings.SplitSeq(res.Stderr, "\n") {
		if strings.HasPrefix(l, ErrorLinePrefix) {
			lines = append(lines, strings.TrimRight(l, "\r"))
		}
	}
	switch len(lines) {
	case 0:
		t.Fatalf("no %q line on stderr:\n%s", ErrorLinePrefix, res.Stderr)
	case 1:
	default:
		t.Errorf("%d %q lines on stderr, want 1:\n%s", len(lines), ErrorLinePrefix, res.Stderr)
	}
	return lines[0]
}
