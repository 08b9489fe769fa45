package ocilayout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Format is the kind of file or directory Detect found.
type Format int

const (
	// FormatUnknown is the zero value; Detect never returns it with a nil error.
	FormatUnknown Format = iota
	// FormatOCILayoutTar is a tar holding an oci-layout entry: read it with OpenTar.
	FormatOCILayoutTar
	// FormatOCILayoutDir is a directory holding an oci-layout file: read it with OpenDir.
	FormatOCILayoutDir
	// FormatImgpkgTar is imgpkg's own tarball (manifest.json in imgpkg's
	// shape): read it with OpenImgpkgTar.
	FormatImgpkgTar
)

// String returns a short name for the format.
func (f Format) String() string {
	switch f {
	case FormatOCILayoutTar:
		return "OCI image layout tar"
	case FormatOCILayoutDir:
		return "OCI image layout directory"
	case FormatImgpkgTar:
		return "imgpkg tarball"
	default:
		return "unknown"
	}
}

// Detect says what path holds: an OCI image layout directory, a tar holding
// an OCI image layout (an oci-layout entry; checked first), or imgpkg's
// tarball (a manifest.json listing Image/ImageIndex objects). Anything else
// fails with ErrUnknownFormat: a docker save tarball with ErrDockerSave, a
// compressed tar, a file that is not a tar. Tar safety checks (ErrTruncated,
// ErrUnsafeEntry, ErrDuplicateEntry) apply as in OpenTar.
func Detect(ctx context.Context, path string) (Format, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FormatUnknown, err
	}
	if fi.IsDir() {
		lf, err := os.Stat(path + string(os.PathSeparator) + ocispec.ImageLayoutFile)
		if err != nil || !lf.Mode().IsRegular() {
			return FormatUnknown, fmt.Errorf("%s: %w: a directory without an %s file", path, ErrUnknownFormat, ocispec.ImageLayoutFile)
		}
		return FormatOCILayoutDir, nil
	}
	f, size, err := openTarFile(path)
	if err != nil {
		return FormatUnknown, err
	}
	defer f.Close()
	var magic [4]byte
	n, _ := f.ReadAt(magic[:], 0)
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return FormatUnknown, fmt.Errorf("%s: %w: gzip-compressed; decompress it first (gunzip)", path, ErrUnknownFormat)
	case n == 4 && bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return FormatUnknown, fmt.Errorf("%s: %w: zstd-compressed; decompress it first (zstd -d)", path, ErrUnknownFormat)
	}
	ti, err := scanTar(ctx, f, size)
	if err != nil {
		if isNotTar(err) {
			return FormatUnknown, fmt.Errorf("%s: %w: %w", path, ErrUnknownFormat, err)
		}
		return FormatUnknown, fmt.Errorf("%s: %w", path, err)
	}
	if _, ok := ti.file(ocispec.ImageLayoutFile); ok {
		return FormatOCILayoutTar, nil
	}
	if e, ok := ti.file("manifest.json"); ok {
		b, err := readEntry(f, e, maxManifestJSON)
		if err != nil {
			return FormatUnknown, fmt.Errorf("%s: %w", path, err)
		}
		switch manifestJSONShape(b) {
		case shapeImgpkg:
			return FormatImgpkgTar, nil
		case shapeDockerSave:
			return FormatUnknown, fmt.Errorf("%s: %w", path, ErrDockerSave)
		}
		return FormatUnknown, fmt.Errorf("%s: %w: its manifest.json is neither imgpkg's nor docker's", path, ErrUnknownFormat)
	}
	if _, ok := ti.file("repositories"); ok {
		return FormatUnknown, fmt.Errorf("%s: %w", path, ErrDockerSave)
	}
	return FormatUnknown, fmt.Errorf("%s: %w: a tar with neither an %s nor a manifest.json entry", path, ErrUnknownFormat, ocispec.ImageLayoutFile)
}

type jsonShape int

const (
	shapeOther jsonShape = iota
	shapeImgpkg
	shapeDockerSave
)

// manifestJSONShape tells imgpkg's manifest.json (an array of objects with
// "Image" and/or "ImageIndex") from docker save's (objects with "Config",
// "RepoTags", "Layers").
func manifestJSONShape(b []byte) jsonShape {
	var items []map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&items); err != nil || len(items) == 0 {
		return shapeOther
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return shapeOther
	}
	imgpkg, docker := true, true
	for _, it := range items {
		_, img := it["Image"]
		_, idx := it["ImageIndex"]
		imgpkg = imgpkg && (img || idx)
		_, cfg := it["Config"]
		_, layers := it["Layers"]
		docker = docker && cfg && layers
	}
	switch {
	case imgpkg:
		return shapeImgpkg
	case docker:
		return shapeDockerSave
	}
	return shapeOther
}
