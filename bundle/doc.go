// Package bundle handles the contents of Carvel imgpkg bundles and plain
// images built from directories:
//
//   - [Build] turns directories and files into the deterministic one-layer
//     image that `imgpkg push` creates, byte for byte, so pushing the same
//     directory with ferry or with imgpkg gives the same digests;
//   - [ReadImagesLock] finds `.imgpkg/images.yml` inside a bundle layer;
//   - [Unpack] extracts layers into a directory safely, for `pull`.
//
// The package does no network I/O and never prints. All functions are safe
// for concurrent use as long as they do not work on the same paths.
package bundle

import "errors"

// BundleLabel is the config label that marks an image as an imgpkg bundle.
// imgpkg only checks that the key exists; [Build] writes the value "true".
const BundleLabel = "dev.carvel.imgpkg.bundle"

// ImagesLockPath is where a bundle keeps its ImagesLock, relative to the
// bundle root (and to the root of the bundle layer).
const ImagesLockPath = ".imgpkg/images.yml"

// imgpkgDir is the directory that makes a directory a bundle.
const imgpkgDir = ".imgpkg"

// MaxImagesLockSize is the largest `.imgpkg/images.yml` that
// [ReadImagesLock] accepts (16 MiB).
const MaxImagesLockSize = 16 << 20

// Media types of what Build creates. They are the Docker schema2 types, as
// imgpkg pushes them.
const (
	// MediaTypeDockerManifest is the media type of the manifest Build creates.
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	// MediaTypeDockerConfig is the media type of the config Build creates.
	MediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
	// MediaTypeDockerLayer is the media type of the layer Build creates.
	MediaTypeDockerLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Sentinel errors. Errors returned by this package wrap one of them together
// with the path, entry or digest concerned; test with [errors.Is].
var (
	// ErrNotBundleDir means the inputs of a bundle build do not hold exactly
	// one `.imgpkg` directory at the top of one input directory.
	ErrNotBundleDir = errors.New("not a bundle directory")
	// ErrBundleDirInImage means a plain image build (-i) found a `.imgpkg`
	// directory; such inputs must be pushed as a bundle (-b).
	ErrBundleDirInImage = errors.New("'.imgpkg' directory in a plain image")
	// ErrUnsupportedFile means an input file or a layer entry is not a
	// regular file or directory (symlink while building, device, fifo, socket).
	ErrUnsupportedFile = errors.New("unsupported file type")
	// ErrUnsafePath means a layer entry would land outside the target
	// directory, or write through a symbolic link.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrUnsafeOutput means the output directory of Unpack was refused
	// ("", "/", ".", "..", the working directory or one of its parents, or an
	// existing non-directory) to avoid deleting something by accident.
	ErrUnsafeOutput = errors.New("refused output directory")
	// ErrNoImagesLock means a bundle has no `.imgpkg/images.yml`.
	ErrNoImagesLock = errors.New("no .imgpkg/images.yml")
	// ErrTooLarge means an entry is larger than the limit for it.
	ErrTooLarge = errors.New("too large")
	// ErrReservedLabel means a user label uses the key [BundleLabel].
	ErrReservedLabel = errors.New("reserved label")
	// ErrInvalidLayer means a layer could not be read: bad compression, bad
	// tar, digest mismatch, or entries that contradict each other.
	ErrInvalidLayer = errors.New("invalid layer")
)
