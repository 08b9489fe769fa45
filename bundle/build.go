package bundle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-oci/ferry/lockfile"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuildOptions controls [Build]. The zero value builds a plain image (like
// `imgpkg push -i`) with no labels, no exclusions and masked permissions.
type BuildOptions struct {
	// Bundle builds a bundle (`push -b`): exactly one `.imgpkg` directory must
	// exist among the inputs, at the top of one input directory, and its
	// images.yml must be a valid ImagesLock. The config gets the label
	// BundleLabel="true". When false (`push -i`), an input directory with a
	// `.imgpkg` directory at its top is refused.
	Bundle bool
	// Labels are added to the image config (`-l key=value`). The key
	// BundleLabel is reserved. The map is not modified. Default: none.
	Labels map[string]string
	// FileExclusions are paths, relative to each input directory, that are
	// left out (with everything below them). They are compared with the
	// relative path exactly, as imgpkg does: ".git" excludes the top-level
	// .git only, not "sub/.git". The CLI passes [".git"] by default; the zero
	// value excludes nothing.
	FileExclusions []string
	// PreservePermissions keeps the file mode instead of masking it with
	// 0700, like `imgpkg push --preserve-permissions`. To give imgpkg's
	// digests it reproduces imgpkg's encoding exactly: files carry their
	// whole Go file mode, and every directory carries the Go file mode of the
	// input directory it was found under. Default: false (files perm&0700,
	// directories 0700).
	PreservePermissions bool
	// TempDir is where the layer is written; "" means os.TempDir().
	TempDir string
}

// Image is an image built by [Build]: manifest and config bytes, their
// descriptors, and the single layer kept in a temporary file until Close.
// Its fields must not be modified. OpenLayer is safe for concurrent use;
// Close must not run concurrently with readers of the layer.
type Image struct {
	// Manifest is the Docker schema2 manifest, compact JSON.
	Manifest []byte
	// Config is the image config, compact JSON.
	Config []byte
	// ManifestDesc describes Manifest (media type MediaTypeDockerManifest).
	ManifestDesc ocispec.Descriptor
	// ConfigDesc describes Config (media type MediaTypeDockerConfig).
	ConfigDesc ocispec.Descriptor
	// LayerDesc describes the gzip-compressed layer (MediaTypeDockerLayer).
	LayerDesc ocispec.Descriptor
	// DiffID is the digest of the uncompressed layer tar.
	DiffID digest.Digest

	layerPath string
}

// OpenLayer opens the compressed layer blob for reading. The caller closes it.
func (i *Image) OpenLayer() (io.ReadCloser, error) {
	f, err := os.Open(i.layerPath)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", i.LayerDesc.Digest, err)
	}
	return f, nil
}

