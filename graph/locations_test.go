package graph

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/lockfile"
)

// wireTarget is a registryTarget that logs, in order, every request a
// registry would see, one entry per call: "HEAD <digest>" (Exists),
// "HEAD <tag>" (Resolve), "PUT <digest>" (Push: a POST and a PUT for a
// blob, a PUT for a manifest), "PUT <tag>" (PushReference), "TAG <tag>"
// (Tag). fail, when set, may refuse a call (with the error it returns)
// before it reaches the registry; it may be called concurrently.
type wireTarget struct {
	*registryTarget
	fail func(call string) error

	mu    sync.Mutex
	calls []string
}

func newWireTarget() *wireTarget { return &wireTarget{registryTarget: newRegistryTarget()} }

func (w *wireTarget) note(call string) error {
	w.mu.Lock()
	w.calls = append(w.calls, call)
	w.mu.Unlock()
	if w.fail != nil {
		return w.fail(call)
	}
	return nil
}

func (w *wireTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if err := w.note("HEAD " + desc.Digest.String()); err != nil {
		return false, err
	}
	return w.registryTarget.Exists(ctx, desc)
}

func (w *wireTarget) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	if err := w.note("HEAD " + ref); err != nil {
		return ocispec.Descriptor{}, err
	}
	return w.registryTarget.Resolve(ctx, ref)
}

func (w *wireTarget) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if err := w.note("PUT " + desc.Digest.String()); err != nil {
		return err
	}
	return w.registryTarget.Push(ctx, desc, r)
}

func (w *wireTarget) PushReference(ctx context.Context, desc ocispec.Descriptor, r io.Reader, ref string) error {
	if err := w.note("PUT " + ref); err != nil {
		return err
	}
	return w.registryTarget.PushReference(ctx, desc, r, ref)
}

func (w *wireTarget) Tag(ctx context.Context, desc ocispec.Descriptor, ref string) error {
	if err := w.note("TAG " + ref); err != nil {
		return err
	}
	return w.registryTarget.Tag(ctx, desc, ref)
}

// log returns the calls so far; from > 0 skips the first ones.
func (w *wireTarget) log(from int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls[from:])
}

// requests counts what calls cost at a registry: a blob push is a POST
// and a PUT, a Tag a GET and a PUT, anything else one request.
func requests(calls []string, blobs map[string]bool) int {
	n := 0
	for _, c := range calls {
		n++
		verb, what, _ := strings.Cut(c, " ")
		if verb == "TAG" || (verb == "PUT" && blobs[what]) {
			n++
		}
	}
	return n
}

// touching keeps the calls that name one of names.
func touching(calls []string, names ...string) []string {
	var out []string
	for _, c := range calls {
		_, what, _ := strings.Cut(c, " ")
		if slices.Contains(names, what) {
			out = append(out, c)
		}
	}
	return out
}

// locationsImage is the ImageLocations image the copy writes for bundle.
type locationsImage struct {
	tag                     string
	manifest, config, layer memBlob
}

func locationsOf(t *testing.T, g *Graph, bundle digest.Digest) locationsImage {
	t.Helper()
	n := nodeByDigest(g, bundle)
	m, blobs, err := imageLocationsImage(BundleImageLocations(n))
	if err != nil {
		t.Fatal(err)
	}
	return locationsImage{tag: ImageLocationsTag(bundle), manifest: m, config: blobs[0], layer: blobs[1]}
}

func (l locationsImage) names() []string {
	return []string{l.tag, l.manifest.desc.Digest.String(), l.config.desc.Digest.String(), l.layer.desc.Digest.String()}
}

func (l locationsImage) blobs() map[string]bool {
	return map[string]bool{l.config.desc.Digest.String(): true, l.layer.desc.Digest.String(): true}
}

