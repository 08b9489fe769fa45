package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// registryTarget is a countingTarget that, like a registry, pushes a
// manifest by tag (registry.ReferencePusher: one PUT stores the manifest,
// found by digest afterwards, and points the tag at it) and logs what a
// registry would answer: manifests asked for by digest (HEAD), tag lookups
// (HEAD), manifest reads (GET), manifest pushes by digest and by tag (PUT).
// With validate, it refuses, as distribution does by default, an index
// whose children it does not hold, pushed by digest or by tag.
type registryTarget struct {
	*countingTarget
	validate bool

	mu         sync.Mutex
	resolved   []string        // references resolved
	asked      []digest.Digest // manifests asked for by digest
	fetched    int             // manifests read back from the destination
	manPushes  []digest.Digest // manifests pushed by digest
	refPuts    []string        // tags pushed with the manifest bytes
	refDigests []digest.Digest // what each of refPuts pushed
}

func newRegistryTarget() *registryTarget {
	return &registryTarget{countingTarget: newCountingTarget()}
}

func (r *registryTarget) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	r.mu.Lock()
	r.resolved = append(r.resolved, reference)
	r.mu.Unlock()
	return r.countingTarget.Resolve(ctx, reference)
}

func (r *registryTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		r.mu.Lock()
		r.asked = append(r.asked, desc.Digest)
		r.mu.Unlock()
	}
	return r.countingTarget.Exists(ctx, desc)
}

func (r *registryTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if isImageManifest(desc.MediaType) || isIndex(desc.MediaType) {
		r.mu.Lock()
		r.fetched++
		r.mu.Unlock()
	}
	return r.countingTarget.Fetch(ctx, desc)
}

func (r *registryTarget) Push(ctx context.Context, desc ocispec.Descriptor, rd io.Reader) error {
	if !isImageManifest(desc.MediaType) && !isIndex(desc.MediaType) {
		return r.countingTarget.Push(ctx, desc, rd)
	}
	data, err := content.ReadAll(rd, desc)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.manPushes = append(r.manPushes, desc.Digest)
	r.mu.Unlock()
	if err := r.refuseIncomplete(ctx, desc, data); err != nil {
		return err
	}
	return r.countingTarget.Push(ctx, desc, bytes.NewReader(data))
}

func (r *registryTarget) PushReference(ctx context.Context, desc ocispec.Descriptor, rd io.Reader, reference string) error {
	data, err := content.ReadAll(rd, desc)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.refPuts = append(r.refPuts, reference)
	r.refDigests = append(r.refDigests, desc.Digest)
	r.mu.Unlock()
	if err := r.refuseIncomplete(ctx, desc, data); err != nil {
		return err
	}
	if err := r.countingTarget.Store.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return r.countingTarget.Store.Tag(ctx, desc, reference)
}

// refuseIncomplete answers 400 MANIFEST_BLOB_UNKNOWN for an index with a
// child missing, when r validates.
func (r *registryTarget) refuseIncomplete(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	if !r.validate || !isIndex(desc.MediaType) {
		return nil
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return err
	}
	for _, c := range idx.Manifests {
		if ok, _ := r.countingTarget.Exists(ctx, c); !ok {
			return &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusBadRequest,
				Errors: errcode.Errors{{Code: "MANIFEST_BLOB_UNKNOWN", Message: "blob unknown to registry", Detail: c.Digest.String()}}}
		}
	}
	return nil
}

func (r *registryTarget) counts() (resolved []string, fetched int, refPuts []string, tags []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.countingTarget.mu.Lock()
	defer r.countingTarget.mu.Unlock()
	return slices.Clone(r.resolved), r.fetched, slices.Clone(r.refPuts), slices.Clone(r.countingTarget.tags)
}

// registryLog is what a registryTarget logged up to a point.
type registryLog struct {
	resolved   []string
	asked      []digest.Digest
	fetched    int
	manPushes  []digest.Digest
	refPuts    []string
	refDigests []digest.Digest
	tags       []string // countingTarget.Tag calls (a GET and a PUT at a registry)
}

func (r *registryTarget) log() registryLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.countingTarget.mu.Lock()
	defer r.countingTarget.mu.Unlock()
	return registryLog{
		resolved: slices.Clone(r.resolved), asked: slices.Clone(r.asked), fetched: r.fetched,
		manPushes: slices.Clone(r.manPushes), refPuts: slices.Clone(r.refPuts), refDigests: slices.Clone(r.refDigests),
		tags: slices.Clone(r.countingTarget.tags),
	}
}

