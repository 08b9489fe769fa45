package bundle

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Layer is one layer blob to extract with [Unpack].
type Layer struct {
	// MediaType tells the compression (gzip, zstd or none, OCI or Docker
	// types). Empty or unknown: recognised by the magic bytes.
	MediaType string
	// Digest of the blob as Open returns it. When set, Unpack verifies it
	// and names it in errors; when empty, nothing is verified.
	Digest digest.Digest
	// Open returns the (compressed) blob. Unpack closes it.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// whiteout prefixes of the OCI image spec.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// maxSymlinkHops bounds symbolic link resolution; more is treated as a loop.
const maxSymlinkHops = 255

// Unpack extracts layers, in order, into dir, which it replaces: the layers
// are extracted into a new directory next to dir (same parent, hidden name),
// which is then swapped in (the old dir is renamed away, the new one renamed
// into place, the old one removed). On error nothing new is left behind and
// an existing dir is untouched. Missing parents of dir are created (and
// removed again on error).
//
// dir may not be "", "/", ".", "..", a path that cleans to one of them, the
// working directory or one of its parents, or an existing non-directory
// ([ErrUnsafeOutput]).
//
// Each entry is checked before it is written; the first entry that would
// land outside dir fails the whole unpack with [ErrUnsafePath] naming
// the entry and the layer: absolute names, ".." components, symbolic links
// whose target is absolute or resolves outside dir (also through other
// links, checked again once all layers are extracted), hard links to
// anything but a regular file inside dir, and entries whose parent path
// contains a symbolic link. Devices, fifos and other special entries fail
// with [ErrUnsupportedFile]. OCI whiteouts (".wh.NAME" and the opaque
// ".wh..wh..opq") delete what earlier layers extracted.
//
// Like imgpkg, file and directory permissions repeat the owner's bits of
// the entry's mode for group and others (before the umask), directories are
// always owner-writable, modification times come from the entries, and
// ownership is not changed. Names with backslashes (written by old imgpkg
// versions on Windows) are read with "/" separators.
func Unpack(ctx context.Context, dir string, layers []Layer) (err error) {
	target, err := checkOutputDir(dir)
	if err != nil {
		return err
	}
	var existing fs.FileInfo
	if fi, err := os.Lstat(target); err == nil {
		if !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("output %s exists and is not a directory: %w", dir, ErrUnsafeOutput)
		}
		existing = fi
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	parent := filepath.Dir(target)
	createdParent, err := mkdirParents(parent)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && createdParent != "" {
			_ = os.RemoveAll(createdParent)
		}
	}()

	tmp, err := mkdirUnique(parent, "."+filepath.Base(target)+".ferry-new-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()

	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	u := &unpacker{
		root:     root,
		dirTimes: map[string]time.Time{},
		symlinks: map[string]string{},
	}
	err = u.unpackAll(ctx, layers)
	if closeErr := root.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return swapIn(tmp, target, existing != nil)
}

// checkOutputDir refuses output directories whose replacement would most
// likely be an accident, and returns the absolute, clean path.
func checkOutputDir(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("output directory is empty: %w", ErrUnsafeOutput)
	}
	clean := filepath.Clean(dir)
	if clean == "." || clean == ".." || clean == string(filepath.Separator) || filepath.Base(clean) == ".." {
		return "", fmt.Errorf("output directory %q: refusing to replace it: %w", dir, ErrUnsafeOutput)
	}
	abs, err := filepath.Abs(clean)
	if err != nil {
		return "", err
	}
	if filepath.Dir(abs) == abs {
		return "", fmt.Errorf("output directory %q is a filesystem root: %w", dir, ErrUnsafeOutput)
	}
	if wd, err := os.Getwd(); err == nil {
		if wd == abs || strings.HasPrefix(wd, abs+string(filepath.Separator)) {
			return "", fmt.Errorf("output directory %q holds the working directory: %w", dir, ErrUnsafeOutput)
		}
	}
	return abs, nil
}