// Close removes the temporary layer file. It is safe to call more than once.
func (i *Image) Close() error {
	if i.layerPath == "" {
		return nil
	}
	err := os.Remove(i.layerPath)
	i.layerPath = ""
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Build creates the one-layer image that `imgpkg push` creates for inputs,
// with the same digests byte for byte. Each input is a directory (its
// contents go to the root of the layer) or a file (it goes to the root under
// its base name); the path itself may be a symbolic link. Inside directories
// only regular files and directories are accepted: symbolic links, devices,
// sockets and fifos are refused with [ErrUnsupportedFile].
//
// The layer tar lists every input directory as "." followed by its entries in
// lexical order, with uid/gid 0, no user or group names, mtime 0, directories
// 0700 and files perm&0700 (see BuildOptions.PreservePermissions). It is
// compressed with the standard library's gzip at BestSpeed. The layer is
// written once to a temporary file, hashing the tar and the gzip streams on
// the way. The caller must Close the returned Image.
func Build(ctx context.Context, inputs []string, opts BuildOptions) (_ *Image, err error) {
	if len(inputs) == 0 {
		return nil, errors.New("bundle: nothing to build: no input files or directories")
	}
	if _, ok := opts.Labels[BundleLabel]; ok {
		return nil, fmt.Errorf("label %q cannot be set, use a different key: %w", BundleLabel, ErrReservedLabel)
	}
	b := &builder{exclusions: opts.FileExclusions, preserve: opts.PreservePermissions}
	ins, err := b.statInputs(inputs)
	if err != nil {
		return nil, err
	}
	if err := b.checkImgpkgDirs(ctx, ins, opts.Bundle); err != nil {
		return nil, err
	}

	labels := maps.Clone(opts.Labels)
	if opts.Bundle {
		if labels == nil {
			labels = map[string]string{}
		}
		labels[BundleLabel] = "true"
	}

	f, err := os.CreateTemp(opts.TempDir, "ferry-layer-*.tar.gz")
	if err != nil {
		return nil, fmt.Errorf("creating layer file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	layer, err := b.writeLayer(ctx, f, ins)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing layer file %s: %w", f.Name(), err)
	}

	img, err := assembleImage(layer, labels)
	if err != nil {
		return nil, err
	}
	img.layerPath = f.Name()
	return img, nil
}

// input is one -f argument.
type input struct {
	path string
	info fs.FileInfo // os.Stat: symbolic links followed
}

type builder struct {
	exclusions []string
	preserve   bool
}

func (b *builder) excluded(rel string) bool {
	for _, e := range b.exclusions {
		if e == rel {
			return true
		}
	}
	return false
}

func (b *builder) statInputs(paths []string) ([]input, error) {
	ins := make([]input, 0, len(paths))
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() && !info.Mode().IsRegular() {
			return nil, fmt.Errorf("input %s: not a regular file or directory (%s): %w", p, info.Mode().Type(), ErrUnsupportedFile)
		}
		ins = append(ins, input{path: p, info: info})
	}
	return ins, nil
}

// imgpkgEntry is an entry named .imgpkg found among the inputs.
type imgpkgEntry struct {
	path  string // as found (input path joined with rel)
	rel   string // relative to its input directory
	isDir bool
}

