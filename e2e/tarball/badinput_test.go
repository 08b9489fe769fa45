package tarball_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// brokenCase is one entry of ocilayout/testdata/broken/cases.json, the
// corpus of broken OCI layout tars (written by `go test ./ocilayout -run
// TestBrokenTarCorpus -update`, which documents the fields).
type brokenCase struct {
	File   string               `json:"file"`
	What   string               `json:"what"`
	Want   []string             `json:"want"`
	Absent []ocispec.Descriptor `json:"absent"`
}

// brokenCorpus returns the directory of the broken tars and their cases.
func brokenCorpus(t *testing.T) (string, []brokenCase) {
	t.Helper()
	dir := filepath.Join(harness.SourceRoot(t), "ocilayout", "testdata", "broken")
	raw, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []brokenCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("cases.json: %v", err)
	}
	if len(cases) < 13 {
		t.Fatalf("%d broken tars in %s, want at least 13", len(cases), dir)
	}
	return dir, cases
}

// TestTarBadInput runs ferry copy --tar FILE --to-repo and ferry tar verify
// FILE on each broken tar of the corpus: each exits 1 with one
// "ferry: Error:" line naming the entry or digest at fault, without a
// panic; the destination repository gets no tag at all (nothing was asked
// for by a verified tarball); a blob with wrong or missing bytes never
// reaches it, nor the manifest above it; the store still verifies and the
// tar is left as it was.
func TestTarBadInput(t *testing.T) {
	ctx := t.Context()
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	dir, cases := brokenCorpus(t)
	env := []string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}

	// Control: the tar every case damages, which gzip-compressed.tar holds
	// intact, imports and verifies, so each failure below comes from its
	// damage.
	t.Run("control", func(t *testing.T) {
		blob, err := os.ReadFile(filepath.Join(dir, "gzip-compressed.tar"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		good, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "good.tar")
		if err := os.WriteFile(path, good, 0o644); err != nil {
			t.Fatal(err)
		}
		harness.RunOK(t, nil, "tar", "verify", path)
		harness.RunOK(t, env, "copy", "--tar", path, "--to-repo", dst.Ref("bad/control"))
		repo := dst.Repository(t, "bad/control")
		if tags := harness.Tags(ctx, t, repo); !slices.Contains(tags, "v1") {
			t.Errorf("tags %q after importing the intact tar, want v1 among them", tags)
		}
		for _, c := range cases {
			for _, d := range c.Absent {
				if !has(ctx, t, repo, d) {
					t.Errorf("%s (%s) not imported from the intact tar", d.Digest, d.MediaType)
				}
			}
		}
	})

	for i, c := range cases {
		t.Run(strings.TrimSuffix(c.File, ".tar"), func(t *testing.T) {
			path := filepath.Join(dir, c.File)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s", c.File, c.What)
			repoName := "bad/case" + string(rune('a'+i))

			res := harness.Run(t, env, "copy", "--tar", path, "--to-repo", dst.Ref(repoName), "--registry-retry-count", "0")
			line := harness.ErrorLine(t, res)
			for _, w := range c.Want {
				if !strings.Contains(line, w) {
					t.Errorf("copy --tar: error line %q does not hold %q", line, w)
				}
			}
			if strings.Contains(line, "_state") || strings.Contains(line, "/blobs/uploads/") {
				t.Errorf("copy --tar: error line %q shows an upload URL; it should name registry, repository and blob", line)
			}
			if strings.Contains(res.Stderr, "Succeeded") {
				t.Errorf("copy --tar printed Succeeded:\n%s", res.Stderr)
			}
			repo := dst.Repository(t, repoName)
			if tags := harness.Tags(ctx, t, repo); len(tags) != 0 {
				t.Errorf("the destination got tags %q from a damaged tarball", tags)
			}
			for _, d := range c.Absent {
				if has(ctx, t, repo, d) {
					t.Errorf("%s (%s), damaged or missing in the tar, reached the destination", d.Digest, d.MediaType)
				}
			}
			if res := harness.Run(t, env, "store", "verify"); res.ExitCode != 0 {
				t.Errorf("store verify after the failed import: %s", res)
			}

			res = harness.Run(t, env, "tar", "verify", path)
			line = harness.ErrorLine(t, res)
			for _, w := range c.Want {
				if !strings.Contains(line, w) {
					t.Errorf("tar verify: error line %q does not hold %q", line, w)
				}
			}
			if res.Stdout != "" {
				t.Errorf("tar verify stdout %q, want nothing", res.Stdout)
			}
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
				t.Errorf("ferry changed %s (%v)", path, err)
			}
		})
	}
}
