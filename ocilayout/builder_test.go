package ocilayout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The digests of the tars of goldenInput and of the plain fixture as the
// streaming writer that preceded TarBuilder wrote them (one header, then
// one body after the other): the builder must keep every byte.
const (
	goldenTar  = "sha256:dac0a9205f73207a68e200bf5438b513218238e392125eab94fe54a5e99fc141"
	fixtureTar = "sha256:63a59bd6924780f1c88b0fe5a8a030b2d91f7f3ce34d7b20ba72dc6e0c09ce3b"
)

// goldenInput is the fixture plus blobs that exercise the tar layout's
// corners: an empty blob, a blob of exactly one block, one of a block and a
// byte, a larger one not a multiple of the block size, and sha512 blobs (a
// second blobs/<alg>/ directory, one of them empty).
func goldenInput(t testing.TB) *fixture {
	t.Helper()
	fx := newFixture(t)
	fx.add(ocispec.MediaTypeImageLayer, nil)
	fx.add(ocispec.MediaTypeImageLayer, randomBytes(10, blockSize))
	fx.add(ocispec.MediaTypeImageLayer, randomBytes(11, blockSize+1))
	fx.add(ocispec.MediaTypeImageLayer, randomBytes(12, 3<<20+7))
	for i, n := range []int{5, 0, 1024} {
		b := randomBytes(uint64(20+i), n)
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.SHA512.FromBytes(b), Size: int64(n)}
		fx.data[d.Digest] = b
		fx.blobs = append(fx.blobs, d)
	}
	return fx
}

func TestWriteTarGolden(t *testing.T) {
	cases := []struct {
		name  string
		input func(testing.TB) *fixture
		want  digest.Digest
	}{
		{"fixture", newFixture, fixtureTar},
		{"corners", goldenInput, goldenTar},
	}
	for _, tc := range cases {
		for _, opener := range []string{"stream", "file"} {
			t.Run(tc.name+"/"+opener, func(t *testing.T) {
				fx := tc.input(t)
				var src BlobOpener = streamOpener(fx.data)
				if opener == "file" {
					src = newFileOpener(t, fx.data)
				}
				p := filepath.Join(t.TempDir(), "out.tar")
				got, err := WriteTar(context.Background(), p, fx.blobs, fx.index, src, WriteOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want || fileDigest(t, p) != tc.want {
					t.Errorf("WriteTar = %s, file hashes to %s; want %s", got, fileDigest(t, p), tc.want)
				}
			})
		}
	}
}

// refuseOpener fails every open: Commit must have nothing left to write.
type refuseOpener struct{}

var errRefused = errors.New("opener refused")

func (refuseOpener) OpenBlob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return nil, errRefused
}

// blobCounter counts OnBlob calls per digest.
type blobCounter struct {
	mu sync.Mutex
	n  map[digest.Digest]int
}

func (c *blobCounter) onBlob(d ocispec.Descriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[digest.Digest]int{}
	}
	c.n[d.Digest]++
}

// check fails unless every blob was reported exactly once.
func (c *blobCounter) check(t *testing.T, blobs []ocispec.Descriptor) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.n) != len(blobs) {
		t.Errorf("OnBlob saw %d blobs, want %d", len(c.n), len(blobs))
	}
	for _, d := range blobs {
		if c.n[d.Digest] != 1 {
			t.Errorf("OnBlob called %d times for %s, want once", c.n[d.Digest], d.Digest)
		}
	}
}

