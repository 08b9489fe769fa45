package store_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ferry-oci/ferry/store"
)

// A blob fetched through the cache is downloaded once; the second fetch is
// served from the store.
func ExampleStore_Cache() {
	ctx := context.Background()
	root, err := os.MkdirTemp("", "ferry-store-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)
	s, err := store.Open(ctx, root)
	if err != nil {
		panic(err)
	}

	// A remote repository (here an in-memory one) holding one blob.
	remote := memory.New()
	content := "hello, ferry"
	desc := ocispec.Descriptor{MediaType: "text/plain", Digest: digest.FromString(content), Size: int64(len(content))}
	if err := remote.Push(ctx, desc, strings.NewReader(content)); err != nil {
		panic(err)
	}

	cached := s.Cache(remote)
	for range 2 {
		rc, err := cached.Fetch(ctx, desc)
		if err != nil {
			panic(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			panic(err)
		}
		fmt.Println(string(data))
	}
	u, err := s.DiskUsage(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d blob, %d bytes\n", u.Blobs, u.Bytes)
	// Output:
	// hello, ferry
	// hello, ferry
	// 1 blob, 12 bytes
}
