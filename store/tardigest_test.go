package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestTarDigests(t *testing.T) {
	s := openStore(t, t.TempDir())
	key, sum := digest.FromString("key"), digest.FromString("tar bytes")
	if _, ok := s.TarDigest(key); ok {
		t.Fatal("a digest remembered in an empty store")
	}
	s.RememberTarDigest(key, sum)
	if got, ok := s.TarDigest(key); !ok || got != sum {
		t.Fatalf("TarDigest = %s, %v; want %s", got, ok, sum)
	}
	// Another store on the same root (another process) sees it.
	if got, ok := openStore(t, s.Root()).TarDigest(key); !ok || got != sum {
		t.Errorf("TarDigest from a second store = %s, %v", got, ok)
	}
	// Invalid keys and digests are refused; garbage in the file is ignored.
	s.RememberTarDigest("sha256:nothex", sum)
	s.RememberTarDigest(digest.FromString("k2"), "sha256:short")
	if _, ok := s.TarDigest(digest.FromString("k2")); ok {
		t.Error("an invalid digest was remembered")
	}
	p, _ := s.tarDigestPath(key)
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.TarDigest(key); ok {
		t.Error("garbage read as a digest")
	}
	// Prune removes the ones not used for the given age, and no blobs.
	s.RememberTarDigest(key, sum)
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	fresh := digest.FromString("fresh")
	s.RememberTarDigest(fresh, sum)
	if _, err := s.Prune(t.Context(), PruneOptions{OlderThan: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.TarDigest(key); ok {
		t.Error("an old remembered digest survived Prune")
	}
	if _, ok := s.TarDigest(fresh); !ok {
		t.Error("a fresh remembered digest was pruned")
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), tarDigestsDir, "sha256")); len(entries) != 1 {
		t.Errorf("%d files under tars/sha256, want 1", len(entries))
	}
}
