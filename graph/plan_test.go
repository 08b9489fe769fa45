package graph

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// existsCounter wraps storage and counts Exists calls by digest.
type existsCounter struct {
	content.Storage
	mu    sync.Mutex
	asked map[digest.Digest]int
	err   error // returned by every Exists when set
}

func newExistsCounter(st content.Storage) *existsCounter {
	return &existsCounter{Storage: st, asked: map[digest.Digest]int{}}
}

func (e *existsCounter) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	e.mu.Lock()
	e.asked[desc.Digest]++
	e.mu.Unlock()
	if e.err != nil {
		return false, e.err
	}
	return e.Storage.Exists(ctx, desc)
}

// graphBlobs returns every distinct distributable blob of g, with sizes.
func graphBlobs(t *testing.T, src *testSource, g *Graph) map[digest.Digest]int64 {
	t.Helper()
	out := map[digest.Digest]int64{}
	for _, n := range g.Nodes {
		for _, d := range blobsOf(t, src.store(n.Repo), n.Desc) {
			out[d.Digest] = d.Size
		}
	}
	return out
}

func sumSizes(m map[digest.Digest]int64) int64 {
	var n int64
	for _, s := range m {
		n += s
	}
	return n
}

// checkSums checks that node counts add up to the total and that the
// total is a partition of Total (registry mode).
func checkSums(t *testing.T, p *Plan, partition bool) {
	t.Helper()
	var sum PlanBytes
	for _, np := range p.Nodes {
		sum.Blobs += np.Bytes.Blobs
		sum.Total += np.Bytes.Total
		sum.Fetch += np.Bytes.Fetch
		sum.Local += np.Bytes.Local
		sum.Dest += np.Bytes.Dest
		sum.LeftOut += np.Bytes.LeftOut
	}
	if sum != p.Total {
		t.Errorf("node counts add up to %+v, total is %+v", sum, p.Total)
	}
	if len(p.Blobs) != p.Total.Blobs {
		t.Errorf("%d blobs listed, total counts %d", len(p.Blobs), p.Total.Blobs)
	}
	if partition && p.Total.Fetch+p.Total.Local+p.Total.Dest != p.Total.Total {
		t.Errorf("fetch %d + local %d + dest %d != total %d", p.Total.Fetch, p.Total.Local, p.Total.Dest, p.Total.Total)
	}
	if !partition && p.Total.Fetch+p.Total.Local != p.Total.Total {
		t.Errorf("fetch %d + local %d != total %d", p.Total.Fetch, p.Total.Local, p.Total.Total)
	}
}

func nodePlanOf(t *testing.T, p *Plan, d digest.Digest) NodePlan {
	t.Helper()
	for _, np := range p.Nodes {
		if np.Node.Desc.Digest == d {
			return np
		}
	}
	t.Fatalf("no node %s in the plan", d)
	return NodePlan{}
}

func TestPlanCopyEmptyDestination(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	p, err := PlanCopy(ctx, w.src, g, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := graphBlobs(t, w.src, g)
	if p.Total.Blobs != len(want) || p.Total.Total != sumSizes(want) || p.Total.Fetch != p.Total.Total {
		t.Errorf("total = %+v, want %d blobs, %d bytes, all to fetch", p.Total, len(want), sumSizes(want))
	}
	checkSums(t, p, true)
	if len(p.Nodes) != len(g.Nodes) {
		t.Fatalf("%d node plans for %d nodes", len(p.Nodes), len(g.Nodes))
	}
	for i, np := range p.Nodes {
		if np.Node != g.Nodes[i] || np.AtDest {
			t.Errorf("node plan %d = %+v, want node %s not at destination", i, np, g.Nodes[i].Ref)
		}
	}
	// The layer shared by app1 and app2 counts for app1, met first.
	shared := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("shared layer"))
	owners := map[digest.Digest]*Node{}
	for _, pb := range p.Blobs {
		if _, dup := owners[pb.Desc.Digest]; dup {
			t.Errorf("blob %s listed twice", pb.Desc.Digest)
		}
		owners[pb.Desc.Digest] = pb.Node
	}
	if n := owners[shared.Digest]; n == nil || n.Desc.Digest != w.a.Digest {
		t.Errorf("shared layer attributed to %v, want app1 %s", n, w.a.Digest)
	}
	a := nodePlanOf(t, p, w.a.Digest)
	b := nodePlanOf(t, p, w.b.Digest)
	// app1: manifest, config, 2 layers; app2: manifest, its own layer (the
	// config is the same bytes as app1's, the shared layer went to app1).
	if a.Bytes.Blobs != 4 || b.Bytes.Blobs != 2 {
		t.Errorf("app1 has %d blobs, app2 %d; want 4 and 2", a.Bytes.Blobs, b.Bytes.Blobs)
	}
	// The index carries its children.
	m := nodePlanOf(t, p, w.m.Digest)
	if owners[w.m1.Digest] != m.Node || owners[w.m2.Digest] != m.Node {
		t.Errorf("index children not attributed to the index")
	}
}

