package graph

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestOrderedGateGrantsSmallestDigestFirst(t *testing.T) {
	ctx := context.Background()
	g := newOrderedGate(1)
	if err := g.acquire(ctx, digest.FromString("holder")); err != nil {
		t.Fatal(err)
	}
	var ds []digest.Digest
	for i := range 8 {
		ds = append(ds, digest.FromString(fmt.Sprint(i)))
	}
	granted := make(chan digest.Digest, len(ds))
	for _, d := range ds { // in an order unrelated to the digests'
		go func() {
			if err := g.acquire(ctx, d); err != nil {
				t.Error(err)
				return
			}
			granted <- d
		}()
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == len(ds) })
	var order []digest.Digest
	for range ds {
		g.release() // one slot at a time: each grant is the next one
		order = append(order, <-granted)
	}
	if !slices.IsSorted(order) {
		t.Errorf("granted in order %v, want sorted by digest", order)
	}
	g.release()
	if g.free != 1 || len(g.waiting) != 0 {
		t.Errorf("after all released: free %d, waiting %d; want 1, 0", g.free, len(g.waiting))
	}
}

func TestOrderedGateCancelledWaiter(t *testing.T) {
	g := newOrderedGate(1)
	if err := g.acquire(context.Background(), "sha256:b"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.acquire(ctx, "sha256:a") }()
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	g.release()
	// The slot is not lost to the waiter that gave up.
	if err := g.acquire(context.Background(), "sha256:c"); err != nil {
		t.Fatal(err)
	}
	if g.free != 0 || len(g.waiting) != 0 {
		t.Errorf("free %d, waiting %d; want 0, 0", g.free, len(g.waiting))
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}