// mkdirParents creates dir and its missing parents. It returns the topmost
// directory it created ("" when dir existed), for removal on error.
func mkdirParents(dir string) (string, error) {
	top := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		top = d
		if filepath.Dir(d) == d {
			break
		}
	}
	if top == "" {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", err
	}
	return top, nil
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// mkdirUnique creates a new directory parent/prefix<random> with mode 0777
// before the umask, like a directory made by mkdir(1).
func mkdirUnique(parent, prefix string) (string, error) {
	for range 100 {
		name := filepath.Join(parent, prefix+randomSuffix())
		err := os.Mkdir(name, 0o777)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("creating a temporary directory in %s: too many collisions", parent)
}

// swapIn replaces target with tmp: the old target (if any) is renamed away,
// tmp renamed into place, then the old one is removed.
func swapIn(tmp, target string, exists bool) error {
	if !exists {
		if err := os.Rename(tmp, target); err != nil {
			return err
		}
		return nil
	}
	parent, base := filepath.Split(target)
	old := filepath.Join(parent, "."+base+".ferry-old-"+randomSuffix())
	if err := os.Rename(target, old); err != nil {
		return fmt.Errorf("moving the previous %s away: %w", target, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		if restoreErr := os.Rename(old, target); restoreErr != nil {
			return fmt.Errorf("moving the new contents into %s: %w (and restoring the previous contents failed, they are in %s: %v)", target, err, old, restoreErr)
		}
		return fmt.Errorf("moving the new contents into %s: %w", target, err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("%s was replaced, but removing its previous contents from %s failed: %w", target, old, err)
	}
	return nil
}

// unpacker extracts into a private, fresh directory opened as an os.Root,
// so no operation can leave it even if a check were missing.
type unpacker struct {
	root     *os.Root
	layerID  string               // digest or "#N", for errors
	inLayer  map[string]bool      // names written by the current layer
	inLayerA map[string]bool      // their parent directories
	dirTimes map[string]time.Time // directories' mtimes, set at the end
	symlinks map[string]string    // symbolic link name -> layer that wrote it
}

func (u *unpacker) unpackAll(ctx context.Context, layers []Layer) error {
	for i, l := range layers {
		u.layerID = string(l.Digest)
		if u.layerID == "" {
			u.layerID = fmt.Sprintf("#%d", i+1)
		}
		u.inLayer = map[string]bool{}
		u.inLayerA = map[string]bool{}
		if err := u.unpackLayer(ctx, l); err != nil {
			return err
		}
	}
	if err := u.checkSymlinks(); err != nil {
		return err
	}
	for name, mtime := range u.dirTimes {
		if fi, err := u.root.Lstat(name); err == nil && fi.IsDir() {
			if err := u.root.Chtimes(name, mtime, mtime); err != nil {
				return err
			}
		}
	}
	return nil
}

func (u *unpacker) unpackLayer(ctx context.Context, l Layer) (err error) {
	if l.Open == nil {
		return fmt.Errorf("layer %s: no Open function", u.layerID)
	}
	var verifier digest.Verifier
	if l.Digest != "" {
		if err := l.Digest.Validate(); err != nil {
			return fmt.Errorf("layer %s: %w: %w", u.layerID, ErrInvalidLayer, err)
		}
		verifier = l.Digest.Verifier()
	}
	rc, err := l.Open(ctx)
	if err != nil {
		return fmt.Errorf("layer %s: %w", u.layerID, err)
	}
	defer rc.Close()
	var src io.Reader = &ctxReader{ctx: ctx, r: rc}
	if verifier != nil {
		src = io.TeeReader(src, verifier)
	}
	dec, err := decompress(src, l.MediaType)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("layer %s: %w", u.layerID, err)
	}
	defer dec.Close()

	tr := tar.NewReader(dec)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", u.layerID, tarError(ctx, err))
		}
		if err := u.entry(hdr, tr); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return err
		}
	}
	if verifier != nil {
		// The tar end may come before the end of the blob: hash the rest.
		if _, err := io.Copy(io.Discard, src); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("layer %s: %w", u.layerID, err)
		}
		if !verifier.Verified() {
			return fmt.Errorf("layer %s: content does not match the digest: %w", u.layerID, ErrInvalidLayer)
		}
	}
	return nil
}