// TestTarBuilderOrders writes the blobs of goldenInput in several orders,
// some of them only (Commit writing the rest), and checks every tar against
// the golden digest and WriteTar's bytes.
func TestTarBuilderOrders(t *testing.T) {
	ctx := context.Background()
	fx := goldenInput(t)
	reference := filepath.Join(t.TempDir(), "ref.tar")
	if _, err := WriteTar(ctx, reference, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	sorted := slices.Clone(fx.blobs)
	slices.SortFunc(sorted, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	reversed := slices.Clone(sorted)
	slices.Reverse(reversed)
	shuffled := func(seed uint64) []ocispec.Descriptor {
		s := slices.Clone(fx.blobs)
		rand.New(rand.NewPCG(seed, 7)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return s
	}
	cases := []struct {
		name       string
		write      []ocispec.Descriptor // given to WriteBlob, in this order
		concurrent bool                 // one goroutine per blob
		commitSrc  bool                 // Commit needs a source (some blobs not written)
	}{
		{name: "digest order", write: sorted},
		{name: "reverse", write: reversed},
		{name: "random 1", write: shuffled(1)},
		{name: "random 2", write: shuffled(2)},
		{name: "concurrent", write: fx.blobs, concurrent: true},
		{name: "twice each, concurrent", write: append(slices.Clone(fx.blobs), fx.blobs...), concurrent: true},
		{name: "last half, Commit writes the rest", write: sorted[len(sorted)/2:], commitSrc: true},
		{name: "every other, Commit writes the rest", write: everyOther(shuffled(3)), commitSrc: true},
		{name: "none, Commit writes all", commitSrc: true},
	}
	for _, tc := range cases {
		for _, opener := range []string{"stream", "file"} {
			t.Run(tc.name+"/"+opener, func(t *testing.T) {
				var src BlobOpener = streamOpener(fx.data)
				if opener == "file" {
					src = newFileOpener(t, fx.data)
				}
				dir := t.TempDir()
				p := filepath.Join(dir, "out.tar")
				var seen blobCounter
				b, err := CreateTar(ctx, p, fx.blobs, fx.index, WriteOptions{OnBlob: seen.onBlob})
				if err != nil {
					t.Fatal(err)
				}
				defer b.Abort()
				if tc.concurrent {
					var wg sync.WaitGroup
					errs := make([]error, len(tc.write))
					for i, d := range tc.write {
						wg.Go(func() { errs[i] = b.WriteBlob(ctx, d, src) })
					}
					wg.Wait()
					if err := errors.Join(errs...); err != nil {
						t.Fatal(err)
					}
				} else {
					for _, d := range tc.write {
						if err := b.WriteBlob(ctx, d, src); err != nil {
							t.Fatal(err)
						}
					}
				}
				commitSrc := BlobOpener(refuseOpener{})
				if tc.commitSrc {
					commitSrc = src
				}
				sum, err := b.Commit(ctx, commitSrc)
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if sum != goldenTar || !bytes.Equal(got, want) {
					t.Errorf("Commit = %s (bytes equal to WriteTar's: %v), want %s", sum, bytes.Equal(got, want), goldenTar)
				}
				seen.check(t, sorted)
				if left := listDir(t, dir); !slices.Equal(left, []string{"out.tar"}) {
					t.Errorf("directory holds %v, want only out.tar", left)
				}
			})
		}
	}
}

func everyOther(s []ocispec.Descriptor) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i])
	}
	return out
}

// slowReader yields one byte per millisecond: a write in flight for long.
type slowReader struct{ started chan struct{} }

func (r *slowReader) Read(p []byte) (int, error) {
	select {
	case <-r.started:
	default:
		close(r.started)
	}
	time.Sleep(time.Millisecond)
	p[0] = 'x'
	return 1, nil
}

