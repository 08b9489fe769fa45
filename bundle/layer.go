package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ferry-oci/ferry/lockfile"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// compression of a layer blob.
type compression int

const (
	compressionUnknown compression = iota
	compressionNone
	compressionGzip
	compressionZstd
)

func (c compression) String() string {
	switch c {
	case compressionNone:
		return "uncompressed"
	case compressionGzip:
		return "gzip"
	case compressionZstd:
		return "zstd"
	default:
		return "unknown"
	}
}

// compressionOf tells a layer's compression from its media type: OCI
// (`application/vnd.oci.image.layer.v1.tar+gzip`, `+zstd`, plain `.tar`,
// non-distributable variants) and Docker (`...rootfs.diff.tar.gzip`,
// `...rootfs.foreign.diff.tar.gzip`, `...rootfs.diff.tar`).
func compressionOf(mediaType string) compression {
	mt, _, _ := strings.Cut(mediaType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch {
	case mt == "":
		return compressionUnknown
	case strings.HasSuffix(mt, "+gzip"), strings.HasSuffix(mt, ".gzip"), strings.HasSuffix(mt, "tar.gz"):
		return compressionGzip
	case strings.HasSuffix(mt, "+zstd"), strings.HasSuffix(mt, ".zstd"):
		return compressionZstd
	case strings.HasSuffix(mt, ".tar"), strings.HasSuffix(mt, "+tar"):
		return compressionNone
	default:
		return compressionUnknown
	}
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompressor is an uncompressed view of a layer blob.
type decompressor struct {
	io.Reader
	close func()
}

func (d *decompressor) Close() {
	if d.close != nil {
		d.close()
	}
}

// decompress wraps r by the compression mediaType names, or by the magic
// bytes at the start of r when the media type says nothing known.
func decompress(r io.Reader, mediaType string) (*decompressor, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	c := compressionOf(mediaType)
	if c == compressionUnknown {
		magic, err := br.Peek(len(zstdMagic))
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		switch {
		case bytes.HasPrefix(magic, gzipMagic):
			c = compressionGzip
		case bytes.HasPrefix(magic, zstdMagic):
			c = compressionZstd
		default:
			c = compressionNone
		}
	}
	switch c {
	case compressionGzip:
		zr, err := kgzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w: %w", ErrInvalidLayer, err)
		}
		return &decompressor{Reader: zr, close: func() { _ = zr.Close() }}, nil
	case compressionZstd:
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w: %w", ErrInvalidLayer, err)
		}
		return &decompressor{Reader: zr, close: zr.Close}, nil
	default:
		return &decompressor{Reader: br}, nil
	}
}

// maxZstdWindow bounds the memory a zstd layer may ask for (zstd --ultra -22
// and --long=30 stay below it).
const maxZstdWindow = 1 << 30

// tarError marks an error from the tar reader as ErrInvalidLayer unless it
// is the context's.
func tarError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, ErrInvalidLayer) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidLayer, err)
}

// normalizeEntryName turns a tar entry name into a clean slash-separated
// path relative to the layer root ("" for the root itself). Old imgpkg
// versions on Windows wrote backslashes; they are read as separators, as
// imgpkg does. Absolute names and names with a ".." component are refused.
func normalizeEntryName(name string) (string, error) {
	if strings.Contains(name, `\`) {
		name = strings.ReplaceAll(name, `\`, "/")
	}
	if name == "" {
		return "", fmt.Errorf("empty entry name: %w", ErrInvalidLayer)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("absolute path: %w", ErrUnsafePath)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("path goes up with '..': %w", ErrUnsafePath)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// ReadImagesLock finds `.imgpkg/images.yml` in one bundle layer and parses
// it. The layer is a tar, compressed as mediaType says (gzip, zstd, or none;
// OCI and Docker media types). When mediaType is empty or unknown, the
// compression is recognised by its magic bytes. Entry names "./.imgpkg/
// images.yml" and ".imgpkg/images.yml" are both accepted; when the layer
// holds the file more than once the last copy wins, as on extraction.
//
// The whole layer is read. The file may not exceed [MaxImagesLockSize]
// ([ErrTooLarge]); a missing file gives [ErrNoImagesLock]; a damaged layer
// gives [ErrInvalidLayer]; a non-regular images.yml gives
// [ErrUnsupportedFile]. Parse errors come from the lockfile package.
func ReadImagesLock(ctx context.Context, layer io.Reader, mediaType string) (*lockfile.ImagesLock, error) {
	dec, err := decompress(&ctxReader{ctx: ctx, r: layer}, mediaType)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	defer dec.Close()

	var data []byte
	found := false
	tr := tar.NewReader(dec)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, tarError(ctx, err)
		}
		name, err := normalizeEntryName(hdr.Name)
		if err != nil || name != ImagesLockPath {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("entry %q: not a regular file: %w", hdr.Name, ErrUnsupportedFile)
		}
		if hdr.Size > MaxImagesLockSize {
			return nil, fmt.Errorf("entry %q: %d bytes, limit %d: %w", hdr.Name, hdr.Size, MaxImagesLockSize, ErrTooLarge)
		}
		data, err = io.ReadAll(io.LimitReader(tr, MaxImagesLockSize+1))
		if err != nil {
			return nil, tarError(ctx, err)
		}
		found = true
	}
	if !found {
		return nil, fmt.Errorf("layer has no %s: %w", ImagesLockPath, ErrNoImagesLock)
	}
	return lockfile.ParseImagesLock(ImagesLockPath, data)
}