// since is what was logged after before.
func (l registryLog) since(before registryLog) registryLog {
	return registryLog{
		resolved: l.resolved[len(before.resolved):], asked: l.asked[len(before.asked):], fetched: l.fetched - before.fetched,
		manPushes: l.manPushes[len(before.manPushes):], refPuts: l.refPuts[len(before.refPuts):],
		refDigests: l.refDigests[len(before.refDigests):], tags: l.tags[len(before.tags):],
	}
}

// manifestWrites counts the manifest PUTs a registry would see: pushes by
// digest, pushes by tag, and Tag calls.
func (l registryLog) manifestWrites() int {
	return len(l.manPushes) + len(l.refPuts) + len(l.tags)
}

// TestNodeTagsPushedWithTheirManifests: on a registry, the first copy
// pushes the manifest of each image and index once, by its imgpkg tag (no
// push by digest, no second PUT for the tag); a bundle's manifest is pushed
// by digest and tagged once the whole copy succeeded (its images are not
// below it). It asks whether the destination has each node by its tag (not
// also by digest), never asks for the copy's virtual root and reads
// nothing back; the index's children, which get no tag, are asked for and
// pushed by digest; the user tag is pushed last, with the bytes in hand. A
// second copy asks for each node's tag once and writes nothing.
func TestNodeTagsPushedWithTheirManifests(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	dst := newRegistryTarget()
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	first := dst.log()
	nodeTag := map[digest.Digest]string{}
	for _, n := range g.Nodes {
		if !n.Signature && !n.Referrer {
			nodeTag[n.Desc.Digest] = ImgpkgTag(n.Desc.Digest)
		}
	}
	if len(nodeTag) != 5 {
		t.Fatalf("%d tagged nodes, want 5 (two bundles, two images, an index)", len(nodeTag))
	}
	bundles := []digest.Digest{w.o.Digest, w.i.Digest}
	lastOther := -1 // where the last image or index tag was pushed
	for d, tag := range nodeTag {
		if !slices.Contains(bundles, d) {
			lastOther = max(lastOther, slices.Index(first.refPuts, tag))
		}
	}
	for d, tag := range nodeTag {
		bundle := slices.Contains(bundles, d)
		if n := countOf(first.refPuts, tag); n != 1 {
			t.Errorf("tag %s pushed %d times, want once", tag, n)
		}
		if i := slices.Index(first.refPuts, tag); i >= 0 && first.refDigests[i] != d {
			t.Errorf("tag %s pushed with the manifest %s, want %s", tag, first.refDigests[i], d)
		}
		if n, want := countOf(first.manPushes, d), map[bool]int{false: 0, true: 1}[bundle]; n != want {
			t.Errorf("manifest %s (bundle %v) pushed by digest %d times, want %d", d, bundle, n, want)
		}
		if i := slices.Index(first.refPuts, tag); bundle && i < lastOther {
			t.Errorf("bundle tag %s pushed before the tag of an image (%v)", tag, first.refPuts)
		}
		if n := countOf(first.resolved, tag); n != 1 {
			t.Errorf("tag %s looked up %d times, want once (does the destination have the node?)", tag, n)
		}
		if n := countOf(first.asked, d); n != 0 {
			t.Errorf("manifest %s asked for by digest %d times, want 0 (its tag answers)", d, n)
		}
		if got := resolveTag(t, dst, tag); got.Digest != d {
			t.Errorf("%s points at %s, want %s", tag, got.Digest, d)
		}
		if ok, err := dst.countingTarget.Exists(ctx, plain(nodeByDigest(g, d).Desc)); !ok || err != nil {
			t.Errorf("manifest %s not found by digest after its push: %v, %v", d, ok, err)
		}
	}
	locs := []digest.Digest{resolveTag(t, dst, ImageLocationsTag(w.o.Digest)).Digest, resolveTag(t, dst, ImageLocationsTag(w.i.Digest)).Digest}
	// Asked for by digest: the index's children, once each; never the
	// virtual root, nor the ImageLocations images (asked by their tags,
	// pushed by them, see TestImageLocationsRequests).
	wantAsked := []digest.Digest{w.m1.Digest, w.m2.Digest}
	slices.Sort(wantAsked)
	if got := slices.Sorted(slices.Values(first.asked)); !slices.Equal(got, wantAsked) {
		t.Errorf("asked for by digest %v, want %v", got, wantAsked)
	}
	for i, b := range bundles {
		tag := ImageLocationsTag(b)
		if j := slices.Index(first.refPuts, tag); countOf(first.refPuts, tag) != 1 || first.refDigests[j] != locs[i] {
			t.Errorf("%s pushed %d times, want once with its manifest %s", tag, countOf(first.refPuts, tag), locs[i])
		}
	}
	wantPushed := slices.Sorted(slices.Values(append(slices.Clone(wantAsked), bundles...)))
	if got := slices.Sorted(slices.Values(first.manPushes)); !slices.Equal(got, wantPushed) {
		t.Errorf("pushed by digest %v, want %v (the bundles and the children)", got, wantPushed)
	}
	if n := countOf(first.refPuts, "v1"); n != 1 || first.refPuts[len(first.refPuts)-1] != "v1" {
		t.Errorf("v1 pushed %d times, last of %v; want once, last", n, first.refPuts)
	}
	if slices.Contains(first.resolved, "v1") {
		t.Error("v1 looked up although the copy had just pushed its manifest")
	}
	if got := resolveTag(t, dst, "v1"); got.Digest != w.o.Digest {
		t.Errorf("v1 points at %s, want %s", got.Digest, w.o.Digest)
	}
	if first.fetched != 0 || len(first.tags) != 0 {
		t.Errorf("first copy read %d manifests back and tagged %v through Tag", first.fetched, first.tags)
	}
	// 5 nodes + 2 bundle tags + 2 children + 2 ImageLocations images
	// (pushed by their tags) + v1; every node tag pushed after its manifest
	// would make 15, and each ImageLocations tag after its manifest 2 more.
	if n := first.manifestWrites(); n != 12 {
		t.Errorf("%d manifest writes, want 12", n)
	}

	// Second copy: every manifest is there; each tag is looked up once
	// and nothing is written.
	before := dst.log()
	res, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"})
	if err != nil {
		t.Fatal(err)
	}
	second := dst.log().since(before)
	if n := second.manifestWrites(); n != 0 {
		t.Errorf("second copy wrote %d manifests: %+v", n, second)
	}
	if second.fetched != 0 {
		t.Errorf("second copy read %d manifests back", second.fetched)
	}
	for _, tag := range append(slices.Collect(maps.Values(nodeTag)), "v1") {
		if n := countOf(second.resolved, tag); n != 1 {
			t.Errorf("second copy looked tag %s up %d times, want 1", tag, n)
		}
	}
	if len(second.asked) != 0 {
		t.Errorf("second copy asked for %v by digest, want nothing (the ImageLocations images are asked by tag)", second.asked)
	}
	if res.NodesSkipped != int64(len(g.Nodes)) || res.BytesPushed != 0 {
		t.Errorf("second result = %+v, want %d nodes skipped, nothing pushed", res, len(g.Nodes))
	}
}