// TestPlanCopyMatchesCopyToRepo copies part of the graph first, then checks
// that the plan of the full copy says exactly what CopyToRepo then sends,
// and that nothing below a manifest the destination has is asked about.
func TestPlanCopyMatchesCopyToRepo(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dst := newCountingTarget()
	// app1 is already at the destination.
	ga := discover(t, w.src, RootSpec{Ref: ref("src.io/app1", w.a)})
	if _, err := CopyToRepo(ctx, w.src, ga, dst, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	// The local store holds app2's own layer.
	local := memory.New()
	bLayer := pushBlob(t, local, ocispec.MediaTypeImageLayerGzip, []byte("layer b1"))

	asked := newExistsCounter(dst.Store)
	p, err := PlanCopy(ctx, w.src, g, PlanOptions{Local: local, Dest: asked})
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, p, true)
	a := nodePlanOf(t, p, w.a.Digest)
	if !a.AtDest || a.Bytes.Dest != a.Bytes.Total || a.Bytes.Fetch != 0 {
		t.Errorf("app1 = %+v, want all at the destination", a)
	}
	// app1's manifest was asked, its own layer was not (its config and
	// the shared layer are also app2's, which is not there).
	a1 := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, []byte("layer a1"))
	if n := asked.asked[a1.Digest]; n != 0 {
		t.Errorf("app1's layer, below a manifest at the destination, was asked %d times", n)
	}
	if asked.asked[w.a.Digest] != 1 {
		t.Errorf("app1's manifest asked %d times, want 1", asked.asked[w.a.Digest])
	}
	b := nodePlanOf(t, p, w.b.Digest)
	if b.AtDest || b.Bytes.Local != bLayer.Size {
		t.Errorf("app2 = %+v, want its layer (%d bytes) from the store", b, bLayer.Size)
	}

	var mu sync.Mutex
	outcomes := map[digest.Digest]BlobOutcome{}
	var read int64
	res, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{
		OnBlob: func(desc ocispec.Descriptor, how BlobOutcome) {
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := outcomes[desc.Digest]; dup {
				t.Errorf("OnBlob(%s) twice: %v then %v", desc.Digest, prev, how)
			}
			outcomes[desc.Digest] = how
		},
		WrapReader: func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
			return &countReader{ReadCloser: rc, add: func(n int) {
				mu.Lock()
				read += int64(n)
				mu.Unlock()
			}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if toSend := p.Total.Fetch + p.Total.Local; res.BytesPushed != toSend || read != toSend {
		t.Errorf("CopyToRepo pushed %d bytes, read %d through WrapReader; the plan said %d", res.BytesPushed, read, toSend)
	}
	for _, pb := range p.Blobs {
		how, reached := outcomes[pb.Desc.Digest]
		switch {
		case pb.AtDest && reached && how != BlobPresent:
			t.Errorf("%s: planned at destination, copy says %v", pb.Desc.Digest, how)
		case !pb.AtDest && (!reached || how != BlobCopied):
			t.Errorf("%s: planned to copy, copy reached it %v as %v", pb.Desc.Digest, reached, how)
		}
	}

	// Once everything is there, only the nodes are asked about.
	asked = newExistsCounter(dst.Store)
	again, err := PlanCopy(ctx, w.src, g, PlanOptions{Local: local, Dest: asked})
	if err != nil {
		t.Fatal(err)
	}
	if again.Total.Dest != again.Total.Total || again.Total.Fetch != 0 || again.Total.Local != 0 {
		t.Errorf("second plan total = %+v, want everything at the destination", again.Total)
	}
	if len(asked.asked) != len(g.Nodes) {
		t.Errorf("second plan asked the destination about %d digests, want the %d nodes", len(asked.asked), len(g.Nodes))
	}
}

func TestPlanCopyNonDistributable(t *testing.T) {
	ctx := context.Background()
	src := newTestSource()
	st := src.store("src.io/win")
	foreign := pushBlob(t, st, mediaTypeDockerForeignLayer, []byte("windows base layer"))
	foreign.URLs = []string{"https://example.com/base"}
	win := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("app")}, foreign: []ocispec.Descriptor{foreign}})
	linux := pushImage(t, st, imageSpec{layers: [][]byte{[]byte("linux")}})
	idx := pushIndex(t, st, []ocispec.Descriptor{linux, win})
	g := discover(t, src, RootSpec{Ref: ref("src.io/win", idx)})

	tests := []struct {
		include     bool
		wantLeftOut int64
	}{
		{include: false, wantLeftOut: foreign.Size},
		{include: true, wantLeftOut: 0},
	}
	for _, tt := range tests {
		p, err := PlanCopy(ctx, src, g, PlanOptions{IncludeNonDistributable: tt.include})
		if err != nil {
			t.Fatal(err)
		}
		checkSums(t, p, true)
		if p.Total.LeftOut != tt.wantLeftOut {
			t.Errorf("include=%v: left out %d bytes, want %d", tt.include, p.Total.LeftOut, tt.wantLeftOut)
		}
		planned := false
		for _, pb := range p.Blobs {
			planned = planned || pb.Desc.Digest == foreign.Digest
		}
		if planned != tt.include {
			t.Errorf("include=%v: foreign layer planned = %v", tt.include, planned)
		}
		if !tt.include {
			if len(p.LeftOut) != 1 || p.LeftOut[0].Desc.Digest != foreign.Digest || p.LeftOut[0].Node != g.Roots[0] || p.LeftOut[0].Reason != "non-distributable" {
				t.Errorf("left out = %+v, want the foreign layer of the index", p.LeftOut)
			}
		}
		// The plan and the copy agree on the bytes sent.
		res, err := CopyToRepo(ctx, src, g, newCountingTarget(), CopyOptions{IncludeNonDistributable: tt.include})
		if err != nil {
			t.Fatal(err)
		}
		if res.BytesPushed != p.Total.Fetch {
			t.Errorf("include=%v: pushed %d bytes, planned %d", tt.include, res.BytesPushed, p.Total.Fetch)
		}
	}
}