func TestTarBuilderWriteBlobErrors(t *testing.T) {
	ctx := context.Background()
	fx := goldenInput(t)
	lay := fx.data[fx.appLay.Digest]
	stream := streamOpener(fx.data)
	unknown := ocispec.Descriptor{Digest: digest.FromString("not in the tar"), Size: 14}
	cases := []struct {
		name    string
		desc    ocispec.Descriptor
		src     BlobOpener
		want    error
		mention string
	}{
		{"unknown digest", unknown, stream, ErrUnknownBlob, unknown.Digest.String()},
		{"descriptor of another size", ocispec.Descriptor{Digest: fx.appLay.Digest, Size: fx.appLay.Size + 1}, stream, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"longer stream", fx.appLay, wrongOpener{stream, fx.appLay.Digest, append(slices.Clone(lay), 'x'), false}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"shorter stream", fx.appLay, wrongOpener{stream, fx.appLay.Digest, lay[:10], false}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"longer file", fx.appLay, wrongOpener{stream, fx.appLay.Digest, append(slices.Clone(lay), 'x'), true}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"shorter file", fx.appLay, wrongOpener{stream, fx.appLay.Digest, lay[:10], true}, ErrSizeMismatch, fx.appLay.Digest.String()},
		{"open error", fx.appLay, wrongOpener{stream, fx.appLay.Digest, nil, false}, nil, fx.appLay.Digest.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "out.tar")
			var seen blobCounter
			b, err := CreateTar(ctx, p, fx.blobs, fx.index, WriteOptions{OnBlob: seen.onBlob})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Abort()
			err = b.WriteBlob(ctx, tc.desc, tc.src)
			if err == nil {
				t.Fatal("WriteBlob succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not name %s", err, tc.mention)
			}
			// The failed blob is written again, whole, by Commit.
			sum, err := b.Commit(ctx, stream)
			if err != nil || sum != goldenTar || fileDigest(t, p) != goldenTar {
				t.Fatalf("Commit after a failed WriteBlob = %s, %v; want %s", sum, err, goldenTar)
			}
			seen.check(t, fx.blobs)
		})
	}
}

