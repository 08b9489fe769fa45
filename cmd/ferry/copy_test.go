package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/ferry-oci/ferry/graph"
	"github.com/ferry-oci/ferry/ocilayout"
	"github.com/ferry-oci/ferry/store"
)

// copySource is an OCI layout directory written with oras-go (another
// tool's layout: every index.json entry is a root) holding two images that
// share a layer.
type copySource struct {
	dir    string
	images []ocispec.Descriptor
	sizes  map[digest.Digest]int64 // every distinct blob
}

func (c *copySource) total() int64 {
	var n int64
	for _, s := range c.sizes {
		n += s
	}
	return n
}

func newCopySource(t *testing.T) *copySource {
	t.Helper()
	ctx := context.Background()
	c := &copySource{dir: t.TempDir(), sizes: map[digest.Digest]int64{}}
	st, err := oci.New(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	push := func(mt string, b []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mt, b)
		if ok, _ := st.Exists(ctx, d); !ok {
			if err := st.Push(ctx, d, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		c.sizes[d.Digest] = d.Size
		return d
	}
	shared := push(ocispec.MediaTypeImageLayer, bytes.Repeat([]byte("shared base "), 4096))
	for i, name := range []string{"one", "two"} {
		cfg := push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"n":"`+name+`"}}}`))
		own := push(ocispec.MediaTypeImageLayer, bytes.Repeat([]byte(name), 1000*(i+1)))
		m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{shared, own}})
		if err != nil {
			t.Fatal(err)
		}
		md := push(ocispec.MediaTypeImageManifest, m)
		if err := st.Tag(ctx, md, "example.com/team/"+name+":"+name); err != nil {
			t.Fatal(err)
		}
		c.images = append(c.images, md)
	}
	return c
}

// runIn runs ferry in process with FERRY_STORE set to storeDir.
func runIn(t *testing.T, storeDir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("FERRY_STORE", storeDir)
	var out, errOut bytes.Buffer
	code = Execute(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document on stdout:\n%s", s)
	}
	return v
}

func TestCopyDryRunWritesNothing(t *testing.T) {
	src := newCopySource(t)
	storeDir := t.TempDir()
	out := filepath.Join(t.TempDir(), "bundle.tar")
	code, stdout, stderr := runIn(t, storeDir, "copy", "--oci-layout", src.dir, "--to-tar", out, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--dry-run wrote %s (stat: %v)", out, err)
	}
	blobs, err := filepath.Glob(filepath.Join(storeDir, "blobs", "sha256", "*"))
	if err != nil || len(blobs) != 0 {
		t.Errorf("--dry-run from a layout put %d blobs in the store (%v)", len(blobs), err)
	}
	for _, want := range []string{
		"IMAGE", "FETCH", "STORE", "AT DESTINATION",
		"example.com/team/one@sha256:" + src.images[0].Digest.Encoded()[:12], "example.com/team/two@sha256:" + src.images[1].Digest.Encoded()[:12],
		"TOTAL (2 images)",
		"would write 2 images (" + humanBytes(src.total()) + ") to " + out + ": fetch " + humanBytes(src.total()) + " from the source, 0 B already in the store",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "copy | dry run: nothing was copied") || strings.Contains(stderr, "writing") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

func TestCopyDryRunJSONThenCopyJSON(t *testing.T) {
	src := newCopySource(t)
	storeDir := t.TempDir()
	dest := filepath.Join(t.TempDir(), "layout")

	code, stdout, stderr := runIn(t, storeDir, "copy", "--oci-layout", src.dir, "--to-oci-layout", dest, "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	plan := decodeJSON[copyPlanJSON](t, stdout)
	want := graph.PlanBytes{Blobs: len(src.sizes), Total: src.total(), Fetch: src.total()}
	if !plan.DryRun || plan.Total != want || len(plan.Images) != 2 || len(plan.Roots) != 2 {
		t.Fatalf("plan = %+v, want total %+v and 2 images", plan, want)
	}
	if plan.Destination.Type != "oci-layout" || plan.Destination.Path != dest {
		t.Errorf("destination = %+v", plan.Destination)
	}
	// The shared layer counts for the first image only: manifest, config,
	// two layers, then manifest, config, one layer.
	if first, second := plan.Images[0].Bytes, plan.Images[1].Bytes; first.Blobs != 4 || second.Blobs != 3 {
		t.Errorf("blobs per image = %d, %d; want 4 and 3", first.Blobs, second.Blobs)
	}

	code, stdout, stderr = runIn(t, storeDir, "copy", "--oci-layout", src.dir, "--to-oci-layout", dest, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	res := decodeJSON[copyResultJSON](t, stdout)
	wantMoved := movedBytes{Blobs: len(src.sizes), Total: src.total(), Moved: src.total(), Fetched: src.total()}
	if res.DryRun || res.Total != wantMoved {
		t.Errorf("first copy total = %+v, want %+v", res.Total, wantMoved)
	}
	roots := map[string]string{}
	for _, r := range res.Roots {
		roots[r.Digest] = r.Kind
	}
	if len(roots) != 2 || roots[src.images[0].Digest.String()] != "image" || roots[src.images[1].Digest.String()] != "image" {
		t.Errorf("roots = %+v, want the two images", res.Roots)
	}
	if strings.Contains(stderr, "\x1b[") {
		t.Errorf("escape sequences on a non-terminal stderr:\n%q", stderr)
	}

	// Again into the same directory with the same store: nothing to write,
	// and from the source only the manifests, which Gather always reads
	// again to check what they reference.
	code, stdout, stderr = runIn(t, storeDir, "copy", "--oci-layout", src.dir, "--to-oci-layout", dest, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	res = decodeJSON[copyResultJSON](t, stdout)
	wantAgain := movedBytes{Blobs: len(src.sizes), Total: src.total(), Skipped: src.total(), Fetched: src.images[0].Size + src.images[1].Size}
	if res.Total != wantAgain {
		t.Errorf("second copy total = %+v, want %+v", res.Total, wantAgain)
	}
	for _, img := range res.Images {
		if !img.AtDestination {
			t.Errorf("%s not reported at the destination", img.Ref)
		}
	}

	code, stdout, _ = runIn(t, storeDir, "copy", "--oci-layout", src.dir, "--to-oci-layout", dest, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "fetch 0 B from the source, "+humanBytes(src.total())+" already in the store; "+humanBytes(src.total())+" already there") {
		t.Errorf("dry run after the copy:\n%s", stdout)
	}
}

func TestCopyJSONToTar(t *testing.T) {
	src := newCopySource(t)
	out := filepath.Join(t.TempDir(), "x.tar")
	code, stdout, stderr := runIn(t, t.TempDir(), "copy", "--oci-layout", src.dir, "--to-tar", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	res := decodeJSON[copyResultJSON](t, stdout)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := digest.FromReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Destination.Type != "tar" || res.Destination.SHA256 != sum.Encoded() || res.Destination.Path != out {
		t.Errorf("destination = %+v, want the tar and its sha256 %s", res.Destination, sum.Encoded())
	}
	if res.Total.Moved != src.total() {
		t.Errorf("moved %d, want %d", res.Total.Moved, src.total())
	}
	// The plain copy | lines stay on stderr.
	if !strings.Contains(stderr, "copy | writing "+out) || !strings.Contains(stderr, "Succeeded") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

func TestCopyDryRunRefusesLockOutput(t *testing.T) {
	code, stdout, stderr := runIn(t, t.TempDir(), "copy", "-b", "example.com/b:v1", "--to-repo", "example.com/x", "--dry-run", "--lock-output", "x.yml")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "--lock-output cannot be used with --dry-run") {
		t.Errorf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
}

// TestCopyResultAccounting checks the JSON result of a repository copy from
// a hand-made plan and outcomes: each blob counts once, for its image.
func TestCopyResultAccounting(t *testing.T) {
	mk := func(s string, mt string) ocispec.Descriptor {
		return content.NewDescriptorFromBytes(mt, []byte(s))
	}
	a := &graph.Node{Ref: "src.io/a@sha256:x", Repo: "src.io/a", Desc: mk("manifest a", ocispec.MediaTypeImageManifest), Root: true}
	b := &graph.Node{Ref: "src.io/b@sha256:y", Repo: "src.io/b", Desc: mk("manifest b", ocispec.MediaTypeImageManifest)}
	copied, mounted, present, fromStore := mk("copied layer", ocispec.MediaTypeImageLayer), mk("mounted layer", ocispec.MediaTypeImageLayer), mk("present layer!", ocispec.MediaTypeImageLayer), mk("cached", ocispec.MediaTypeImageLayer)
	g := &graph.Graph{Roots: []*graph.Node{a}, Specs: []graph.RootSpec{{Ref: a.Ref}}, Nodes: []*graph.Node{a, b}}
	p := &graph.Plan{Graph: g, Nodes: []graph.NodePlan{{Node: a}, {Node: b}}, Blobs: []graph.PlannedBlob{
		{Desc: a.Desc, Node: a}, {Desc: copied, Node: a}, {Desc: mounted, Node: a},
		{Desc: b.Desc, Node: b}, {Desc: present, Node: b}, {Desc: fromStore, Node: b},
	}}
	done := newOutcomes()
	done.record(a.Desc, graph.BlobCopied)
	done.record(copied, graph.BlobCopied)
	done.record(mounted, graph.BlobMounted)
	done.record(b.Desc, graph.BlobPresent) // present is below b: not reached
	done.record(fromStore, graph.BlobCopied)
	rec := newReadRecorder(nil)
	rec.markRemote(a.Desc)
	rec.markRemote(copied)
	doc := copyResult(p, destinationJSON{Type: "repository", Repository: "dst.io/r"}, "dst.io/r", done, rec, nil)

	wantA := movedBytes{Blobs: 3, Total: a.Desc.Size + copied.Size + mounted.Size, Moved: a.Desc.Size + copied.Size, Mounted: mounted.Size, Fetched: a.Desc.Size + copied.Size}
	wantB := movedBytes{Blobs: 3, Total: b.Desc.Size + present.Size + fromStore.Size, Moved: fromStore.Size, Skipped: b.Desc.Size + present.Size, FromStore: fromStore.Size}
	if got := doc.Images[0].Bytes; got != wantA {
		t.Errorf("image a = %+v, want %+v", got, wantA)
	}
	if got := doc.Images[1].Bytes; got != wantB {
		t.Errorf("image b = %+v, want %+v", got, wantB)
	}
	var wantTotal movedBytes
	wantTotal.add(wantA)
	wantTotal.add(wantB)
	if doc.Total != wantTotal {
		t.Errorf("total = %+v, want %+v", doc.Total, wantTotal)
	}
	if !doc.Images[1].AtDestination || doc.Images[0].AtDestination {
		t.Errorf("atDestination = %v, %v; want false, true", doc.Images[0].AtDestination, doc.Images[1].AtDestination)
	}
	if doc.Roots[0].Destination != "dst.io/r@"+a.Desc.Digest.String() || doc.Images[1].Destination != "dst.io/r@"+b.Desc.Digest.String() {
		t.Errorf("destination references: root %q, image %q", doc.Roots[0].Destination, doc.Images[1].Destination)
	}
}

// TestProgressDraws renders the bars into a buffer treated as a terminal.
func TestProgressDraws(t *testing.T) {
	var buf bytes.Buffer
	status := &statusLines{w: io.Discard}
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("layer"), Size: 3 << 20}
	prog := newCopyProgress(context.Background(), &buf, status, map[digest.Digest]string{layer.Digest: "team/app 0123456789ab"}, true)
	prog.phase("copy", layer.Size)
	status.printf("copy | a line above the bars\n")
	rc := prog.wrap(layer, io.NopCloser(io.LimitReader(zeros{}, layer.Size)))
	if n, err := io.Copy(io.Discard, rc); err != nil || n != layer.Size {
		t.Fatalf("read %d bytes (%v)", n, err)
	}
	rc.Close()
	prog.stop()
	out := buf.String()
	for _, want := range []string{"\x1b[", "copy", "100 %", "3.0 MiB / 3.0 MiB", "done", "copy | a line above the bars"} {
		if !strings.Contains(out, want) {
			t.Errorf("display lacks %q:\n%q", want, out)
		}
	}
	// After stop, lines go straight to the writer again.
	var after bytes.Buffer
	status.w = &after
	status.printf("copy | after\n")
	if after.String() != "copy | after\n" {
		t.Errorf("after stop: %q", after.String())
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestShortNames(t *testing.T) {
	tests := []struct{ fn, in, want string }{
		{"repo", "127.0.0.1:5000/team/app", "team/app"},
		{"repo", "registry.corp.com/apps/x", "apps/x"},
		{"repo", "localhost/app", "app"},
		{"repo", "library/nginx", "library/nginx"},
		{"repo", "r.io/" + strings.Repeat("a", 40), "…" + strings.Repeat("a", 31)},
		{"ref", "r.io/app@sha256:" + strings.Repeat("ab", 32), "r.io/app@sha256:abababababab"},
		{"ref", "r.io/app:v1", "r.io/app:v1"},
	}
	for _, tt := range tests {
		got := shortRepo(tt.in)
		if tt.fn == "ref" {
			got = shortRef(tt.in)
		}
		if got != tt.want {
			t.Errorf("short%s(%q) = %q, want %q", tt.fn, tt.in, got, tt.want)
		}
	}
}

// TestProgressAfterCancel: once the context is cancelled the display is
// gone, and starting a phase or a blob bar must neither panic nor block.
func TestProgressAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var lines bytes.Buffer
	status := &statusLines{w: &lines}
	prog := newCopyProgress(ctx, io.Discard, status, nil, true)
	cancel()
	prog.bars.Wait() // the display stops with its context
	status.printf("copy | while stopped\n")
	prog.phase("write", 10)
	rc := prog.wrap(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("x"), Size: 1}, io.NopCloser(strings.NewReader("x")))
	if b, err := io.ReadAll(rc); err != nil || string(b) != "x" {
		t.Errorf("read %q (%v)", b, err)
	}
	rc.Close()
	prog.stop()
	status.printf("copy | after\n")
	if lines.String() != "copy | while stopped\ncopy | after\n" {
		t.Errorf("lines = %q", lines.String())
	}
}

// indexSource is an OCI layout directory written with oras-go holding an
// index (ref name "multi") of a linux/amd64 and a linux/arm64 image.
type indexSource struct {
	dir           string
	index         ocispec.Descriptor
	amd64, arm64  ocispec.Descriptor
	arm64Only     int64 // bytes of the blobs only the arm64 image has
	armLayer, cfg ocispec.Descriptor
}

func newIndexSource(t *testing.T) *indexSource {
	t.Helper()
	ctx := context.Background()
	s := &indexSource{dir: t.TempDir()}
	st, err := oci.New(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	push := func(mt string, b []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mt, b)
		if ok, _ := st.Exists(ctx, d); !ok {
			if err := st.Push(ctx, d, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	image := func(arch string) (ocispec.Descriptor, ocispec.Descriptor, ocispec.Descriptor) {
		cfg := push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"`+arch+`","os":"linux"}`))
		layer := push(ocispec.MediaTypeImageLayer, bytes.Repeat([]byte(arch), 2000))
		m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}})
		if err != nil {
			t.Fatal(err)
		}
		md := push(ocispec.MediaTypeImageManifest, m)
		md.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		return md, cfg, layer
	}
	s.amd64, _, _ = image("amd64")
	s.arm64, s.cfg, s.armLayer = image("arm64")
	s.arm64Only = s.arm64.Size + s.cfg.Size + s.armLayer.Size
	idx, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{s.amd64, s.arm64}})
	if err != nil {
		t.Fatal(err)
	}
	s.index = push(ocispec.MediaTypeImageIndex, idx)
	// oras-go lists every manifest pushed in index.json: list the index only.
	entry := s.index
	entry.Annotations = map[string]string{ocispec.AnnotationRefName: "multi"}
	list, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{entry}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "index.json"), list, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCopyPlatformUsageErrors(t *testing.T) {
	src := newIndexSource(t)
	dir := t.TempDir()
	bundleLock := filepath.Join(dir, "bundle.lock.yml")
	if err := os.WriteFile(bundleLock, []byte("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: BundleLock\nbundle:\n  image: example.com/b@sha256:"+strings.Repeat("a", 64)+"\n  tag: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.tar")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"bad platform", []string{"-i", "example.com/a:v1", "--to-tar", out, "--platform", "linux"}, []string{`--platform "linux": invalid platform: want os/arch[/variant]`}},
		{"bad platform in a list", []string{"-i", "example.com/a:v1", "--to-tar", out, "--platform", "linux/amd64,arm64"}, []string{`"arm64"`, "invalid platform"}},
		{"rewrite without platform", []string{"-i", "example.com/a:v1", "--to-tar", out, "--rewrite-index"}, []string{"--rewrite-index needs --platform"}},
		{"rewrite a bundle", []string{"-b", "example.com/b:v1", "--to-tar", out, "--platform", "linux/amd64", "--rewrite-index"}, []string{"--rewrite-index cannot be used with -b example.com/b:v1", "images.yml pins each index", "without --rewrite-index"}},
		{"rewrite a BundleLock", []string{"--lock", bundleLock, "--to-tar", out, "--platform", "linux/amd64", "--rewrite-index"}, []string{"--rewrite-index cannot be used with the BundleLock " + bundleLock}},
		{"no match", []string{"--oci-layout", src.dir, "--to-tar", out, "--platform", "linux/s390x"}, []string{"index layout@" + src.index.Digest.String(), "no child of the index matches the platforms asked for (linux/s390x)", "it has linux/amd64, linux/arm64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runIn(t, t.TempDir(), append([]string{"copy"}, tt.args...)...)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s written", out)
			}
		})
	}
}