// TestPlanCopyThroughLocal plans a layout: what the destination has is
// reported but still fetched, and Gather reads exactly the blobs the plan
// says to fetch (plus the manifests it always reads again).
func TestPlanCopyThroughLocal(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	local := memory.New()
	inLocal := pushBlob(t, local, ocispec.MediaTypeImageLayerGzip, []byte("layer a1"))
	dest := memory.New()
	atDest := pushBlob(t, dest, ocispec.MediaTypeImageLayerGzip, []byte("layer b1"))
	pushBlob(t, dest, ocispec.MediaTypeImageLayerGzip, []byte("layer a1"))

	p, err := PlanCopy(ctx, w.src, g, PlanOptions{Local: local, Dest: dest, ThroughLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, p, false)
	if p.Total.Dest != atDest.Size+inLocal.Size || p.Total.Local != inLocal.Size {
		t.Errorf("total = %+v, want %d at the destination and %d local", p.Total, atDest.Size+inLocal.Size, inLocal.Size)
	}
	for _, pb := range p.Blobs {
		if pb.Desc.Digest == atDest.Digest && (!pb.Fetch || !pb.AtDest) {
			t.Errorf("a blob only at the destination must be fetched and reported there: %+v", pb)
		}
	}

	var mu sync.Mutex
	read := map[digest.Digest]int64{}
	_, err = Gather(ctx, w.src, g, local, GatherOptions{WrapReader: func(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
		return &countReader{ReadCloser: rc, add: func(n int) {
			mu.Lock()
			read[desc.Digest] += int64(n)
			mu.Unlock()
		}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, pb := range p.Blobs {
		if hasSuccessors(pb.Desc.MediaType) {
			continue // Gather reads every manifest again
		}
		if got := read[pb.Desc.Digest]; (got == pb.Desc.Size) != pb.Fetch || (got != 0 && got != pb.Desc.Size) {
			t.Errorf("%s: Gather read %d bytes through WrapReader, plan says fetch=%v (%d bytes)", pb.Desc.Digest, got, pb.Fetch, pb.Desc.Size)
		}
	}
}

type countReader struct {
	io.ReadCloser
	add func(n int)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.add(n)
	return n, err
}

func TestPlanCopyDestinationError(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: ref("src.io/app1", w.a)})
	denied := &errcode.ErrorResponse{Method: http.MethodHead, StatusCode: http.StatusForbidden}
	dest := newExistsCounter(memory.New())
	dest.err = denied
	_, err := PlanCopy(ctx, w.src, g, PlanOptions{Dest: dest})
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("err = %v, want the destination's 403", err)
	}
}

func TestPlanCopySourceError(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	// The index's children vanish from the source after discovery.
	w.src.mu.Lock()
	w.src.status["src.io/multi"] = http.StatusNotFound
	w.src.mu.Unlock()
	_, err := PlanCopy(ctx, w.src, g, PlanOptions{})
	if err == nil {
		t.Fatal("PlanCopy succeeded without the index's manifests")
	}
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode != http.StatusNotFound {
		t.Errorf("err = %v, want the source's 404", err)
	}
}

func TestPlanBytesToWrite(t *testing.T) {
	b := PlanBytes{Total: 100, Fetch: 60, Local: 10, Dest: 30}
	if got := b.ToWrite(); got != 70 {
		t.Errorf("ToWrite = %d, want 70", got)
	}
}

// headsOf keeps the HEAD calls of a wireTarget log, without the verb.
func headsOf(calls []string) []string {
	var out []string
	for _, c := range calls {
		if what, ok := strings.CutPrefix(c, "HEAD "); ok {
			out = append(out, what)
		}
	}
	return out
}

// TestPlanAsksNodesByTag: against a registry, the plan asks for each
// node's manifest by the tag the copy gives it (one HEAD, never also by
// digest), anything else by digest, each once; a node whose manifest is
// there but untagged, or whose tag points elsewhere, is planned as the copy
// does it (its manifest written again, what it refers to asked for). A copy
// given the plan asks the destination nothing the plan asked, and does
// the same as a copy that asks for itself.
func TestPlanAsksNodesByTag(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	nodeTag := map[digest.Digest]string{}
	for _, n := range g.Nodes {
		nodeTag[n.Desc.Digest] = ImgpkgTag(n.Desc.Digest)
	}
	if len(nodeTag) != 5 {
		t.Fatalf("%d nodes, want 5", len(nodeTag))
	}
	locTags := []string{ImageLocationsTag(w.o.Digest), ImageLocationsTag(w.i.Digest)}

	// An empty destination: every node asked by its tag, the rest by digest.
	dst := newWireTarget()
	p, err := PlanCopy(ctx, w.src, g, PlanOptions{Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, p, true)
	heads := headsOf(dst.log(0))
	for d, tag := range nodeTag {
		if countOf(heads, tag) != 1 || countOf(heads, d.String()) != 0 {
			t.Errorf("node %s: tag asked %d times, digest %d times; want 1 and 0", d, countOf(heads, tag), countOf(heads, d.String()))
		}
	}
	if len(heads) != len(p.Blobs) || len(slices.Compact(slices.Sorted(slices.Values(heads)))) != len(heads) {
		t.Errorf("plan asked %d times (%v) for %d blobs, want each once", len(heads), heads, len(p.Blobs))
	}
	if p.Total.Dest != 0 || p.Total.Fetch != p.Total.Total {
		t.Errorf("plan of an empty destination: %+v", p.Total)
	}
	// The copy given the plan asks only for the ImageLocations images.
	mark := len(dst.log(0))
	res, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps", Plan: p})
	if err != nil {
		t.Fatal(err)
	}
	copyHeads := headsOf(dst.log(mark))
	for _, h := range copyHeads {
		if slices.Contains(heads, h) {
			t.Errorf("the copy asked %s again", h)
		}
	}
	if len(copyHeads) != 6 { // the 2 ImageLocations tags, their configs and layers
		t.Errorf("the copy asked %v, want only the 2 ImageLocations images (6)", copyHeads)
	}
	if res.BytesPushed != p.Total.ToWrite() {
		t.Errorf("copy pushed %d bytes, the plan said %d", res.BytesPushed, p.Total.ToWrite())
	}
	// A copy that asks for itself writes the same.
	self := newWireTarget()
	if _, err := CopyToRepo(ctx, w.src, g, self, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
		t.Fatal(err)
	}
	if got, want := len(headsOf(self.log(0))), len(copyHeads)+len(heads); got != want {
		t.Errorf("copy without the plan asked %d times, want %d", got, want)
	}
	for _, tag := range append(slices.Collect(maps.Values(nodeTag)), append(locTags, "v1")...) {
		if a, b := resolveTag(t, dst.countingTarget, tag), resolveTag(t, self.countingTarget, tag); a.Digest != b.Digest {
			t.Errorf("%s -> %s with the plan, %s without", tag, a.Digest, b.Digest)
		}
	}
	if a, b := dst.log(mark), self.log(0); countPuts(a) != countPuts(b) {
		t.Errorf("with the plan %d writes, without %d", countPuts(a), countPuts(b))
	}

	// Everything there: the plan asks each node's tag once and nothing
	// else; the copy given it asks only the ImageLocations tags and v1.
	mark = len(dst.log(0))
	p2, err := PlanCopy(ctx, w.src, g, PlanOptions{Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	heads = headsOf(dst.log(mark))
	if want := slices.Sorted(maps.Values(nodeTag)); !slices.Equal(slices.Sorted(slices.Values(heads)), want) {
		t.Errorf("second plan asked %v, want the node tags %v", heads, want)
	}
	for _, np := range p2.Nodes {
		if !np.AtDest || np.Bytes.Dest != np.Bytes.Total {
			t.Errorf("node %s = %+v, want at the destination", np.Node.Ref, np)
		}
	}
	mark = len(dst.log(0))
	if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps", Plan: p2}); err != nil {
		t.Fatal(err)
	}
	calls := dst.log(mark)
	if want := slices.Sorted(slices.Values(append(slices.Clone(locTags), "v1"))); !slices.Equal(slices.Sorted(slices.Values(headsOf(calls))), want) || countPuts(calls) != 0 {
		t.Errorf("second copy with the plan: %v, want only %v asked and nothing written", calls, want)
	}
}

func countPuts(calls []string) int {
	n := 0
	for _, c := range calls {
		if !strings.HasPrefix(c, "HEAD ") {
			n++
		}
	}
	return n
}

// TestPlanNodeTagMissing: a node's manifest found by digest but not by its
// tag (missing, elsewhere) is planned to be written, and what it refers to
// is asked for; a destination that is not a registry is asked by digest
// and says the node is there. A plan that asked other tags than the copy
// gives, or asked by digest, does not answer for the copy.
func TestPlanNodeTagMissing(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: ref("src.io/app1", w.a)})
	imgpkgTag, repoTag := ImgpkgTag(w.a.Digest), RepoBasedTag(ref("src.io/app1", w.a), w.a.Digest)
	var below []string // app1's config and layers
	for _, d := range blobsOf(t, w.src.store("src.io/app1"), w.a) {
		if d.Digest != w.a.Digest {
			below = append(below, d.Digest.String())
		}
	}
	if len(below) != 3 {
		t.Fatalf("app1 has %d blobs below its manifest, want 3", len(below))
	}
	tests := []struct {
		name       string
		tag        string // app1's manifest is tagged so at the destination
		elsewhere  bool   // tag points at app2 instead
		planRepo   bool   // PlanOptions.RepoBasedTags
		copyRepo   bool   // CopyOptions.RepoBasedTags
		failTags   bool   // tags cannot be resolved (500)
		wantAtDest bool
		wantAsked  []string // by the plan
		copyAsks   []string // what the copy asks again
	}{
		{name: "tagged", tag: imgpkgTag, wantAtDest: true, wantAsked: []string{imgpkgTag}},
		{name: "untagged", wantAsked: append([]string{imgpkgTag}, below...)},
		{name: "tag elsewhere", tag: imgpkgTag, elsewhere: true, wantAsked: append([]string{imgpkgTag}, below...)},
		{name: "repo-based tag", tag: repoTag, planRepo: true, copyRepo: true, wantAtDest: true, wantAsked: []string{repoTag}},
		{name: "plan asked another tag", tag: imgpkgTag, copyRepo: true, wantAtDest: true, wantAsked: []string{imgpkgTag},
			copyAsks: append([]string{repoTag}, below...)},
		{name: "tags failing", tag: imgpkgTag, failTags: true, wantAtDest: true, wantAsked: []string{imgpkgTag, w.a.Digest.String()},
			copyAsks: []string{imgpkgTag}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := newWireTarget()
			store := dst.countingTarget.Store
			if err := oras.CopyGraph(ctx, w.src.store("src.io/app1"), store, w.a, oras.CopyGraphOptions{}); err != nil {
				t.Fatal(err)
			}
			if tc.tag != "" {
				to := w.a
				if tc.elsewhere {
					if err := oras.CopyGraph(ctx, w.src.store("src.io/app2"), store, w.b, oras.CopyGraphOptions{}); err != nil {
						t.Fatal(err)
					}
					to = w.b
				}
				if err := store.Tag(ctx, to, tc.tag); err != nil {
					t.Fatal(err)
				}
			}
			if tc.failTags {
				dst.fail = func(call string) error {
					if strings.HasPrefix(call, "HEAD sha256-") && strings.HasSuffix(call, ".imgpkg") {
						return &errcode.ErrorResponse{Method: http.MethodHead, StatusCode: http.StatusInternalServerError}
					}
					return nil
				}
			}
			p, err := PlanCopy(ctx, w.src, g, PlanOptions{Dest: dst, RepoBasedTags: tc.planRepo})
			if err != nil {
				t.Fatal(err)
			}
			checkSums(t, p, true)
			np := nodePlanOf(t, p, w.a.Digest)
			if np.AtDest != tc.wantAtDest {
				t.Errorf("app1 at the destination: %v, want %v", np.AtDest, tc.wantAtDest)
			}
			// Only the manifest is to write: what it refers to is there.
			if want := map[bool]int64{false: w.a.Size, true: 0}[tc.wantAtDest]; np.Bytes.ToWrite() != want {
				t.Errorf("app1 has %d bytes to write, want %d", np.Bytes.ToWrite(), want)
			}
			asked := headsOf(dst.log(0))
			if !slices.Equal(slices.Sorted(slices.Values(asked)), slices.Sorted(slices.Values(tc.wantAsked))) {
				t.Errorf("plan asked %v, want %v", asked, tc.wantAsked)
			}
			dst.fail = nil
			mark := len(dst.log(0))
			if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{RepoBasedTags: tc.copyRepo, Plan: p}); err != nil {
				t.Fatal(err)
			}
			calls := dst.log(mark)
			if got := headsOf(calls); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.copyAsks))) {
				t.Errorf("copy asked %v, want %v", got, tc.copyAsks)
			}
			tag := map[bool]string{false: imgpkgTag, true: repoTag}[tc.copyRepo]
			if got := resolveTag(t, dst.countingTarget, tag); got.Digest != w.a.Digest {
				t.Errorf("%s -> %s after the copy, want %s", tag, got.Digest, w.a.Digest)
			}
			for _, d := range below {
				if slices.Contains(calls, "PUT "+d) {
					t.Errorf("copy pushed %s, which the destination had", d)
				}
			}
		})
	}

	// Asked by digest (not a registry), the untagged manifest is there.
	st := newCountingTarget()
	if err := oras.CopyGraph(ctx, w.src.store("src.io/app1"), st.Store, w.a, oras.CopyGraphOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := PlanCopy(ctx, w.src, g, PlanOptions{Dest: newExistsCounter(st.Store)})
	if err != nil {
		t.Fatal(err)
	}
	if np := nodePlanOf(t, p, w.a.Digest); !np.AtDest || len(p.asked) != 1 || p.asked[w.a.Digest] != (destAnswer{present: true}) {
		t.Errorf("asked by digest: app1 at the destination %v, answers %v; want true, and only the manifest found by digest", np.AtDest, p.asked)
	}
}