// checkLocationsAt checks that l's tag points at l's manifest in dst,
// whose bytes, config and layer are l's, and that the layer holds
// image-locations.yml listing want.
func checkLocationsAt(t *testing.T, dst *wireTarget, l locationsImage, want []string) {
	t.Helper()
	ctx := context.Background()
	got := resolveTag(t, dst.countingTarget, l.tag)
	if got.Digest != l.manifest.desc.Digest || got.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("%s -> %s (%s), want %s", l.tag, got.Digest, got.MediaType, l.manifest.desc.Digest)
	}
	for _, b := range []memBlob{l.manifest, l.config, l.layer} {
		data, err := content.FetchAll(ctx, dst.countingTarget, b.desc)
		if err != nil || !bytes.Equal(data, b.data) {
			t.Fatalf("%s at the destination: %v, bytes equal %v", b.desc.Digest, err, bytes.Equal(data, b.data))
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(l.layer.data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ImageLocationsFile {
		t.Fatalf("layer's first entry %v, %v; want %s", hdr, err, ImageLocationsFile)
	}
	yml, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	locs, err := lockfile.ParseImageLocations(ImageLocationsFile, yml)
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, img := range locs.Images {
		images = append(images, img.Image)
	}
	if !slices.Equal(images, want) {
		t.Errorf("image-locations.yml lists %v, want %v", images, want)
	}
}

// TestImageLocationsRequests: a first copy writes each bundle's
// ImageLocations image in 8 requests (HEAD of its tag, HEAD + POST + PUT
// of its config and of its layer, one PUT of the manifest by its tag:
// 10 before), after every other upload and before the user tag; a second
// copy asks its tag once (4 before) and writes nothing; a tag pointing at
// another image is pointed at ferry's; a failed copy writes none.
func TestImageLocationsRequests(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	outer, inner := locationsOf(t, g, w.o.Digest), locationsOf(t, g, w.i.Digest)
	wantOuter := slices.Sorted(slices.Values([]string{ref("src.io/app1", w.a), ref("src.io/inner", w.i), ref("src.io/app2", w.b), ref("src.io/multi", w.m)}))
	wantInner := []string{ref("src.io/app2", w.b)}

	dst := newWireTarget()
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	first := dst.log(0)
	for _, l := range []locationsImage{outer, inner} {
		calls := touching(first, l.names()...)
		c, ly := l.config.desc.Digest.String(), l.layer.desc.Digest.String()
		want := []string{"HEAD " + l.tag, "HEAD " + c, "PUT " + c, "HEAD " + ly, "PUT " + ly, "PUT " + l.tag}
		if !slices.Equal(slices.Sorted(slices.Values(calls)), slices.Sorted(slices.Values(want))) {
			t.Errorf("first copy, %s: %v, want (in some order) %v", l.tag, calls, want)
		} else if calls[0] != "HEAD "+l.tag || calls[len(calls)-1] != "PUT "+l.tag {
			t.Errorf("first copy, %s: %v, want its tag asked first and pushed last", l.tag, calls)
		}
		if n := requests(calls, l.blobs()); n != 8 {
			t.Errorf("first copy, %s: %d requests, want 8", l.tag, n)
		}
		checkLocationsAt(t, dst, l, map[string][]string{outer.tag: wantOuter, inner.tag: wantInner}[l.tag])
	}
	// Written after every other upload, before the user tag.
	firstLoc, lastOther := len(first), -1
	for i, c := range first {
		if len(touching([]string{c}, append(outer.names(), inner.names()...)...)) > 0 {
			firstLoc = min(firstLoc, i)
		} else if strings.HasPrefix(c, "PUT ") && c != "PUT v1" {
			lastOther = i
		}
	}
	if v1 := slices.Index(first, "PUT v1"); lastOther > firstLoc || v1 < firstLoc {
		t.Errorf("ImageLocations written from call %d, other uploads until %d, v1 at %d: %v", firstLoc, lastOther, v1, first)
	}

	// Second copy: one HEAD each.
	mark := len(dst.log(0))
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	second := dst.log(mark)
	for _, l := range []locationsImage{outer, inner} {
		if calls := touching(second, l.names()...); !slices.Equal(calls, []string{"HEAD " + l.tag}) {
			t.Errorf("second copy, %s: %v, want only its tag asked", l.tag, calls)
		}
	}

	// A tag pointing elsewhere (another tool's image) is pointed at ferry's.
	if err := dst.countingTarget.Store.Tag(ctx, plain(w.a), outer.tag); err != nil {
		t.Fatal(err)
	}
	mark = len(dst.log(0))
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	c, ly := outer.config.desc.Digest.String(), outer.layer.desc.Digest.String()
	if calls, want := touching(dst.log(mark), outer.names()...), []string{"HEAD " + outer.tag, "HEAD " + c, "HEAD " + ly, "PUT " + outer.tag}; !slices.Equal(slices.Sorted(slices.Values(calls)), slices.Sorted(slices.Values(want))) {
		t.Errorf("tag elsewhere: %v, want (in some order) %v", calls, want)
	}
	checkLocationsAt(t, dst, outer, wantOuter)

	// A copy that fails writes no ImageLocations image.
	broken := newWireTarget()
	refused := "PUT " + content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("arm64 layer")).Digest.String()
	broken.fail = func(call string) error {
		if call == refused {
			return &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusBadRequest}
		}
		return nil
	}
	if _, err := CopyToRepo(ctx, w.src, g, broken, CopyOptions{DestRepo: "dst.io/apps"}); err == nil {
		t.Fatal("copy succeeded with a layer refused")
	}
	if calls := touching(broken.log(0), append(outer.names(), inner.names()...)...); len(calls) != 0 {
		t.Errorf("failed copy touched the ImageLocations images: %v", calls)
	}
}