// checkImgpkgDirs applies imgpkg's rules for the .imgpkg directory: a bundle
// needs exactly one, directly in one input directory, with a valid
// images.yml; a plain image may not have one at the top of an input.
func (b *builder) checkImgpkgDirs(ctx context.Context, ins []input, isBundle bool) error {
	var found []imgpkgEntry
	for _, in := range ins {
		if !in.info.IsDir() {
			if filepath.Base(in.path) == imgpkgDir {
				found = append(found, imgpkgEntry{path: in.path, rel: imgpkgDir})
			}
			continue
		}
		err := walkInput(ctx, in.path, func(full, rel string, d fs.DirEntry) (bool, error) {
			if b.excluded(rel) {
				return false, nil
			}
			if d.Name() == imgpkgDir && rel != "." {
				found = append(found, imgpkgEntry{path: full, rel: rel, isDir: d.IsDir()})
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}

	if !isBundle {
		for _, e := range found {
			if e.isDir && e.rel == imgpkgDir {
				return fmt.Errorf("found %s: images cannot be pushed with '.imgpkg' directories, use -b to push a bundle: %w", e.path, ErrBundleDirInImage)
			}
		}
		return nil
	}

	switch len(found) {
	case 0:
		return fmt.Errorf("expected one directory to contain '.imgpkg' dir, found none; use -i to push a plain image: %w", ErrNotBundleDir)
	case 1:
	default:
		paths := make([]string, len(found))
		for i, e := range found {
			paths[i] = e.path
		}
		return fmt.Errorf("expected one directory to contain '.imgpkg' dir, found %d: %s: %w", len(found), strings.Join(paths, ", "), ErrNotBundleDir)
	}
	e := found[0]
	if !e.isDir {
		return fmt.Errorf("%s: expected '.imgpkg' to be a directory: %w", e.path, ErrNotBundleDir)
	}
	if e.rel != imgpkgDir {
		inputs := make([]string, len(ins))
		for i, in := range ins {
			inputs[i] = in.path
		}
		return fmt.Errorf("expected '.imgpkg' directory to be a direct child of one of: %s; was %s: %w", strings.Join(inputs, ", "), e.path, ErrNotBundleDir)
	}
	lockRel := filepath.Join(imgpkgDir, "images.yml")
	lockPath := filepath.Join(e.path, "images.yml")
	if b.excluded(lockRel) {
		return fmt.Errorf("%s is excluded by a file exclusion: %w", lockPath, ErrNoImagesLock)
	}
	info, err := os.Lstat(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle expected %s to exist: %w", lockPath, ErrNoImagesLock)
	}
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file: %w", lockPath, ErrUnsupportedFile)
	}
	if info.Size() > MaxImagesLockSize {
		return fmt.Errorf("%s: %d bytes, limit %d: %w", lockPath, info.Size(), MaxImagesLockSize, ErrTooLarge)
	}
	data, err := os.ReadFile(lockPath)
	if err != nil {
		return err
	}
	if _, err := lockfile.ParseImagesLock(lockPath, data); err != nil {
		return err
	}
	return nil
}

// walkInput visits root (as ".") and everything below it, depth first, each
// directory's entries in lexical byte order — the order of filepath.Walk,
// which imgpkg uses. visit returns false to skip an entry (and, for a
// directory, what is below it). Symbolic links are not followed, except
// that root itself may be one.
func walkInput(ctx context.Context, root string, visit func(full, rel string, d fs.DirEntry) (bool, error)) error {
	info, err := os.Stat(root)
	if err != nil {
		return err
	}
	return walkDir(ctx, root, ".", fs.FileInfoToDirEntry(info), visit)
}

func walkDir(ctx context.Context, full, rel string, d fs.DirEntry, visit func(full, rel string, d fs.DirEntry) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	descend, err := visit(full, rel, d)
	if err != nil || !descend || !d.IsDir() {
		return err
	}
	entries, err := os.ReadDir(full) // sorted by name
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := walkDir(ctx, filepath.Join(full, e.Name()), filepath.Join(rel, e.Name()), e, visit); err != nil {
			return err
		}
	}
	return nil
}

// builtLayer is what writeLayer measured.
type builtLayer struct {
	digest digest.Digest
	size   int64
	diffID digest.Digest
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (b *builder) writeLayer(ctx context.Context, f *os.File, ins []input) (builtLayer, error) {
	blobHash := sha256.New()
	bw := bufio.NewWriterSize(f, 1<<20)
	blob := &countingWriter{w: io.MultiWriter(bw, blobHash)}
	gz, err := gzip.NewWriterLevel(blob, gzip.BestSpeed)
	if err != nil {
		return builtLayer{}, err
	}
	tarHash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, tarHash))

	for _, in := range ins {
		if err := b.addInput(ctx, tw, in); err != nil {
			return builtLayer{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return builtLayer{}, fmt.Errorf("writing layer: %w", err)
	}
	if err := gz.Close(); err != nil {
		return builtLayer{}, fmt.Errorf("writing layer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return builtLayer{}, fmt.Errorf("writing layer file %s: %w", f.Name(), err)
	}
	return builtLayer{
		digest: sumDigest(blobHash),
		size:   blob.n,
		diffID: sumDigest(tarHash),
	}, nil
}

func sumDigest(h hash.Hash) digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
}

func (b *builder) addInput(ctx context.Context, tw *tar.Writer, in input) error {
	if !in.info.IsDir() {
		name := filepath.Base(in.path)
		if b.excluded(name) {
			return nil
		}
		return b.addFile(ctx, tw, in.path, name, in.info)
	}
	// imgpkg gives every directory the mode of the input directory when
	// permissions are preserved; reproduce that for identical digests.
	dirMode := int64(0o700)
	if b.preserve {
		dirMode = int64(in.info.Mode())
	}
	return walkInput(ctx, in.path, func(full, rel string, d fs.DirEntry) (bool, error) {
		if b.excluded(rel) {
			return false, nil
		}
		if d.IsDir() {
			hdr := &tar.Header{
				Typeflag: tar.TypeDir,
				Name:     filepath.ToSlash(rel),
				Mode:     dirMode,
				ModTime:  time.Time{},
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return false, fmt.Errorf("adding %s to layer: %w", full, err)
			}
			return true, nil
		}
		info, err := d.Info() // lstat
		if err != nil {
			return false, err
		}
		if !info.Mode().IsRegular() {
			return false, fmt.Errorf("%s: expected a regular file or directory, found %s: %w", full, describeType(info.Mode()), ErrUnsupportedFile)
		}
		return false, b.addFile(ctx, tw, full, filepath.ToSlash(rel), info)
	})
}

func describeType(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "an irregular file"
	}
}

func (b *builder) addFile(ctx context.Context, tw *tar.Writer, full, name string, info fs.FileInfo) error {
	mode := int64(info.Mode() & 0o700)
	if b.preserve {
		mode = int64(info.Mode())
	}
	f, err := os.Open(full)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     info.Size(),
		Mode:     mode,
		ModTime:  time.Time{},
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("adding %s to layer: %w", full, err)
	}
	n, err := io.CopyN(tw, &ctxReader{ctx: ctx, r: f}, info.Size())
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("adding %s to layer: file shrank from %d to %d bytes while reading", full, info.Size(), n)
	}
	if err != nil {
		return fmt.Errorf("adding %s to layer: %w", full, err)
	}
	return nil
}

