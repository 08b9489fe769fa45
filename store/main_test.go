package store

import (
	"io"
	"os"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestMain silences containerd's logger, which warns on every Open where
// the file system has no fs-verity (as the CLI will have to do too).
func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}
