//go:build !unix

package store

import "testing"

// reportCPU reports nothing here (no getrusage).
func reportCPU(b *testing.B) {}