// entryError names the layer and the entry.
func (u *unpacker) entryError(hdr *tar.Header, err error) error {
	return fmt.Errorf("layer %s: entry %q: %w", u.layerID, hdr.Name, err)
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.entryError(hdr, fmt.Errorf("%s entries are not extracted: %w", typeName(hdr.Typeflag), ErrUnsupportedFile))
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink:
	default:
		return u.entryError(hdr, fmt.Errorf("tar type %q: %w", hdr.Typeflag, ErrUnsupportedFile))
	}
	name, err := normalizeEntryName(hdr.Name)
	if err != nil {
		return u.entryError(hdr, err)
	}
	if name == "" { // the layer root: dir itself
		if hdr.Typeflag != tar.TypeDir {
			return u.entryError(hdr, fmt.Errorf("the root entry must be a directory: %w", ErrInvalidLayer))
		}
		return nil
	}
	if base := path.Base(name); strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, name)
	}
	if err := u.prepareParents(name, true); err != nil {
		return u.entryError(hdr, err)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		err = u.dir(name, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		err = u.file(name, hdr, r)
	case tar.TypeSymlink:
		err = u.symlink(name, hdr)
	case tar.TypeLink:
		err = u.hardlink(name, hdr)
	}
	if err != nil {
		return u.entryError(hdr, err)
	}
	u.inLayer[name] = true
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		u.inLayerA[d] = true
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	default:
		return fmt.Sprintf("type %q", t)
	}
}

// permFromHeader repeats the owner's permission bits for group and others,
// as imgpkg does on extraction (the umask applies afterwards).
func permFromHeader(mode int64) fs.FileMode {
	user := fs.FileMode(mode) & 0o700
	return user | user>>3 | user>>6
}

// prepareParents makes sure every parent of name is a real directory (no
// symbolic link, no file). With create, missing parents are created;
// otherwise a missing parent gives fs.ErrNotExist.
func (u *unpacker) prepareParents(name string, create bool) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	cur := ""
	for _, part := range strings.Split(dir, "/") {
		cur = path.Join(cur, part)
		fi, err := u.root.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			if !create {
				return fmt.Errorf("parent %q: %w", cur, fs.ErrNotExist)
			}
			return u.root.MkdirAll(dir, 0o777)
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("parent %q is a symbolic link, refusing to write through it: %w", cur, ErrUnsafePath)
		}
		if !fi.IsDir() {
			return fmt.Errorf("parent %q is not a directory: %w", cur, ErrInvalidLayer)
		}
	}
	return nil
}

// clear removes whatever is at name, unless keepDir and it is a directory.
// It reports whether a directory was kept.
func (u *unpacker) clear(name string, keepDir bool) (bool, error) {
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if keepDir && fi.IsDir() {
		return true, nil
	}
	return false, u.root.RemoveAll(name)
}

func (u *unpacker) dir(name string, hdr *tar.Header) error {
	kept, err := u.clear(name, true)
	if err != nil {
		return err
	}
	if !kept {
		if err := u.root.Mkdir(name, permFromHeader(hdr.Mode)|0o700); err != nil {
			return err
		}
	}
	u.dirTimes[name] = hdr.ModTime
	return nil
}

func (u *unpacker) file(name string, hdr *tar.Header, r io.Reader) error {
	if _, err := u.clear(name, false); err != nil {
		return err
	}
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, permFromHeader(hdr.Mode))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return tarError(context.Background(), err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
}

func (u *unpacker) symlink(name string, hdr *tar.Header) error {
	target := hdr.Linkname
	if target == "" {
		return fmt.Errorf("symbolic link with an empty target: %w", ErrInvalidLayer)
	}
	if strings.HasPrefix(target, "/") {
		return fmt.Errorf("symbolic link to absolute path %q: %w", target, ErrUnsafePath)
	}
	if err := u.resolvesInside(path.Dir(name), target); err != nil {
		return fmt.Errorf("symbolic link to %q: %w", target, err)
	}
	if _, err := u.clear(name, false); err != nil {
		return err
	}
	if err := u.root.Symlink(target, name); err != nil {
		return err
	}
	u.symlinks[name] = u.layerID
	return nil
}

