package graph

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// orderedGate bounds concurrent work like a limiter, but a freed slot goes
// to the waiting caller with the smallest digest rather than to whichever
// came first. Large blobs are gathered through it, so that they are
// downloaded roughly in digest order — the order of an OCI layout tar, whose
// hash can then follow the downloads (see ocilayout.TarBuilder). It is safe
// for concurrent use.
type orderedGate struct {
	mu      sync.Mutex
	free    int
	waiting []*gateWaiter // sorted by digest
}

type gateWaiter struct {
	d     digest.Digest
	ready chan struct{} // closed when the slot is granted
}

func newOrderedGate(n int) *orderedGate {
	if n <= 0 {
		n = defaultConcurrency
	}
	return &orderedGate{free: n}
}

// acquire waits for a slot for the blob d, or for ctx to end.
func (g *orderedGate) acquire(ctx context.Context, d digest.Digest) error {
	g.mu.Lock()
	if g.free > 0 && len(g.waiting) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := &gateWaiter{d: d, ready: make(chan struct{})}
	i, _ := slices.BinarySearchFunc(g.waiting, d, func(w *gateWaiter, d digest.Digest) int {
		return strings.Compare(string(w.d), string(d))
	})
	g.waiting = slices.Insert(g.waiting, i, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		if i := slices.Index(g.waiting, w); i >= 0 {
			g.waiting = slices.Delete(g.waiting, i, i+1)
			return ctx.Err()
		}
		// Granted while giving up: hand the slot on.
		g.releaseLocked()
		return ctx.Err()
	}
}

// release frees a slot taken by acquire.
func (g *orderedGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked()
}

func (g *orderedGate) releaseLocked() {
	if len(g.waiting) == 0 {
		g.free++
		return
	}
	w := g.waiting[0]
	g.waiting = g.waiting[1:]
	close(w.ready)
}