func countOf[T comparable](list []T, s T) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func TestPutTagWithSubjectUsesTag(t *testing.T) {
	ctx := context.Background()
	dst := newRegistryTarget()
	subject := pushBlob(t, dst.Store, ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2}`))
	tests := []struct {
		name    string
		body    string
		wantPut bool // PushReference, not Tag
	}{
		{"no subject", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`, true},
		{"null subject", `{"schemaVersion":2,"subject":null,"layers":[]}`, true},
		{"with subject", fmt.Sprintf(`{"schemaVersion":2,"subject":{"mediaType":%q,"digest":%q,"size":%d},"layers":[]}`, subject.MediaType, subject.Digest, subject.Size), false},
	}
	if !hasSubject([]byte("not json")) {
		t.Error("hasSubject(unreadable) = false, want true (tag the safe way)")
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desc := pushBlob(t, dst.Store, ocispec.MediaTypeImageManifest, []byte(tt.body))
			tag := fmt.Sprintf("t%d", i)
			_, _, p0, t0 := dst.counts()
			if err := putTag(ctx, dst, desc, []byte(tt.body), tag); err != nil {
				t.Fatal(err)
			}
			_, _, p1, t1 := dst.counts()
			if gotPut := len(p1) > len(p0); gotPut != tt.wantPut || len(t1) > len(t0) == tt.wantPut {
				t.Errorf("PushReference %v, Tag %v; want PushReference %v", len(p1) > len(p0), len(t1) > len(t0), tt.wantPut)
			}
			if got := resolveTag(t, dst, tag); got.Digest != desc.Digest {
				t.Errorf("%s -> %s, want %s", tag, got.Digest, desc.Digest)
			}
		})
	}
}