// TestWriteImageLocations: transient refusals are retried, others are
// not; a destination that is not a registry gets the manifest by digest
// and a Tag.
func TestWriteImageLocations(t *testing.T) {
	locs := &lockfile.ImageLocations{Images: []lockfile.ImageLocation{{Image: "src.io/app@" + digest.FromString("app").String()}}}
	m, blobs, err := imageLocationsImage(locs)
	if err != nil {
		t.Fatal(err)
	}
	const tag = "sha256-0123.image-locations.imgpkg"
	unavailable := &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusServiceUnavailable}
	badRequest := &errcode.ErrorResponse{Method: http.MethodPut, StatusCode: http.StatusBadRequest}
	cfg := "PUT " + blobs[0].desc.Digest.String()
	tests := []struct {
		name     string
		failures map[string][]error // call -> errors of its first attempts
		wantErr  *errcode.ErrorResponse
		want     map[string]int // calls -> how many
	}{
		{name: "clean", want: map[string]int{"HEAD " + tag: 1, cfg: 1, "PUT " + tag: 1}},
		{
			name:     "transient refusals retried",
			failures: map[string][]error{"PUT " + tag: {unavailable, unavailable}, cfg: {unavailable}},
			want:     map[string]int{"HEAD " + tag: 1, cfg: 2, "PUT " + tag: 3},
		},
		{
			name:     "other refusal returned",
			failures: map[string][]error{"PUT " + tag: {badRequest}},
			wantErr:  badRequest,
			want:     map[string]int{"HEAD " + tag: 1, cfg: 1, "PUT " + tag: 1},
		},
		{
			name:     "transient refusals until the retries run out",
			failures: map[string][]error{cfg: slices.Repeat([]error{unavailable}, uploadRetries+1)},
			wantErr:  unavailable,
			want:     map[string]int{"HEAD " + tag: 1, cfg: uploadRetries + 1, "PUT " + tag: 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := newWireTarget()
			var mu sync.Mutex
			dst.fail = func(call string) error {
				mu.Lock()
				defer mu.Unlock()
				if errs := tc.failures[call]; len(errs) > 0 {
					tc.failures[call] = errs[1:]
					return errs[0]
				}
				return nil
			}
			err := writeImageLocations(context.Background(), dst, m, blobs, tag, time.Millisecond)
			var resp *errcode.ErrorResponse
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantErr != nil && (!errors.As(err, &resp) || resp.StatusCode != tc.wantErr.StatusCode):
				t.Fatalf("err = %v, want status %d", err, tc.wantErr.StatusCode)
			}
			calls := dst.log(0)
			for call, n := range tc.want {
				if got := countOf(calls, call); got != n {
					t.Errorf("%s %d times, want %d: %v", call, got, n, calls)
				}
			}
			if tc.wantErr == nil {
				if got := resolveTag(t, dst.countingTarget, tag); got.Digest != m.desc.Digest {
					t.Errorf("%s -> %s, want %s", tag, got.Digest, m.desc.Digest)
				}
			} else if _, err := dst.countingTarget.Resolve(context.Background(), tag); !errors.Is(err, errdef.ErrNotFound) {
				t.Errorf("tag after a failure: %v, want not found", err)
			}
		})
	}

	t.Run("not a registry", func(t *testing.T) {
		dst := newCountingTarget()
		if err := writeImageLocations(context.Background(), dst, m, blobs, tag, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if got := resolveTag(t, dst, tag); got.Digest != m.desc.Digest {
			t.Errorf("%s -> %s, want %s", tag, got.Digest, m.desc.Digest)
		}
		if dst.pushes[m.desc.Digest] != 1 || !slices.Equal(dst.tags, []string{tag}) {
			t.Errorf("manifest pushed %d times, tags %v; want once and %s", dst.pushes[m.desc.Digest], dst.tags, tag)
		}
	})
}

