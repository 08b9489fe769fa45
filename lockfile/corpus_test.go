package lockfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// badDir holds the malformed lock files, one per file; README.md there lists
// them with the error each must give.
const badDir = "testdata/bad"

// badLockFiles is what each file of testdata/bad must produce when read with
// the reader its name prefix picks (imageslock-, bundlelock-,
// imagelocations-): a *FieldError naming the file and field (empty: the file
// as a whole) whose message holds msg. A file without an entry here, or an
// entry without a file, fails TestBadLockFileCorpus.
var badLockFiles = map[string]struct{ field, msg string }{
	"imageslock-unknown-top-level-field.yml":         {"extra", "unknown field"},
	"imageslock-unknown-field-inside-images.yml":     {"images[1].digest", "unknown field"},
	"imageslock-unknown-field-is-case-sensitive.yml": {"Images", "unknown field"},
	"imageslock-wrong-apiversion.yml":                {"apiVersion", `got "imgpkg.k14s.io/v1alpha1", want "imgpkg.carvel.dev/v1alpha1"`},
	"imageslock-missing-apiversion.yml":              {"apiVersion", "missing"},
	"imageslock-wrong-kind.yml":                      {"kind", `got "BundleLock", want "ImagesLock"`},
	"imageslock-missing-kind.yml":                    {"kind", "missing"},
	"imageslock-kind-is-a-list.yml":                  {"kind", "must be a string"},
	"imageslock-tag-not-digest.yml":                  {"images[1].image", `"nginx:1.2" is a tag reference; lock files need digest references (REPO@sha256:...)`},
	"imageslock-no-tag-no-digest.yml":                {"images[0].image", `"nginx" has no digest`},
	"imageslock-short-digest-hex.yml":                {"images[0].image", "63 hex characters, want 64"},
	"imageslock-long-digest-hex.yml":                 {"images[0].image", "65 hex characters"},
	"imageslock-uppercase-digest-hex.yml":            {"images[0].image", "lowercase hexadecimal"},
	"imageslock-other-algorithm.yml":                 {"images[0].image", `algorithm "sha512"`},
	"imageslock-digest-without-algorithm.yml":        {"images[0].image", "ALGORITHM:HEX"},
	"imageslock-empty-image.yml":                     {"images[0].image", "empty image reference"},
	"imageslock-null-image.yml":                      {"images[0].image", "empty image reference"},
	"imageslock-missing-image.yml":                   {"images[0].image", "missing"},
	"imageslock-null-images-entry.yml":               {"images[0].image", "missing"},
	"imageslock-uppercase-repository.yml":            {"images[0].image", "not a valid repository name"},
	"imageslock-empty-repository.yml":                {"images[0].image", "empty repository"},
	"imageslock-image-is-a-list.yml":                 {"images[0].image", "must be a string, got a list"},
	"imageslock-images-is-a-mapping.yml":             {"images", "must be a list"},
	"imageslock-images-entry-is-a-string.yml":        {"images[0]", "must be a mapping"},
	"imageslock-annotation-value-is-a-mapping.yml":   {"images[0].annotations.a", "must be a string"},
	"imageslock-annotations-is-a-list.yml":           {"images[0].annotations", "must be a mapping"},
	"imageslock-duplicate-annotation-key.yml":        {"images[0].annotations.a", "appears twice"},
	"imageslock-duplicate-field.yml":                 {"images[0].image", "appears twice"},
	"imageslock-duplicate-kind.yml":                  {"kind", "appears twice"},
	"imageslock-merge-key-is-unknown.yml":            {"images[0].<<", "unknown field"},
	"imageslock-invalid-yaml.yml":                    {"", "invalid YAML"},
	"imageslock-tab-indentation.yml":                 {"", "invalid YAML"},
	"imageslock-two-documents.yml":                   {"", "second YAML document at line 5"},
	"imageslock-empty-input.yml":                     {"", "no YAML document"},
	"imageslock-only-comments.yml":                   {"", "no YAML document"},
	"imageslock-document-is-a-list.yml":              {"", "document is a list"},
	"imageslock-document-is-a-string.yml":            {"", `document is str "hello"`},

	"bundlelock-missing-bundle.yml":       {"bundle.image", "missing"},
	"bundlelock-missing-image.yml":        {"bundle.image", "missing"},
	"bundlelock-tag-not-digest.yml":       {"bundle.image", `"reg.io/b:v1" is a tag reference`},
	"bundlelock-invalid-tag.yml":          {"bundle.tag", `"-v1" is not a valid tag`},
	"bundlelock-unknown-bundle-field.yml": {"bundle.digest", "unknown field"},
	"bundlelock-images-field.yml":         {"images", "unknown field"},
	"bundlelock-wrong-kind.yml":           {"kind", `got "ImagesLock", want "BundleLock"`},
	"bundlelock-wrong-apiversion.yml":     {"apiVersion", `got "imgpkg.k14s.io/v1alpha1"`},
	"bundlelock-bundle-is-a-list.yml":     {"bundle", "must be a mapping"},
	"bundlelock-two-documents.yml":        {"", "second YAML document at line 7"},

	"imagelocations-isbundle-not-bool.yml":       {"images[0].isBundle", `must be true or false, got "maybe"`},
	"imagelocations-annotations-not-allowed.yml": {"images[0].annotations", "unknown field"},
	"imagelocations-tag-not-digest.yml":          {"images[0].image", `"reg.io/a:1" is a tag reference`},
	"imagelocations-wrong-kind.yml":              {"kind", `got "ImagesLock", want "ImageLocations"`},
}