// ctxReader stops reading once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// The JSON documents follow go-containerregistry's types (which imgpkg
// uses), field order included, so the bytes and digests match imgpkg's.

type configFile struct {
	Architecture string          `json:"architecture"`
	Created      string          `json:"created"`
	History      []historyEntry  `json:"history"`
	OS           string          `json:"os"`
	RootFS       rootFS          `json:"rootfs"`
	Config       containerConfig `json:"config"`
}

type historyEntry struct {
	Author    string `json:"author"`
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type rootFS struct {
	Type    string          `json:"type"`
	DiffIDs []digest.Digest `json:"diff_ids"`
}

type containerConfig struct {
	Labels map[string]string `json:"Labels,omitempty"`
}

type schema2Manifest struct {
	SchemaVersion int                 `json:"schemaVersion"`
	MediaType     string              `json:"mediaType"`
	Config        schema2Descriptor   `json:"config"`
	Layers        []schema2Descriptor `json:"layers"`
}

type schema2Descriptor struct {
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Digest    digest.Digest `json:"digest"`
}

// zeroTime is Go's zero time as go-containerregistry writes it.
const zeroTime = "0001-01-01T00:00:00Z"

func assembleImage(layer builtLayer, labels map[string]string) (*Image, error) {
	cfg := configFile{
		Created: zeroTime,
		History: []historyEntry{{Author: "imgpkg", Created: zeroTime, CreatedBy: "imgpkg"}},
		RootFS:  rootFS{Type: "layers", DiffIDs: []digest.Digest{layer.diffID}},
		Config:  containerConfig{Labels: labels},
	}
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDesc := schema2Descriptor{MediaType: MediaTypeDockerConfig, Size: int64(len(cfgBytes)), Digest: digest.FromBytes(cfgBytes)}
	layerDesc := schema2Descriptor{MediaType: MediaTypeDockerLayer, Size: layer.size, Digest: layer.digest}
	man := schema2Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeDockerManifest,
		Config:        cfgDesc,
		Layers:        []schema2Descriptor{layerDesc},
	}
	manBytes, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	toOCI := func(d schema2Descriptor) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest}
	}
	return &Image{
		Manifest:     manBytes,
		Config:       cfgBytes,
		ManifestDesc: ocispec.Descriptor{MediaType: MediaTypeDockerManifest, Size: int64(len(manBytes)), Digest: digest.FromBytes(manBytes)},
		ConfigDesc:   toOCI(cfgDesc),
		LayerDesc:    toOCI(layerDesc),
		DiffID:       layer.diffID,
	}, nil
}
