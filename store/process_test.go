package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// Environment of the child process of TestCacheConcurrentProcesses.
const (
	childRoot   = "FERRY_STORE_TEST_CHILD_ROOT"
	childRepo   = "FERRY_STORE_TEST_CHILD_REPO"
	childDigest = "FERRY_STORE_TEST_CHILD_DIGEST"
	childSize   = "FERRY_STORE_TEST_CHILD_SIZE"
)

// TestChildProcessFetch is the other process of
// TestCacheConcurrentProcesses; it does nothing in a normal run.
func TestChildProcessFetch(t *testing.T) {
	root := os.Getenv(childRoot)
	if root == "" {
		t.Skip("only run as a child of TestCacheConcurrentProcesses")
	}
	size, err := strconv.ParseInt(os.Getenv(childSize), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.Digest(os.Getenv(childDigest)), Size: size}
	repo, err := remote.NewRepository(os.Getenv(childRepo))
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.Client = &http.Client{}
	s := openStore(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := fetchAll(ctx, s.Cache(repo), desc)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(got); digest.NewDigestFromBytes(digest.SHA256, sum[:]) != desc.Digest {
		t.Fatal("child read wrong content")
	}
}

func TestCacheConcurrentProcesses(t *testing.T) {
	if os.Getenv(childRoot) != "" {
		t.Skip("in the child")
	}
	ctx := context.Background()
	blob, desc := randomBlob(t, 2<<20)
	srv := newBlobServer(t, blob)
	// 64 chunks 10 ms apart: the download lasts long enough for the
	// child to start while it runs.
	srv.set(func(b *blobServer) { b.chunkDelay = 10 * time.Millisecond })
	root := t.TempDir()
	repo := srv.repo(t)

	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcessFetch$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		childRoot+"="+root,
		childRepo+"="+repo.Reference.String(),
		childDigest+"="+desc.Digest.String(),
		childSize+"="+strconv.Itoa(len(blob)),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, root)
	got, err := fetchAll(ctx, s.Cache(repo), desc)
	if err != nil || !bytes.Equal(got, blob) {
		t.Errorf("parent fetch: %d bytes, %v", len(got), err)
	}
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w\n%s", err, out.Bytes())
		}
		t.Fatalf("child: %v", err)
	}
	gets, _, bodyBytes, _ := srv.stats()
	if gets != 1 || bodyBytes != int64(len(blob)) {
		t.Errorf("%d GETs, %d body bytes; want the blob fetched once by the two processes", gets, bodyBytes)
	}
	mustVerifyClean(t, s)
	if u := mustUsage(t, s); u != (Usage{Blobs: 1, Bytes: int64(len(blob))}) {
		t.Errorf("usage %+v", u)
	}
}
