//go:build !unix

package ocilayout

import "os"

// lockFile cannot lock on this platform: it reports success when asked to
// wait (the writer goes on unlocked) and false otherwise, so stale
// temporary files are never removed here.
func lockFile(_ *os.File, wait bool) (bool, error) {
	return wait, nil
}

// commitTemp closes a synced temporary file and renames it into place; some
// platforms cannot rename an open file.
func commitTemp(f *os.File, rename func() error) (renamed bool, err error) {
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := rename(); err != nil {
		return false, err
	}
	return true, nil
}