// barrierTarget holds each blob push until want of them are in flight at
// once, or gives up after a while (a sequential writer fails).
type barrierTarget struct {
	*wireTarget
	want int
	all  chan struct{}
	once sync.Once
	n    int
	mu   sync.Mutex
}

func (b *barrierTarget) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if !isImageManifest(desc.MediaType) {
		b.mu.Lock()
		b.n++
		if b.n == b.want {
			b.once.Do(func() { close(b.all) })
		}
		b.mu.Unlock()
		select {
		case <-b.all:
		case <-time.After(5 * time.Second):
			return errors.New("blob pushes not concurrent")
		}
	}
	return b.wireTarget.Push(ctx, desc, r)
}

// TestImageLocationsBlobsConcurrent: the config and the layer are pushed
// at the same time.
func TestImageLocationsBlobsConcurrent(t *testing.T) {
	locs := &lockfile.ImageLocations{Images: []lockfile.ImageLocation{{Image: "src.io/app@" + digest.FromString("app").String()}}}
	m, blobs, err := imageLocationsImage(locs)
	if err != nil {
		t.Fatal(err)
	}
	dst := &barrierTarget{wireTarget: newWireTarget(), want: 2, all: make(chan struct{})}
	if err := writeImageLocations(context.Background(), dst, m, blobs, "t", time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// TestImageLocationsImageDeterministic: the same locations give the same
// bytes, whatever the order of the images (so a tag pointing at them means
// they are there); other locations give another image.
func TestImageLocationsImageDeterministic(t *testing.T) {
	a := lockfile.ImageLocation{Image: "src.io/a@" + digest.FromString("a").String()}
	b := lockfile.ImageLocation{Image: "src.io/b@" + digest.FromString("b").String(), IsBundle: true}
	build := func(images ...lockfile.ImageLocation) []byte {
		t.Helper()
		m, blobs, err := imageLocationsImage(&lockfile.ImageLocations{Images: images})
		if err != nil {
			t.Fatal(err)
		}
		var all []byte
		for _, x := range append(blobs, m) {
			all = append(all, x.data...)
		}
		return all
	}
	ab := build(a, b)
	if !bytes.Equal(ab, build(a, b)) || !bytes.Equal(ab, build(b, a)) {
		t.Error("the same locations built twice differ")
	}
	if bytes.Equal(ab, build(a)) {
		t.Error("other locations give the same image")
	}
}
