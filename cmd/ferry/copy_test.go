package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/ferry-oci/ferry/graph"
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
