package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ferry-oci/ferry/store"
)

// storeSource serves every repository from one remote through a store.
type storeSource struct {
	st     *store.Store
	remote oras.ReadOnlyTarget
}

func (s storeSource) Repository(context.Context, string) (oras.ReadOnlyTarget, error) {
	return s.st.Cache(s.remote), nil
}

// TestReadRecorderTellsDownloadsFromHits checks what the --json report's
// "fetched" rests on: a blob the store did not hold before a Fetch is
// recorded as fetched (small ones, committed within Fetch, and large ones,
// committed at their end), one it held is not, and a run whose source has
// no store in front records every read it is shown.
func TestReadRecorderTellsDownloadsFromHits(t *testing.T) {
	ctx := context.Background()
	remote := memory.New()
	push := func(data []byte) ocispec.Descriptor {
		desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, data)
		if err := remote.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return desc
	}
	small := push([]byte("a small layer"))
	large := push(bytes.Repeat([]byte("a large layer "), 40000)) // over 256 KiB
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(rec *readRecorder, desc ocispec.Descriptor) {
		t.Helper()
		repo, err := rec.source(storeSource{st: st, remote: remote}).Repository(ctx, "reg.test/app")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := repo.(*recordingCache); !ok {
			t.Fatalf("repository is a %T, want a *recordingCache", repo)
		}
		rc, err := repo.Fetch(ctx, desc)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
	}
	cold := newReadRecorder(st)
	fetch(cold, small)
	fetch(cold, large)
	if !cold.fetched(small.Digest) || !cold.fetched(large.Digest) || cold.fetchedBytes() != small.Size+large.Size {
		t.Errorf("cold store: fetched small %v, large %v, %d bytes; want both, %d bytes",
			cold.fetched(small.Digest), cold.fetched(large.Digest), cold.fetchedBytes(), small.Size+large.Size)
	}
	warm := newReadRecorder(st)
	fetch(warm, small)
	fetch(warm, large)
	if warm.fetched(small.Digest) || warm.fetched(large.Digest) || warm.fetchedBytes() != 0 {
		t.Errorf("warm store: fetched small %v, large %v, %d bytes; want none", warm.fetched(small.Digest), warm.fetched(large.Digest), warm.fetchedBytes())
	}

	direct := newReadRecorder(nil)
	if repo, _ := direct.source(storeSource{st: st, remote: remote}).Repository(ctx, "reg.test/app"); repo == nil {
		t.Fatal("no repository")
	} else if _, ok := repo.(*recordingCache); ok {
		t.Error("a recorder without a store wraps the store's repositories")
	}
	rc := direct.wrap(small, io.NopCloser(bytes.NewReader(nil)))
	rc.Close()
	if !direct.fetched(small.Digest) || direct.fetched(large.Digest) {
		t.Errorf("without a store: fetched small %v, large %v; want only the one read", direct.fetched(small.Digest), direct.fetched(large.Digest))
	}
}
