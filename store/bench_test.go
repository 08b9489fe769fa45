package store

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// Benchmarks of the store's hot paths. Sizes are small so that one
// iteration is quick:
//
//	go test -run '^$' -bench . -benchtime=1x ./store/
//
// FERRY_BENCH_BLOB_MIB sets the size of the large blob (default 16 MiB);
// MB/s then gives the throughput of a copy into or out of the store.

// benchBlobSize is the size of the large benchmark blob.
func benchBlobSize(b *testing.B) int {
	b.Helper()
	mib := 16
	if s := os.Getenv("FERRY_BENCH_BLOB_MIB"); s != "" {
		var err error
		if mib, err = strconv.Atoi(s); err != nil || mib <= 0 {
			b.Fatalf("FERRY_BENCH_BLOB_MIB=%q: want a positive number", s)
		}
	}
	return mib << 20
}

// BenchmarkIngest measures writing the large blob into a fresh store: Push
// from memory, and Cache.Fetch from an in-memory remote read to the end
// (download into the store while serving the consumer, hashed once).
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	blob, desc := randomBlob(b, benchBlobSize(b))
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

// BenchmarkIngestSmall measures the fixed cost of a blob: 100 blobs of
// 1 KiB (manifests and configs of a 100-image bundle) downloaded into a
// fresh store through Cache.Fetch, one after the other ("Serial") or by 8
// goroutines at once ("Parallel", as a copy fetches them). ns/op / 100 is
// the cost of one blob (file creation, sync, link or rename); cpu-ns/op is
// the CPU time, system time included, which wall time on a busy machine
// hides.
func BenchmarkIngestSmall(b *testing.B) {
	ctx := context.Background()
	mem := memory.New()
	descs := make([]ocispec.Descriptor, 100)
	for i := range descs {
		blob, desc := randomBlob(b, 1024)
		if err := mem.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
			b.Fatal(err)
		}
		descs[i] = desc
	}
	fetch := func(b *testing.B, c *CachedTarget, desc ocispec.Descriptor) {
		rc, err := c.Fetch(ctx, desc)
		if err != nil {
			b.Error(err)
			return
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Error(err)
		}
		rc.Close()
	}
	for _, workers := range []int{1, 8} {
		name := "Serial"
		if workers > 1 {
			name = "Parallel"
		}
		b.Run(name, func(b *testing.B) {
			reportCPU(b)
			for b.Loop() {
				b.StopTimer()
				c := openStore(b, b.TempDir()).Cache(mem)
				next := make(chan ocispec.Descriptor)
				b.StartTimer()
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for desc := range next {
							fetch(b, c, desc)
						}
					})
				}
				for _, desc := range descs {
					next <- desc
				}
				close(next)
				wg.Wait()
			}
		})
	}
}

// BenchmarkCacheFetchCommitted measures serving a committed large blob:
// the store's file, reported verified, read to the end (no hashing).
func BenchmarkCacheFetchCommitted(b *testing.B) {
	ctx := context.Background()
	blob, desc := randomBlob(b, benchBlobSize(b))
	s := openStore(b, b.TempDir())
	if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
		b.Fatal(err)
	}
	c := s.Cache(memory.New())
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(blob)))
	for b.Loop() {
		rc, err := c.Fetch(ctx, desc)
		if err != nil {
			b.Fatal(err)
		}
		if !c.Verifies(desc, rc) {
			b.Fatal("a committed blob is not reported verified")
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkVerify measures Store.Verify (re-hashing every committed blob)
// over the large blob and 100 small ones.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, b.TempDir())
	blob, desc := randomBlob(b, benchBlobSize(b))
	if err := s.Push(ctx, desc, bytes.NewReader(blob)); err != nil {
		b.Fatal(err)
	}
	total := int64(len(blob))
	for range 100 {
		small, d := randomBlob(b, 1024)
		if err := s.Push(ctx, d, bytes.NewReader(small)); err != nil {
			b.Fatal(err)
		}
		total += int64(len(small))
	}
	b.SetBytes(total)
	for b.Loop() {
		problems, err := s.Verify(ctx, false)
		if err != nil || len(problems) != 0 {
			b.Fatalf("Verify = %v, %v", problems, err)
		}
	}
}
