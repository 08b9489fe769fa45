package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the signal goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// The first signal cancels the context with errInterrupted and says so on
// stderr; the second one exits at once.
func TestInterruptible(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			var errOut syncBuffer
			exited := make(chan struct{}, 1)
			ctx, stop := interruptible(context.Background(), &errOut, func() { exited <- struct{}{} })
			defer stop()
			if ctx.Err() != nil {
				t.Fatal("context canceled before any signal")
			}
			if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("context not canceled by the first signal")
			}
			if cause := context.Cause(ctx); !errors.Is(cause, errInterrupted) {
				t.Errorf("cause %v, want errInterrupted", cause)
			}
			select {
			case <-exited:
				t.Fatal("exited after the first signal")
			case <-time.After(50 * time.Millisecond):
			}
			if !strings.Contains(errOut.String(), "ferry: interrupted") {
				t.Errorf("stderr %q does not say ferry was interrupted", errOut.String())
			}
			if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				t.Fatal("the second signal did not exit")
			}
		})
	}
}

// stop without a signal leaves the cause a plain cancellation, so main does
// not mistake a failure for an interruption.
func TestInterruptibleStop(t *testing.T) {
	ctx, stop := interruptible(context.Background(), &syncBuffer{}, func() { t.Error("exit called") })
	stop()
	if errors.Is(context.Cause(ctx), errInterrupted) {
		t.Error("stop reported an interruption")
	}
}