func TestTarBuilderLifecycle(t *testing.T) {
	ctx := context.Background()
	fx := goldenInput(t)
	src := newFileOpener(t, fx.data)

	t.Run("write twice", func(t *testing.T) {
		var seen blobCounter
		b, err := CreateTar(ctx, filepath.Join(t.TempDir(), "out.tar"), fx.blobs, fx.index, WriteOptions{OnBlob: seen.onBlob})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Abort()
		if err := b.WriteBlob(ctx, fx.appLay, src); err != nil {
			t.Fatal(err)
		}
		// The second write does not even open the source.
		if err := b.WriteBlob(ctx, fx.appLay, refuseOpener{}); err != nil {
			t.Errorf("second WriteBlob: %v, want nil", err)
		}
		if sum, err := b.Commit(ctx, src); err != nil || sum != goldenTar {
			t.Fatalf("Commit = %s, %v", sum, err)
		}
		seen.check(t, fx.blobs)
	})

	t.Run("after Commit", func(t *testing.T) {
		dir := t.TempDir()
		b, err := CreateTar(ctx, filepath.Join(dir, "out.tar"), fx.blobs, fx.index, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Commit(ctx, src); err != nil {
			t.Fatal(err)
		}
		if err := b.WriteBlob(ctx, fx.appLay, src); !errors.Is(err, ErrBuilderClosed) {
			t.Errorf("WriteBlob after Commit: %v, want ErrBuilderClosed", err)
		}
		if _, err := b.Commit(ctx, src); !errors.Is(err, ErrBuilderClosed) {
			t.Errorf("second Commit: %v, want ErrBuilderClosed", err)
		}
		b.Abort() // does nothing after Commit
		if left := listDir(t, dir); !slices.Equal(left, []string{"out.tar"}) || fileDigest(t, filepath.Join(dir, "out.tar")) != goldenTar {
			t.Errorf("after Commit and Abort the directory holds %v, want the committed out.tar", left)
		}
	})

	t.Run("Abort", func(t *testing.T) {
		dir := t.TempDir()
		b, err := CreateTar(ctx, filepath.Join(dir, "out.tar"), fx.blobs, fx.index, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if left := listDir(t, dir); len(left) != 1 || !strings.HasPrefix(left[0], ".out.tar.tmp-") {
			t.Errorf("before Commit the directory holds %v, want one temporary file", left)
		}
		if err := b.WriteBlob(ctx, fx.appLay, src); err != nil {
			t.Fatal(err)
		}
		b.Abort()
		b.Abort()
		if left := listDir(t, dir); len(left) != 0 {
			t.Errorf("Abort left %v", left)
		}
		if err := b.WriteBlob(ctx, fx.app, src); !errors.Is(err, ErrBuilderClosed) {
			t.Errorf("WriteBlob after Abort: %v, want ErrBuilderClosed", err)
		}
		if _, err := b.Commit(ctx, src); !errors.Is(err, ErrBuilderClosed) {
			t.Errorf("Commit after Abort: %v, want ErrBuilderClosed", err)
		}
	})

	t.Run("Abort stops a write in flight", func(t *testing.T) {
		dir := t.TempDir()
		b, err := CreateTar(ctx, filepath.Join(dir, "out.tar"), fx.blobs, fx.index, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		slow := &slowReader{started: make(chan struct{})}
		big := fx.blobs[len(fx.blobs)-4] // the 3 MiB layer: an hour at a byte per millisecond
		done := make(chan error, 1)
		go func() {
			done <- b.WriteBlob(ctx, big, BlobOpenerFunc(func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
				return io.NopCloser(slow), nil
			}))
		}()
		<-slow.started
		start := time.Now()
		b.Abort()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WriteBlob interrupted by Abort: %v, want context.Canceled", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Abort took %s", took)
		}
		if left := listDir(t, dir); len(left) != 0 {
			t.Errorf("Abort left %v", left)
		}
	})

	t.Run("tar not reopenable by name", func(t *testing.T) {
		dir := t.TempDir()
		b, err := CreateTar(ctx, filepath.Join(dir, "out.tar"), fx.blobs, fx.index, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Abort()
		// Hide the temporary name: WriteBlob cannot open it again for
		// copy_file_range and writes through CreateTar's descriptor.
		tmp := filepath.Join(dir, listDir(t, dir)[0])
		if err := os.Rename(tmp, tmp+"-hidden"); err != nil {
			t.Fatal(err)
		}
		for _, d := range fx.blobs {
			if err := b.WriteBlob(ctx, d, src); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Rename(tmp+"-hidden", tmp); err != nil {
			t.Fatal(err)
		}
		if sum, err := b.Commit(ctx, refuseOpener{}); err != nil || sum != goldenTar {
			t.Errorf("Commit = %s, %v; want %s", sum, err, goldenTar)
		}
	})

	t.Run("Key", func(t *testing.T) {
		b, err := CreateTar(ctx, filepath.Join(t.TempDir(), "out.tar"), fx.blobs, fx.index, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Abort()
		want, err := TarKey(slices.Concat(fx.blobs, fx.blobs[:2]), fx.index)
		if err != nil || b.Key() != want {
			t.Errorf("Key() = %s, TarKey = %s, %v", b.Key(), want, err)
		}
	})

	t.Run("invalid input", func(t *testing.T) {
		dir := t.TempDir()
		blobs := append(slices.Clone(fx.blobs), ocispec.Descriptor{Digest: fx.appLay.Digest, Size: 1})
		if _, err := CreateTar(ctx, filepath.Join(dir, "out.tar"), blobs, fx.index, WriteOptions{}); !errors.Is(err, ErrInvalidDescriptor) {
			t.Errorf("CreateTar with two sizes for a blob: %v, want ErrInvalidDescriptor", err)
		}
		if _, err := CreateTar(ctx, filepath.Join(dir, "missing", "out.tar"), fx.blobs, fx.index, WriteOptions{}); err == nil {
			t.Error("CreateTar in a missing directory succeeded")
		}
		if left := listDir(t, dir); len(left) != 0 {
			t.Errorf("failed CreateTar left %v", left)
		}
	})
}

// TestTarBuilderCancel: a cancelled WriteBlob or Commit leaves nothing once
// the builder is aborted (Commit cleans up itself).
func TestTarBuilderCancel(t *testing.T) {
	fx := goldenInput(t)
	for _, opener := range []string{"stream", "file"} {
		t.Run(opener, func(t *testing.T) {
			var src BlobOpener = streamOpener(fx.data)
			if opener == "file" {
				src = newFileOpener(t, fx.data)
			}
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			n := 0
			b, err := CreateTar(ctx, filepath.Join(dir, "out.tar"), fx.blobs, fx.index, WriteOptions{OnBlob: func(ocispec.Descriptor) {
				if n++; n == 3 {
					cancel()
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Abort()
			for _, d := range fx.blobs[:2] {
				if err := b.WriteBlob(context.Background(), d, src); err != nil {
					t.Fatal(err)
				}
			}
			done, cancelled := context.WithCancel(context.Background())
			cancelled()
			if err := b.WriteBlob(done, fx.blobs[2], src); !errors.Is(err, context.Canceled) {
				t.Errorf("WriteBlob with a cancelled context: %v, want context.Canceled", err)
			}
			if _, err := b.Commit(ctx, src); !errors.Is(err, context.Canceled) {
				t.Errorf("Commit cancelled in the middle: %v, want context.Canceled", err)
			}
			if left := listDir(t, dir); len(left) != 0 {
				t.Errorf("a cancelled Commit left %v", left)
			}
			b.Abort()
		})
	}
}

// TestTarBuilderDigests: a remembered digest is returned without hashing,
// a computed one is remembered, and SkipDigest neither hashes nor looks up.
func TestTarBuilderDigests(t *testing.T) {
	ctx := context.Background()
	fx := goldenInput(t)
	src := newFileOpener(t, fx.data)
	key, err := TarKey(fx.blobs, fx.index)
	if err != nil {
		t.Fatal(err)
	}
	planted := digest.FromString("planted")
	cases := []struct {
		name       string
		memo       map[digest.Digest]digest.Digest
		skip       bool
		want       digest.Digest
		hashing    bool
		remembered digest.Digest // what the memo holds for key afterwards
		lookups    int
	}{
		{name: "nothing remembered", memo: map[digest.Digest]digest.Digest{}, want: goldenTar, hashing: true, remembered: goldenTar, lookups: 1},
		{name: "remembered", memo: map[digest.Digest]digest.Digest{key: planted}, want: planted, remembered: planted, lookups: 1},
		{name: "remembered, not sha256", memo: map[digest.Digest]digest.Digest{key: "md5:0123"}, want: goldenTar, hashing: true, remembered: goldenTar, lookups: 1},
		{name: "SkipDigest", memo: map[digest.Digest]digest.Digest{key: planted}, skip: true, want: "", remembered: planted},
		{name: "SkipDigest, no memo", skip: true, want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "out.tar")
			opts := WriteOptions{SkipDigest: tc.skip}
			var memo *memoDigests
			if tc.memo != nil {
				memo = &memoDigests{m: tc.memo}
				opts.Digests = memo
			}
			b, err := CreateTar(ctx, p, fx.blobs, fx.index, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Abort()
			if hashing := b.hashDone != nil; hashing != tc.hashing {
				t.Errorf("hashing %v, want %v", hashing, tc.hashing)
			}
			for _, d := range slices.Backward(fx.blobs) {
				if err := b.WriteBlob(ctx, d, src); err != nil {
					t.Fatal(err)
				}
			}
			sum, err := b.Commit(ctx, refuseOpener{})
			if err != nil || sum != tc.want {
				t.Fatalf("Commit = %q, %v; want %q", sum, err, tc.want)
			}
			if fileDigest(t, p) != goldenTar {
				t.Error("the tar's bytes changed")
			}
			if memo != nil && (memo.m[key] != tc.remembered || memo.lookups != tc.lookups) {
				t.Errorf("memo holds %q after %d lookups, want %q after %d", memo.m[key], memo.lookups, tc.remembered, tc.lookups)
			}
		})
	}
}
