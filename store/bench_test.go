package store

import (
	"bytes"
	"context"
	"io"
	"testing"

	"oras.land/oras-go/v2/content/memory"
)

// BenchmarkIngest measures writing a 64 MiB blob into a fresh store: Push
// from memory, and Cache.Fetch from an in-memory remote read to the end
// (download into the store while serving the consumer).
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	blob, desc := randomBlob(b, 64<<20)
	mem := memory.New()
	if err := mem.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
		b.Fatal(err)
	}
	b.Run("Push", func(b *testing.B) {
		b.SetBytes(int64(len(blob)))
		for b.Loop() {
			b.StopTimer()
			s := openStore(b, b.TempDir())
			b.StartTimer()
			if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CacheFetch", func(b *testing.B) {
		b.SetBytes(int64(len(blob)))
		for b.Loop() {
			b.StopTimer()
			s := openStore(b, b.TempDir())
			b.StartTimer()
			rc, err := s.Cache(mem).Fetch(ctx, desc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
