package ocilayout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Temporary files. Writers create ".NAME.tmp-<random>" next to NAME, hold an
// exclusive lock on it while they write (see lockFile), and rename it to
// NAME before they close it. A process killed mid-write leaves its temporary
// file behind, unlocked; the next write of the same target removes it.

// tempTarget returns NAME for a temporary file name ".NAME.tmp-<suffix>".
func tempTarget(name string) (string, bool) {
	if !strings.HasPrefix(name, ".") {
		return "", false
	}
	i := strings.LastIndex(name, ".tmp-")
	if i <= 1 || i+len(".tmp-") == len(name) {
		return "", false
	}
	return name[1:i], true
}

// lockNewTemp locks the temporary file f that was just created as name in
// root. It reports false when a cleaner removed the file before the lock
// was taken (the caller closes it and creates another).
func lockNewTemp(root *os.Root, name string, f *os.File) (bool, error) {
	if _, err := lockFile(f, true); err != nil {
		return false, err
	}
	held, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, now), nil
}

// removeStaleTemps removes, in the directory dir of root, the temporary
// files whose target is accepted by want and that no live writer holds
// locked. It is best effort: a directory or file it cannot read is left
// alone, since the write that follows does not depend on it.
func removeStaleTemps(root *os.Root, dir string, want func(target string) bool) {
	d, err := root.Open(dir)
	if err != nil {
		return
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil && len(entries) == 0 {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if target, ok := tempTarget(e.Name()); ok && want(target) {
			removeIfStale(root, path.Join(dir, e.Name()))
		}
	}
}

// removeIfStale removes the temporary file name of root when its lock can
// be taken, that is when no writer holds it.
func removeIfStale(root *os.Root, name string) {
	f, err := root.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return
	}
	defer f.Close() // after the removal: the lock keeps writers off meanwhile
	if ok, err := lockFile(f, false); err != nil || !ok {
		return
	}
	held, err := f.Stat()
	if err != nil || !held.Mode().IsRegular() {
		return
	}
	if now, err := root.Lstat(name); err == nil && os.SameFile(held, now) {
		root.Remove(name)
	}
}

// createLockedTemp creates a temporary file for name inside root (see
// createRootTemp) and holds its lock; the lock ends when the file is closed.
func createLockedTemp(root *os.Root, name string) (string, *os.File, error) {
	for range 10 {
		tmp, f, err := createRootTemp(root, name)
		if err != nil {
			return "", nil, err
		}
		ok, err := lockNewTemp(root, tmp, f)
		if ok {
			return tmp, f, nil
		}
		f.Close()
		if err != nil {
			root.Remove(tmp)
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("create temporary file for %s: removed by another writer ten times", name)
}
