package ocilayout

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readRootFile reads a small file inside root, refusing more than limit bytes.
func readRootFile(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", name, ErrNotLayout)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %d this reader accepts", name, ErrNotLayout, fi.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// checkLayoutFile checks the content of an oci-layout file.
func checkLayoutFile(b []byte) error {
	var l ocispec.ImageLayout
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("%w: oci-layout is not valid JSON: %w", ErrNotLayout, err)
	}
	if l.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("%w: unsupported imageLayoutVersion %q (want %q)", ErrNotLayout, l.Version, ocispec.ImageLayoutVersion)
	}
	return nil
}

// Limits on the small files the readers load into memory.
const (
	maxLayoutFile   = 64 << 10
	maxIndexFile    = 64 << 20
	maxManifestJSON = 256 << 20 // imgpkg's manifest.json embeds every manifest and config
	maxManifestBlob = 4 << 20   // as oras-go and registries
)

// parseIndex parses and checks index.json.
func parseIndex(b []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Index{}, fmt.Errorf("%w: %w", ErrMalformedIndex, err)
	}
	if idx.SchemaVersion != 2 {
		return ocispec.Index{}, fmt.Errorf("%w: schemaVersion %d, want 2", ErrMalformedIndex, idx.SchemaVersion)
	}
	if idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex {
		return ocispec.Index{}, fmt.Errorf("%w: mediaType %q, want %q", ErrMalformedIndex, idx.MediaType, ocispec.MediaTypeImageIndex)
	}
	for i, m := range idx.Manifests {
		if err := m.Digest.Validate(); err != nil {
			return ocispec.Index{}, fmt.Errorf("%w: manifests[%d]: digest %q: %w", ErrMalformedIndex, i, m.Digest, err)
		}
		if m.Size < 0 {
			return ocispec.Index{}, fmt.Errorf("%w: manifests[%d] (%s): negative size %d", ErrMalformedIndex, i, m.Digest, m.Size)
		}
		if _, err := RootFromDescriptor(m); err != nil {
			return ocispec.Index{}, err
		}
	}
	return idx, nil
}