// verifyingTarget claims, through Verifies, that it checks what it serves.
type verifyingTarget struct {
	*memory.Store
	claim bool
}

func (v verifyingTarget) Verifies(desc ocispec.Descriptor, rc io.Reader) bool { return v.claim }

// TestVerifiedHashesOnce: graph wraps a source's reader in its own
// verifier unless the source says it verifies that reader itself.
func TestVerifiedHashesOnce(t *testing.T) {
	data := []byte("some blob")
	desc := content.NewDescriptorFromBytes("application/octet-stream", data)
	tests := []struct {
		name     string
		src      any
		wantSame bool
	}{
		{"plain source: graph verifies", memory.New(), false},
		{"source that verifies: not hashed again", verifyingTarget{memory.New(), true}, true},
		{"source that does not vouch for this reader", verifyingTarget{memory.New(), false}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := io.NopCloser(bytes.NewReader(data))
			got := verified(tt.src, desc, rc)
			if same := got == rc; same != tt.wantSame {
				t.Errorf("reader returned as it is: %v, want %v", same, tt.wantSame)
			}
			if b, err := io.ReadAll(got); err != nil || !bytes.Equal(b, data) {
				t.Errorf("read %q, %v", b, err)
			}
		})
	}
}

// readingStorage reads the whole body as an HTTP client does and, when the
// body fails, reports it wrapped in a *url.Error, as net/http does.
type readingStorage struct {
	content.Storage
	pushes int
}

func (s *readingStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	s.pushes++
	data, err := io.ReadAll(r)
	if err != nil {
		return &url.Error{Op: "Put", URL: "http://reg.test/v2/x/blobs/uploads/abc?_state=long", Err: err}
	}
	return s.Storage.Push(ctx, desc, bytes.NewReader(data))
}

// failingReader returns some bytes, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data[:min(len(f.data), 2)])
	f.data = f.data[n:]
	return n, nil
}

// TestSourceFailureLeads: when the source of an upload fails (a full
// store), the upload is not restarted and the error is the source's, not
// the destination's request around it; a source cut (network) is worth a
// restart; a refetch that fails puts its own cause first.
func TestSourceFailureLeads(t *testing.T) {
	ctx := context.Background()
	data := []byte("a blob read through a store")
	desc := content.NewDescriptorFromBytes("application/octet-stream", data)
	enospc := fmt.Errorf("store: write blob %s: %w", desc.Digest, &fs.PathError{Op: "write", Path: "/store/ingest/x/data", Err: syscall.ENOSPC})
	tests := []struct {
		name         string
		sourceErr    error
		refetchErr   error
		wantOK       bool
		wantRefetch  int
		wantIs       error
		wantPrefix   string
		wantNoSubstr string
	}{
		{"full store: not retried, cause leads", enospc, nil, false, 0, syscall.ENOSPC, "store: write blob " + desc.Digest.String(), "_state"},
		{"source cut: restarted", syscall.ECONNRESET, nil, true, 1, nil, "", ""},
		{"refetch fails: its cause leads", syscall.ECONNRESET, enospc, false, 1, syscall.ENOSPC, "store: write blob " + desc.Digest.String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &readingStorage{Storage: memory.New()}
			refetches := 0
			dst := withUploadRetries(inner, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
				refetches++
				if tt.refetchErr != nil {
					return nil, tt.refetchErr
				}
				return io.NopCloser(bytes.NewReader(data)), nil
			})
			dst.(*retryingStorage).backoff = 0
			err := dst.Push(ctx, desc, &failingReader{data: bytes.Clone(data[:5]), err: tt.sourceErr})
			if (err == nil) != tt.wantOK {
				t.Fatalf("Push: %v, want success %v", err, tt.wantOK)
			}
			if refetches != tt.wantRefetch {
				t.Errorf("refetched %d times, want %d", refetches, tt.wantRefetch)
			}
			if tt.wantOK {
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not match %v", err, tt.wantIs)
			}
			if !strings.HasPrefix(err.Error(), tt.wantPrefix) {
				t.Errorf("error %q does not start with %q", err, tt.wantPrefix)
			}
			if tt.wantNoSubstr != "" && strings.Contains(err.Error(), tt.wantNoSubstr) {
				t.Errorf("error %q mentions %q", err, tt.wantNoSubstr)
			}
		})
	}
}