func (u *unpacker) hardlink(name string, hdr *tar.Header) error {
	target, err := normalizeEntryName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	if target == "" || target == name {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, ErrInvalidLayer)
	}
	if err := u.prepareParents(target, false); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	fi, err := u.root.Lstat(target)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w: %w", hdr.Linkname, ErrInvalidLayer, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("hard link to %q: only regular files may be linked: %w", hdr.Linkname, ErrUnsafePath)
	}
	if _, err := u.clear(name, false); err != nil {
		return err
	}
	return u.root.Link(target, name)
}

func (u *unpacker) whiteout(hdr *tar.Header, name string) error {
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if base == whiteoutOpaque {
		return u.opaque(hdr, dir)
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == ".." {
		return u.entryError(hdr, fmt.Errorf("whiteout of the parent directory: %w", ErrUnsafePath))
	}
	if victim == "" || victim == "." {
		return u.entryError(hdr, fmt.Errorf("whiteout without a name: %w", ErrInvalidLayer))
	}
	victim = path.Join(dir, victim)
	if err := u.prepareParents(victim, false); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing to delete
	} else if err != nil {
		return u.entryError(hdr, err)
	}
	if err := u.root.RemoveAll(victim); err != nil {
		return u.entryError(hdr, err)
	}
	delete(u.inLayer, victim)
	return nil
}

// opaque hides what earlier layers put in dir: everything below dir is
// removed except what the current layer wrote (and the directories leading
// to it).
func (u *unpacker) opaque(hdr *tar.Header, dir string) error {
	if dir != "." {
		if err := u.prepareParents(path.Join(dir, "x"), false); errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return u.entryError(hdr, err)
		}
	}
	if err := u.prune(dir); err != nil {
		return u.entryError(hdr, err)
	}
	return nil
}

// prune removes the children of dir that the current layer did not write,
// recursing into directories it wrote or wrote into.
func (u *unpacker) prune(dir string) error {
	f, err := u.root.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	_ = f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		child := path.Join(dir, n)
		if !u.inLayer[child] && !u.inLayerA[child] {
			if err := u.root.RemoveAll(child); err != nil {
				return err
			}
			continue
		}
		if fi, err := u.root.Lstat(child); err == nil && fi.IsDir() {
			if err := u.prune(child); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolvesInside follows target from directory dir (relative to the root)
// through the tree as it is now, symbolic links included, and fails with
// ErrUnsafePath if it leaves the root at any step. Names that do not exist
// (yet) are taken literally.
func (u *unpacker) resolvesInside(dir, target string) error {
	var stack []string
	if dir != "." && dir != "" {
		stack = strings.Split(dir, "/")
	}
	pending := strings.Split(target, "/")
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return fmt.Errorf("resolves outside the directory: %w", ErrUnsafePath)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := path.Join(append(stack, c)...)
		fi, err := u.root.Lstat(cur)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			hops++
			if hops > maxSymlinkHops {
				return fmt.Errorf("too many levels of symbolic links: %w", ErrUnsafePath)
			}
			next, err := u.root.Readlink(cur)
			if err != nil {
				return err
			}
			if strings.HasPrefix(next, "/") {
				return fmt.Errorf("resolves through %q to absolute path %q: %w", cur, next, ErrUnsafePath)
			}
			pending = append(strings.Split(next, "/"), pending...)
			continue
		}
		stack = append(stack, c)
	}
	return nil
}

// checkSymlinks checks every symbolic link in the result again: a link that
// was safe when written can be redirected by a later entry (a chain).
func (u *unpacker) checkSymlinks() error {
	return fs.WalkDir(u.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := u.root.Readlink(name)
		if err != nil {
			return err
		}
		layer := u.symlinks[name]
		if layer == "" {
			layer = "unknown"
		}
		if strings.HasPrefix(target, "/") {
			return fmt.Errorf("layer %s: entry %q: symbolic link to absolute path %q: %w", layer, name, target, ErrUnsafePath)
		}
		if err := u.resolvesInside(path.Dir(name), target); err != nil {
			return fmt.Errorf("layer %s: entry %q: symbolic link to %q: %w", layer, name, target, err)
		}
		return nil
	})
}
