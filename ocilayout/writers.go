package ocilayout

import "sync"

// blobWriters tracks the WriteBlob calls in flight of a builder, and
// refuses new ones once closed (by Commit or Abort).
type blobWriters struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter admits one WriteBlob call, which then calls leave; false once
// closed.
func (w *blobWriters) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	return true
}

func (w *blobWriters) leave() { w.wg.Done() }

// close refuses new WriteBlob calls and waits for those in flight.
func (w *blobWriters) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.wg.Wait()
}