// TestManifestPushRetriedFromBytes: a manifest is read once; a cut upload
// is restarted from the bytes in hand (no refetch), and the push is
// recorded with its bytes for tagging.
func TestManifestPushRetriedFromBytes(t *testing.T) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, body)
	inner := &flakyStorage{Storage: memory.New(), failures: 2, err: &resetError{}}
	dst := withUploadRetries(inner, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
		t.Error("refetch called for a manifest")
		return nil, errors.New("no refetch")
	})
	dst.(*retryingStorage).backoff = 0
	if err := dst.Push(ctx, desc, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if inner.pushes != 3 {
		t.Errorf("%d pushes, want 3", inner.pushes)
	}
	got, ok := uploadsOf(dst).wasPushed(desc.Digest)
	if !ok || !bytes.Equal(got, body) {
		t.Errorf("wasPushed = %q, %v", got, ok)
	}
	if _, ok := uploadsOf(dst).wasPushed(digest.FromString("other")); ok {
		t.Error("wasPushed true for a digest never pushed")
	}
	// Wrong bytes for a manifest are refused before anything is sent.
	bad := bytes.Clone(body)
	bad[0] = '['
	if err := dst.Push(ctx, content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, []byte("x")), bytes.NewReader(bad)); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Push of wrong manifest bytes: %v, want ErrDigestMismatch", err)
	}
}

// TestTagOnPushSameDestination: a registry destination, whose node
// manifests are pushed by tag, ends up with exactly the tags (pointing at
// the same digests) and the content of a destination whose manifests are
// pushed by digest and tagged afterwards, with plain and repo-based tags.
func TestTagOnPushSameDestination(t *testing.T) {
	for _, repoBased := range []bool{false, true} {
		t.Run(fmt.Sprintf("repo-based tags %v", repoBased), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t)
			sig := pushImage(t, w.src.store("src.io/app1"), imageSpec{layers: [][]byte{[]byte("sig")}, tags: []string{digestTag(w.a.Digest, ".sig")}})
			g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
			byDigest := newCountingTarget() // no PushReference: pushed by digest, then Tag
			byTag := newRegistryTarget()
			opts := CopyOptions{DestRepo: "dst.io/apps", RepoBasedTags: repoBased}
			if _, err := CopyToRepo(ctx, w.src, g, byDigest, opts); err != nil {
				t.Fatal(err)
			}
			if _, err := CopyToRepo(ctx, w.src, g, byTag, opts); err != nil {
				t.Fatal(err)
			}
			l := byTag.log()
			want := slices.Sorted(slices.Values(byDigest.tags))
			got := slices.Sorted(slices.Values(append(l.refPuts, l.tags...)))
			if !slices.Equal(got, want) {
				t.Fatalf("tags pushed by tag %v, want those tagged after a push by digest %v", got, want)
			}
			if len(want) != 5+2+2 { // nodes, ImageLocations, v1 and .sig
				t.Fatalf("%d tags: %v", len(want), want)
			}
			for _, tag := range want {
				if a, b := resolveTag(t, byTag, tag), resolveTag(t, byDigest, tag); a.Digest != b.Digest {
					t.Errorf("%s -> %s, want %s", tag, a.Digest, b.Digest)
				}
			}
			if got := resolveTag(t, byTag, digestTag(w.a.Digest, ".sig")); got.Digest != sig.Digest {
				t.Errorf(".sig -> %s, want %s", got.Digest, sig.Digest)
			}
			for _, n := range g.Nodes {
				for _, d := range blobsOf(t, w.src.store(n.Repo), n.Desc) {
					inA, _ := byTag.countingTarget.Exists(ctx, d)
					inB, _ := byDigest.Exists(ctx, d)
					if !inA || !inB {
						t.Errorf("%s of %s: at the registry %v, at the other %v; want both", d.Digest, n.Ref, inA, inB)
					}
				}
			}
		})
	}
}