// readBad reads path with the reader its name prefix picks; the value is
// nil when the reader returned none.
func readBad(t *testing.T, path string) (any, error) {
	t.Helper()
	name := filepath.Base(path)
	switch {
	case strings.HasPrefix(name, "imageslock-"):
		return orNil(ReadImagesLock(path))
	case strings.HasPrefix(name, "bundlelock-"):
		return orNil(ReadBundleLock(path))
	case strings.HasPrefix(name, "imagelocations-"):
		data, err := ReadFile(path)
		if err != nil {
			return nil, err
		}
		return orNil(ParseImageLocations(path, data))
	}
	t.Fatalf("%s: the name starts with none of imageslock-, bundlelock-, imagelocations-", name)
	return nil, nil
}

// orNil turns a nil *T into a nil interface.
func orNil[T any](v *T, err error) (any, error) {
	if v == nil {
		return nil, err
	}
	return v, err
}

// TestBadLockFileCorpus reads every malformed lock file of testdata/bad and
// checks the error: it matches ErrInvalid, is a *FieldError naming the file
// and the field, and its message says what is wrong. The 16 MiB limit is
// tested by TestReadOversized on a file it generates (too big to commit).
func TestBadLockFileCorpus(t *testing.T) {
	entries, err := os.ReadDir(badDir)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(badDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if e.Name() == "README.md" {
			continue
		}
		files = append(files, e.Name())
	}
	if len(files) < len(badLockFiles) {
		t.Errorf("%d files in %s, %d expectations", len(files), badDir, len(badLockFiles))
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			want, ok := badLockFiles[name]
			if !ok {
				t.Fatalf("%s/%s has no expectation in badLockFiles", badDir, name)
			}
			if !strings.Contains(string(readme), "`"+name+"`") {
				t.Errorf("%s/README.md does not list %s", badDir, name)
			}
			path := filepath.Join(badDir, name)
			got, err := readBad(t, path)
			if err == nil {
				t.Fatalf("no error; read %+v", got)
			}
			if got != nil {
				t.Errorf("returned a value with the error: %+v", got)
			}
			checkFieldError(t, err, path, want.field, want.msg)
		})
	}
	for name := range badLockFiles {
		if !slices.Contains(files, name) {
			t.Errorf("badLockFiles expects %s, which is not in %s", name, badDir)
		}
	}
	// Every file the README names exists.
	for line := range strings.Lines(string(readme)) {
		for part := range strings.SplitSeq(line, "`") {
			if strings.HasSuffix(part, ".yml") && !strings.ContainsAny(part, " /") && !slices.Contains(files, part) {
				t.Errorf("%s/README.md lists %s, which is not there", badDir, part)
			}
		}
	}
}

// checkFieldError checks that err matches ErrInvalid and is a *FieldError for
// file and field whose message, as the user reads it, starts with the file
// and the field and holds msg.
func checkFieldError(t *testing.T, err error, file, field, msg string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %T %v is not a *FieldError", err, err)
	}
	if fe.File != file || fe.Field != field {
		t.Errorf("FieldError{File: %q, Field: %q}, want {%q, %q} (%v)", fe.File, fe.Field, file, field, err)
	}
	prefix := file + ": "
	if field != "" {
		prefix += `field "` + field + `": `
	}
	if got := err.Error(); !strings.HasPrefix(got, prefix) || !strings.Contains(got, msg) {
		t.Errorf("message %q, want prefix %q containing %q", got, prefix, msg)
	}
}