func TestCopyPlatformDryRun(t *testing.T) {
	src := newIndexSource(t)
	out := filepath.Join(t.TempDir(), "x.tar")
	code, stdout, stderr := runIn(t, t.TempDir(), "copy", "--oci-layout", src.dir, "--to-tar", out, "--platform", "linux/amd64", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"left out of 1 index: 1 child, " + humanBytes(src.arm64Only) + " (--platform linux/amd64)",
		"layout@sha256:" + src.index.Digest.Encoded()[:12] + "  linux/arm64  " + humanBytes(src.arm64Only) + "  (sparse, same digest)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "copy | index layout@"+src.index.Digest.String()+" keeps its digest; left out: linux/arm64") {
		t.Errorf("stderr:\n%s", stderr)
	}

	code, stdout, stderr = runIn(t, t.TempDir(), "copy", "--oci-layout", src.dir, "--to-tar", out, "--platform", "linux/amd64", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	plan := decodeJSON[copyPlanJSON](t, stdout)
	want := leftOutJSON{Image: "layout@" + src.index.Digest.String(), Digest: src.arm64.Digest.String(), Size: src.arm64Only, Reason: "platform", MediaType: ocispec.MediaTypeImageManifest, Platform: "linux/arm64"}
	if len(plan.LeftOut) != 1 || plan.LeftOut[0] != want {
		t.Errorf("leftOut = %+v, want %+v", plan.LeftOut, want)
	}
	if plan.Total.PlatformLeftOut != src.arm64Only || plan.Images[0].Bytes.PlatformLeftOut != src.arm64Only {
		t.Errorf("platformLeftOut total %d, image %d; want %d", plan.Total.PlatformLeftOut, plan.Images[0].Bytes.PlatformLeftOut, src.arm64Only)
	}
	// amd64 and arm64 images have blobs of the same sizes.
	if plan.Total.Total != src.index.Size+src.arm64Only || plan.Total.Blobs != 4 {
		t.Errorf("total %d bytes in %d blobs, want %d in 4", plan.Total.Total, plan.Total.Blobs, src.index.Size+src.arm64Only)
	}
}

func TestCopyPlatformLayoutRoundTrip(t *testing.T) {
	src := newIndexSource(t)
	storeDir := t.TempDir()
	dir := t.TempDir()
	sparse := filepath.Join(dir, "sparse.tar")
	code, _, stderr := runIn(t, storeDir, "copy", "--oci-layout", src.dir, "--to-tar", sparse, "--platform", "linux/amd64")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if code, stdout, stderr := runIn(t, storeDir, "tar", "verify", sparse); code != 0 {
		t.Errorf("tar verify of a sparse tar: exit %d\n%s%s", code, stdout, stderr)
	}

	// From the sparse tar, without --platform: the index keeps its digest.
	out := filepath.Join(dir, "again")
	code, _, stderr = runIn(t, storeDir, "copy", "--tar", sparse, "--to-oci-layout", out)
	if code != 0 {
		t.Fatalf("copy from the sparse tar: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "left out: linux/arm64 (not in the source)") {
		t.Errorf("stderr:\n%s", stderr)
	}
	idx := readLayoutIndex(t, out)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != src.index.Digest {
		t.Errorf("index.json lists %+v, want the original index", idx.Manifests)
	}
	for d, want := range map[digest.Digest]bool{src.index.Digest: true, src.amd64.Digest: true, src.arm64.Digest: false, src.armLayer.Digest: false} {
		if _, err := os.Stat(filepath.Join(out, "blobs", "sha256", d.Encoded())); (err == nil) != want {
			t.Errorf("blob %s present: %v, want %v", d, err == nil, want)
		}
	}

	// Rewritten from the sparse tar: a complete new index.
	rewritten := filepath.Join(dir, "rewritten")
	code, stdout, stderr := runIn(t, storeDir, "copy", "--tar", sparse, "--to-oci-layout", rewritten, "--platform", "linux/amd64", "--rewrite-index", "--json")
	if code != 0 {
		t.Fatalf("rewrite from the sparse tar: exit %d\n%s", code, stderr)
	}
	res := decodeJSON[copyResultJSON](t, stdout)
	if len(res.Roots) != 1 || res.Roots[0].OriginalDigest != src.index.Digest.String() || res.Roots[0].Digest == src.index.Digest.String() {
		t.Fatalf("roots = %+v, want a new digest and the original", res.Roots)
	}
	want := "copy | index layout@" + src.index.Digest.String() + " rewritten for platforms linux/amd64: now " + res.Roots[0].Digest
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	idx = readLayoutIndex(t, rewritten)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != res.Roots[0].Digest {
		t.Fatalf("index.json lists %+v", idx.Manifests)
	}
	raw, err := os.ReadFile(filepath.Join(rewritten, "blobs", "sha256", idx.Manifests[0].Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var newIndex ocispec.Index
	if err := json.Unmarshal(raw, &newIndex); err != nil {
		t.Fatal(err)
	}
	if len(newIndex.Manifests) != 1 || newIndex.Manifests[0].Digest != src.amd64.Digest || newIndex.Annotations[graph.AnnotationOriginalIndexDigest] != src.index.Digest.String() {
		t.Errorf("new index = %s", raw)
	}
	if code, stdout, stderr := runIn(t, storeDir, "tar", "verify", rewritten); code != 0 {
		t.Errorf("tar verify of the rewritten layout: exit %d\n%s%s", code, stdout, stderr)
	}
}

func readLayoutIndex(t *testing.T, dir string) ocispec.Index {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestCopyWriteTarErrorNamesTheTar(t *testing.T) {
	src := newCopySource(t)
	out := filepath.Join(t.TempDir(), "missing-dir", "x.tar")
	code, _, stderr := runIn(t, t.TempDir(), "copy", "--oci-layout", src.dir, "--to-tar", out)
	if code != 1 || !strings.Contains(stderr, "write tar "+out+": ") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "copy to destination") {
		t.Errorf("stderr says \"copy to destination\":\n%s", stderr)
	}
}

func TestLeftOutLabels(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	arm := &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	got := leftOutLabels([]graph.LeftOutChild{
		{Desc: ocispec.Descriptor{Digest: d("a"), Platform: arm}},
		{Desc: ocispec.Descriptor{Digest: d("b"), Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}}, Attestation: true},
		{Desc: ocispec.Descriptor{Digest: d("c"), MediaType: ocispec.MediaTypeImageIndex}},
		{Desc: ocispec.Descriptor{Digest: d("d"), Platform: &ocispec.Platform{OS: "windows", Architecture: "amd64"}}, Absent: true},
		{Desc: ocispec.Descriptor{Digest: d("e")}, Attestation: true},
	})
	want := "linux/arm64/v8, index sha256:" + d("c").Encoded()[:12] + ", windows/amd64 (not in the source), 2 attestations"
	if got != want {
		t.Errorf("leftOutLabels = %q, want %q", got, want)
	}
}

// foreignSource is an OCI layout directory written with oras-go holding
// one image whose first layer is non-distributable (its bytes are in the
// layout too, so --include-non-distributable-layers can copy it).
func foreignSource(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	push := func(d ocispec.Descriptor, b []byte) ocispec.Descriptor {
		if err := st.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	fb := bytes.Repeat([]byte("foreign"), 300)
	foreign := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerNonDistributableGzip, fb) //nolint:staticcheck // what old Windows images use
	foreign.URLs = []string{"https://example.com/layer"}
	push(foreign, fb)
	lb := []byte("plain layer")
	layer := push(content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, lb), lb)
	cb := []byte(`{"architecture":"amd64","os":"windows"}`)
	cfg := push(content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cb), cb)
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{foreign, layer}})
	if err != nil {
		t.Fatal(err)
	}
	md := push(content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m), m)
	if err := st.Tag(ctx, md, "example.com/team/win:v1"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPlannedLayoutIsGatheredLayout: the layout --to-tar starts before the
// downloads (plannedLayout) is the tar of what Gather then gathers (the same
// TarKey, so the same bytes), whatever the graph leaves out or rewrites;
// otherwise the copy would fall back to writing the tar after the
// downloads and gain nothing.
func TestPlannedLayoutIsGatheredLayout(t *testing.T) {
	ctx := context.Background()
	plain, multi, win := newCopySource(t).dir, newIndexSource(t).dir, foreignSource(t)
	amd64 := []ocispec.Platform{{OS: "linux", Architecture: "amd64"}}
	cases := []struct {
		name      string
		layout    string
		platforms []ocispec.Platform
		rewrite   bool
		include   bool
		blobs     int // in the tar
	}{
		{name: "two images sharing a layer", layout: plain, blobs: 7},
		{name: "index, every platform", layout: multi, blobs: 7},
		{name: "index, one platform (sparse)", layout: multi, platforms: amd64, blobs: 4},
		{name: "index rewritten for one platform", layout: multi, platforms: amd64, rewrite: true, blobs: 4},
		{name: "non-distributable layer left out", layout: win, blobs: 3},
		{name: "non-distributable layer included", layout: win, include: true, blobs: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			layout, err := openLayout(ctx, tc.layout)
			if err != nil {
				t.Fatal(err)
			}
			defer layout.Close()
			src := layoutSource{layout: layout}
			g, err := graph.Discover(ctx, src, layoutRootSpecs(layout.Roots()), graph.DiscoverOptions{
				CosignSignatures: true, Referrers: true, Platforms: tc.platforms, RewriteIndexes: tc.rewrite, Absent: layoutLeftOut(layout.Roots()),
			})
			if err != nil {
				t.Fatal(err)
			}
			blobs, index, err := plannedLayout(ctx, src, g, nil, graph.PlanOptions{IncludeNonDistributable: tc.include})
			if err != nil {
				t.Fatalf("plannedLayout: %v", err)
			}
			planned, err := ocilayout.TarKey(blobs, index)
			if err != nil {
				t.Fatal(err)
			}
			st, err := store.Open(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			gathered, err := graph.Gather(ctx, src, g, st, graph.GatherOptions{IncludeNonDistributable: tc.include})
			if err != nil {
				t.Fatal(err)
			}
			gotIndex, err := ocilayout.NewIndex(layoutRoots(g, withLeftOut(gathered)))
			if err != nil {
				t.Fatal(err)
			}
			want, err := ocilayout.TarKey(gathered.Blobs, gotIndex)
			if err != nil {
				t.Fatal(err)
			}
			if planned != want || len(gathered.Blobs) != tc.blobs {
				t.Errorf("planned tar %s (%d blobs, index %s), gathered %s (%d blobs, want %d; index %s)",
					planned, len(blobs), mustMarshal(t, index), want, len(gathered.Blobs), tc.blobs, mustMarshal(t, gotIndex))
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// feedInput is a small image for the layoutFeed tests: its blobs, its index
// and an opener serving them from memory.
func feedInput(t *testing.T) ([]ocispec.Descriptor, ocispec.Index, ocilayout.BlobOpener) {
	t.Helper()
	data := map[digest.Digest][]byte{}
	add := func(mt string, b []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mt, b)
		data[d.Digest] = b
		return d
	}
	var layers []ocispec.Descriptor
	for i := range 4 {
		layers = append(layers, add(ocispec.MediaTypeImageLayer, bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1))))
	}
	cfg := add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	man := add(ocispec.MediaTypeImageManifest, m)
	index, err := ocilayout.NewIndex([]ocilayout.Root{{Desc: man, Tag: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	open := ocilayout.BlobOpenerFunc(func(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		b, ok := data[d.Digest]
		if !ok {
			return nil, os.ErrNotExist
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	return append(layers, cfg, man), index, open
}

// TestTarFeed: the feed commits the tar (or directory) it started when the
// gathered blobs are those it was started for, writes it anew otherwise,
// and leaves nothing when aborted; either way the bytes are WriteTar's (or
// WriteDir's).
func TestTarFeed(t *testing.T) {
	ctx := context.Background()
	blobs, index, src := feedInput(t)
	want, err := ocilayout.WriteTar(ctx, filepath.Join(t.TempDir(), "ref.tar"), blobs, index, src, ocilayout.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stranger := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, []byte("not planned"))
	cases := []struct {
		name      string
		planned   []ocispec.Descriptor // the tar is started for these
		enqueued  []ocispec.Descriptor // Gather's OnBlob calls
		committed bool                 // the started tar is committed, not rewritten
	}{
		{name: "every blob fed", planned: blobs, enqueued: blobs, committed: true},
		{name: "some blobs fed", planned: blobs, enqueued: blobs[1:4], committed: true},
		{name: "a blob not planned, twice a blob", planned: blobs, enqueued: append([]ocispec.Descriptor{stranger, blobs[0]}, blobs...), committed: true},
		{name: "gathered more than planned", planned: blobs[: len(blobs)-2 : len(blobs)-2], enqueued: blobs},
		{name: "gathered less than planned", planned: append(slices.Clone(blobs), stranger), enqueued: blobs},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out.tar")
			// The manifest is the index's root: plan it even when cut.
			planned := tc.planned
			if !hasDigest(planned, blobs[len(blobs)-1]) {
				planned = append(planned, blobs[len(blobs)-1])
			}
			srcWithStranger := ocilayout.BlobOpenerFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
				if d.Digest == stranger.Digest {
					return io.NopCloser(strings.NewReader("not planned")), nil
				}
				return src.OpenBlob(ctx, d)
			})
			f, err := startLayoutFeed(ctx, layoutOut{path: out}, planned, index, srcWithStranger, ocilayout.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.abort()
			for _, d := range tc.enqueued {
				f.enqueue(d)
			}
			f.drain()
			f.enqueue(blobs[0]) // after drain: ignored, no panic
			var fed int64
			fedBefore := map[digest.Digest]bool{}
			for _, d := range tc.enqueued {
				if hasDigest(planned, d) && !fedBefore[d.Digest] {
					fed += d.Size
				}
				fedBefore[d.Digest] = true
			}
			if f.written() != fed {
				t.Errorf("written %d bytes before finish, want %d", f.written(), fed)
			}
			key := f.b.Key()
			sum, err := f.finish(ctx, layoutOut{path: out}, blobs, index, src, ocilayout.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sum != want {
				t.Errorf("finish = %s, want WriteTar's %s", sum, want)
			}
			wantKey, _ := ocilayout.TarKey(blobs, index)
			if committed := key == wantKey; committed != tc.committed {
				t.Errorf("committed the started tar: %v, want %v", committed, tc.committed)
			}
			if left := listNames(t, dir); !slices.Equal(left, []string{"out.tar"}) {
				t.Errorf("directory holds %v, want only out.tar", left)
			}
		})
	}

	t.Run("abort", func(t *testing.T) {
		dir := t.TempDir()
		f, err := startLayoutFeed(ctx, layoutOut{path: filepath.Join(dir, "out.tar")}, blobs, index, src, ocilayout.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f.enqueue(blobs[0])
		f.abort()
		f.abort()
		if left := listNames(t, dir); len(left) != 0 {
			t.Errorf("abort left %v", left)
		}
		var none *layoutFeed // a copy without a started tar
		none.drain()
		none.abort()
		if none.written() != 0 {
			t.Error("a nil feed wrote bytes")
		}
	})

	t.Run("directory", func(t *testing.T) {
		want := filepath.Join(t.TempDir(), "want")
		if err := ocilayout.WriteDir(ctx, want, blobs, index, src, ocilayout.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		out := layoutOut{path: filepath.Join(t.TempDir(), "out"), dir: true}
		f, err := startLayoutFeed(ctx, out, blobs, index, src, ocilayout.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer f.abort()
		var fed int64
		for _, d := range blobs[:3] {
			f.enqueue(d)
			fed += d.Size
		}
		f.drain()
		if f.written() != fed {
			t.Errorf("written %d bytes before finish, want %d", f.written(), fed)
		}
		if _, err := os.Stat(filepath.Join(out.path, "index.json")); !os.IsNotExist(err) {
			t.Errorf("index.json before finish: %v", err)
		}
		if sum, err := f.finish(ctx, out, blobs, index, src, ocilayout.WriteOptions{}); err != nil || sum != "" {
			t.Fatalf("finish = %q, %v; want no digest", sum, err)
		}
		if got, wantTree := fileTree(t, out.path), fileTree(t, want); !maps.Equal(got, wantTree) {
			t.Errorf("directory holds %v, want WriteDir's %v", got, wantTree)
		}
	})

	t.Run("directory aborted", func(t *testing.T) {
		out := layoutOut{path: filepath.Join(t.TempDir(), "out"), dir: true}
		f, err := startLayoutFeed(ctx, out, blobs, index, src, ocilayout.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f.enqueue(blobs[0])
		f.drain()
		if f.written() != blobs[0].Size {
			t.Fatalf("written %d bytes before the abort, want %d", f.written(), blobs[0].Size)
		}
		f.abort()
		if _, err := os.Stat(out.path); !os.IsNotExist(err) {
			t.Errorf("abort left the new directory: %v", err)
		}
	})

	t.Run("cannot create", func(t *testing.T) {
		_, err := startLayoutFeed(ctx, layoutOut{path: filepath.Join(t.TempDir(), "missing", "out.tar")}, blobs, index, src, ocilayout.WriteOptions{})
		if err == nil {
			t.Error("startLayoutFeed in a missing directory succeeded")
		}
	})
}

func hasDigest(list []ocispec.Descriptor, d ocispec.Descriptor) bool {
	return slices.ContainsFunc(list, func(x ocispec.Descriptor) bool { return x.Digest == d.Digest })
}

// fileTree maps each file under dir (relative path) to its content.
func fileTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		tree[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func listNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestCopyToTarEveryWay: a tar written while the blobs download is the
// same whether the copy plans for itself (plain), plans for --json, or
// finds every blob in the store (warm), and its printed sha256 is the
// file's.
func TestCopyToTarEveryWay(t *testing.T) {
	src := newCopySource(t)
	storeDir := t.TempDir()
	dir := t.TempDir()
	var first []byte
	for _, run := range []struct {
		name string
		args []string
	}{
		{"cold", nil},
		{"warm", nil},
		{"json", []string{"--json"}},
	} {
		out := filepath.Join(dir, run.name+".tar")
		code, stdout, stderr := runIn(t, storeDir, append([]string{"copy", "--oci-layout", src.dir, "--to-tar", out}, run.args...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", run.name, code, stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sum := digest.FromBytes(b)
		if run.args == nil && stdout != sum.Encoded()+"  "+out+"\n" {
			t.Errorf("%s: stdout %q, want the tar's sha256 and path", run.name, stdout)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Errorf("%s: the tar differs from the first run's", run.name)
		}
	}
	if left := listNames(t, dir); !slices.Equal(left, []string{"cold.tar", "json.tar", "warm.tar"}) {
		t.Errorf("directory holds %v", left)
	}
}