// TestTagOnPushFailedCopy: when a push fails, the user tag and the
// signature tag are not applied (they come after everything succeeded);
// imgpkg tags pushed with their manifests point only at manifests whose
// content is all at the destination, and no node above the failed blob is
// tagged.
func TestTagOnPushFailedCopy(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	pushImage(t, w.src.store("src.io/app1"), imageSpec{layers: [][]byte{[]byte("sig")}, tags: []string{digestTag(w.a.Digest, ".sig")}})
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	dst := newRegistryTarget()
	dst.failPush = content.NewDescriptorFromBytes("", []byte("layer b1")).Digest
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/copy"}); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the injected push failure", err)
	}
	for _, tag := range []string{"v1", digestTag(w.a.Digest, ".sig")} {
		if _, err := dst.Resolve(ctx, tag); err == nil {
			t.Errorf("%s applied although a push failed", tag)
		}
	}
	for _, d := range []ocispec.Descriptor{w.b, w.i, w.o} { // b, and the bundles above it
		if _, err := dst.Resolve(ctx, ImgpkgTag(d.Digest)); err == nil {
			t.Errorf("%s tagged although its content failed", d.Digest)
		}
	}
	for _, n := range g.Nodes {
		got, err := dst.Resolve(ctx, ImgpkgTag(n.Desc.Digest))
		if err != nil {
			continue
		}
		if got.Digest != n.Desc.Digest {
			t.Errorf("%s -> %s", ImgpkgTag(n.Desc.Digest), got.Digest)
		}
		for _, d := range blobsOf(t, w.src.store(n.Repo), n.Desc) {
			if ok, _ := dst.countingTarget.Exists(ctx, d); !ok {
				t.Errorf("%s tagged but %s is missing", n.Ref, d.Digest)
			}
		}
	}
}

// TestTagOnPushSparseIndex: an index copied without some children keeps
// its push by digest, so that a registry refusing it is still named
// (SparseIndexError), and is tagged afterwards when accepted; a rewritten
// index is pushed by its tag.
func TestTagOnPushSparseIndex(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	sparse := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64")})
	strict := newRegistryTarget()
	strict.validate = true
	_, err := CopyToRepo(ctx, w.src, sparse, strict, CopyOptions{DestRepo: "dst.io/apps"})
	var se *SparseIndexError
	if !errors.As(err, &se) || se.Digest != w.idx.Digest {
		t.Fatalf("err = %v, want a SparseIndexError for %s", err, w.idx.Digest)
	}
	if l := strict.log(); slices.Contains(l.refDigests, w.idx.Digest) || !slices.Contains(l.manPushes, w.idx.Digest) {
		t.Errorf("sparse index pushed by tag %v, by digest %v; want by digest only", l.refPuts, l.manPushes)
	}

	lenient := newRegistryTarget()
	if _, err := CopyToRepo(ctx, w.src, sparse, lenient, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	l := lenient.log()
	if n := countOf(l.manPushes, w.idx.Digest); n != 1 {
		t.Errorf("sparse index pushed by digest %d times, want once", n)
	}
	if n := countOf(l.refPuts, ImgpkgTag(w.idx.Digest)); n != 1 {
		t.Errorf("sparse index tagged %d times, want once", n)
	}
	if got := resolveTag(t, lenient, ImgpkgTag(w.idx.Digest)); got.Digest != w.idx.Digest {
		t.Errorf("index tag -> %s, want %s", got.Digest, w.idx.Digest)
	}

	rewritten := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64"), RewriteIndexes: true})
	dst := newRegistryTarget()
	dst.validate = true
	if _, err := CopyToRepo(ctx, w.src, rewritten, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatalf("rewritten index: %v", err)
	}
	root := rewritten.Roots[0].Desc.Digest
	l = dst.log()
	if n, m := countOf(l.refPuts, ImgpkgTag(root)), countOf(l.manPushes, root); n != 1 || m != 0 {
		t.Errorf("rewritten index pushed by tag %d times and by digest %d times, want once by tag", n, m)
	}
	if got := resolveTag(t, dst, ImgpkgTag(root)); got.Digest != root {
		t.Errorf("rewritten index tag -> %s, want %s", got.Digest, root)
	}
}
