package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/ferry-oci/ferry/graph"
)

// isTerminal reports whether w is a terminal that can draw progress bars:
// an *os.File on a TTY, with TERM not "dumb".
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok || getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// statusLines prints the plain "copy | ..." lines: straight to w, or above
// the bars while a progress display runs. Safe for concurrent use.
type statusLines struct {
	mu   sync.Mutex
	w    io.Writer
	bars *mpb.Progress // nil when no display runs
}

func (s *statusLines) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bars != nil {
		if _, err := s.bars.Write([]byte(line)); err == nil {
			return
		}
	}
	io.WriteString(s.w, line)
}

// attach routes lines above the bars of p (nil: straight to the writer).
func (s *statusLines) attach(p *mpb.Progress) {
	s.mu.Lock()
	s.bars = p
	s.mu.Unlock()
}

// copyProgress draws live progress bars with mpb: one per blob being read
// (removed when it is done) and one overall bar per phase, each with bytes,
// rate and time left. Its reader wrapper is a graph.CopyOptions.WrapReader.
// Safe for concurrent use.
type copyProgress struct {
	bars   *mpb.Progress
	status *statusLines
	labels map[digest.Digest]string

	stopOnce sync.Once

	mu      sync.Mutex
	phases  int // overall bars started
	overall *mpb.Bar
	total   int64 // what overall was last told
	done    atomic.Int64
	active  map[*mpb.Bar]bool
}

// newCopyProgress starts a display on w (a terminal, or forceTTY for
// tests). labels names blobs (missing ones are named by their digest).
// Lines printed through status go above the bars until stop.
func newCopyProgress(ctx context.Context, w io.Writer, status *statusLines, labels map[digest.Digest]string, forceTTY bool) *copyProgress {
	opts := []mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(60)}
	if forceTTY {
		opts = append(opts, mpb.ForceTTY(), mpb.WithAutoRefresh())
	}
	c := &copyProgress{
		bars:   mpb.NewWithContext(ctx, opts...),
		status: status,
		labels: labels,
		active: map[*mpb.Bar]bool{},
	}
	status.attach(c.bars)
	return c
}

func barStyle() mpb.BarStyleComposer {
	return mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding("-").Rbound("]")
}

// phase starts an overall bar named name, expecting total bytes; the
// previous overall bar, if any, is completed where it stands.
func (c *copyProgress) phase(name string, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overall != nil {
		c.overall.SetTotal(-1, true)
	}
	c.done.Store(0)
	c.total = total
	c.phases++
	// Built with total 0 so that it completes only when told: the total
	// is an estimate and reads may reach it early.
	// Add fails only once the display stopped (ctx cancelled): no bar then.
	bar, err := c.bars.Add(0, barStyle().Build(),
		mpb.BarPriority(math.MaxInt32/2+c.phases), // below the blob bars and the earlier phases
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.Percentage(decor.WCSyncSpace),
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
		),
	)
	if err != nil {
		c.overall = nil
		return
	}
	c.overall = bar
	c.overall.SetTotal(total, false)
}

// advance counts n bytes on the overall bar, raising its total when the
// estimate was short.
func (c *copyProgress) advance(n int64) {
	done := c.done.Add(n)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overall == nil {
		return
	}
	if done > c.total {
		c.total = done
		c.overall.SetTotal(done, false)
	}
	c.overall.IncrInt64(n)
}

// label names a blob for its bar.
func (c *copyProgress) label(desc ocispec.Descriptor) string {
	if l, ok := c.labels[desc.Digest]; ok {
		return l
	}
	return shortDigest(desc.Digest)
}

// wrap counts what rc delivers on a new bar for desc and on the overall
// bar. Manifests and empty blobs get no bar of their own.
func (c *copyProgress) wrap(desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
	r := &progressReader{rc: rc, c: c}
	if desc.Size > 0 && !isManifestType(desc.MediaType) {
		// Add fails only once the display stopped: then no bar.
		r.bar, _ = c.bars.Add(desc.Size, barStyle().Build(),
			mpb.BarRemoveOnComplete(),
			mpb.PrependDecorators(decor.Name(c.label(desc), decor.WCSyncSpaceR)),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
				decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace),
			),
		)
		if r.bar != nil {
			c.mu.Lock()
			c.active[r.bar] = true
			c.mu.Unlock()
		}
	}
	return r
}

// blobDone counts a blob written in one piece (a layout being written).
func (c *copyProgress) blobDone(desc ocispec.Descriptor) { c.advance(desc.Size) }

// forget drops a blob bar from the active set.
func (c *copyProgress) forget(b *mpb.Bar) {
	c.mu.Lock()
	delete(c.active, b)
	c.mu.Unlock()
}

// stop completes the overall bar, drops unfinished blob bars, draws the
// last frame and hands the terminal back to plain lines. Later calls do
// nothing.
func (c *copyProgress) stop() { c.stopOnce.Do(c.shutdown) }

func (c *copyProgress) shutdown() {
	c.mu.Lock()
	if c.overall != nil {
		c.overall.SetTotal(-1, true)
	}
	for b := range c.active {
		b.Abort(true)
	}
	c.active = map[*mpb.Bar]bool{}
	c.mu.Unlock()
	c.bars.Wait()
	c.status.attach(nil)
}

// progressReader feeds a blob bar and the overall bar.
type progressReader struct {
	rc  io.ReadCloser
	c   *copyProgress
	bar *mpb.Bar // nil: overall only
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		if r.bar != nil {
			r.bar.IncrBy(n)
		}
		r.c.advance(int64(n))
	}
	return n, err
}

func (r *progressReader) Close() error {
	if r.bar != nil {
		if !r.bar.Completed() {
			r.bar.Abort(true)
		}
		r.c.forget(r.bar)
	}
	return r.rc.Close()
}

// isManifestType reports whether mt is a manifest or index media type.
func isManifestType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
		"application/vnd.oci.artifact.manifest.v1+json":
		return true
	}
	return false
}

// shortDigest is the first 12 hex characters of d.
func shortDigest(d digest.Digest) string {
	hex := d.Encoded()
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// blobLabels names every blob of a plan for its bar: the image it belongs
// to (the repository it was first met in, without host) and its short
// digest.
func blobLabels(p *graph.Plan) map[digest.Digest]string {
	out := make(map[digest.Digest]string, len(p.Blobs))
	for _, pb := range p.Blobs {
		out[pb.Desc.Digest] = shortRepo(repoOf(pb.Node.Ref)) + " " + shortDigest(pb.Desc.Digest)
	}
	return out
}

// shortRepo drops the host of a repository and keeps at most 32
// characters (the end).
func shortRepo(repo string) string {
	if host, path, ok := strings.Cut(repo, "/"); ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		repo = path
	}
	if r := []rune(repo); len(r) > 32 {
		repo = "…" + string(r[len(r)-31:])
	}
	return repo
}