// TestAskByTagMatchesTagOnPush: the plan asks the tags the copy asks.
func TestAskByTagMatchesTagOnPush(t *testing.T) {
	w := newWorld(t)
	g := discover(t, w.src, RootSpec{Ref: "src.io/bundle:v1", Kind: RootBundle})
	for _, repoBased := range []bool{false, true} {
		c := newCopier(w.src, g, newRegistryTarget(), CopyOptions{RepoBasedTags: repoBased})
		c.tagOnPush(g, newRegistryTarget())
		want := uploadsOf(c.blobs).tagAs
		got := askByTag(g, repoBased)
		if len(got) != 5 || !maps.Equal(got, want) {
			t.Errorf("repo-based %v: plan asks %v, copy %v", repoBased, got, want)
		}
	}
}

// TestPlanSparseIndexAskedByDigest: an index pushed without some children
// (sparse) is asked for by digest, as the copy asks, and a rewritten one
// by its tag; a copy given the plan asks neither again.
func TestPlanSparseIndexAskedByDigest(t *testing.T) {
	ctx := context.Background()
	w := newPlatformWorld(t)
	for _, rewrite := range []bool{false, true} {
		g := w.discover(t, DiscoverOptions{Platforms: platforms(t, "linux/amd64"), RewriteIndexes: rewrite})
		root := g.Roots[0].Desc.Digest
		dst := newWireTarget()
		p, err := PlanCopy(ctx, w.src, g, PlanOptions{Dest: dst})
		if err != nil {
			t.Fatal(err)
		}
		heads := headsOf(dst.log(0))
		byTag, byDigest := countOf(heads, ImgpkgTag(root)), countOf(heads, root.String())
		if want := map[bool][2]int{false: {0, 1}, true: {1, 0}}[rewrite]; [2]int{byTag, byDigest} != want {
			t.Errorf("rewrite %v: index asked by tag %d times, by digest %d times; want %v", rewrite, byTag, byDigest, want)
		}
		mark := len(dst.log(0))
		if _, err := CopyToRepo(ctx, w.src, g, dst, CopyOptions{DestRepo: "dst.io/apps", Plan: p}); err != nil {
			t.Fatal(err)
		}
		again := headsOf(dst.log(mark))
		if slices.Contains(again, ImgpkgTag(root)) || slices.Contains(again, root.String()) {
			t.Errorf("rewrite %v: the copy asked for the index again: %v", rewrite, again)
		}
		if got := resolveTag(t, dst.countingTarget, ImgpkgTag(root)); got.Digest != root {
			t.Errorf("rewrite %v: index tag -> %s, want %s", rewrite, got.Digest, root)
		}
	}
}
