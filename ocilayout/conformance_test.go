package ocilayout

import (
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The layout readers tell graph that the readers of their Fetch verify
// what they stream (graph declares this interface; it is not imported).
var (
	_ interface {
		Verifies(ocispec.Descriptor, io.Reader) bool
	} = (*Tar)(nil)
	_ interface {
		Verifies(ocispec.Descriptor, io.Reader) bool
	} = (*Dir)(nil)
	_ interface {
		Verifies(ocispec.Descriptor, io.Reader) bool
	} = (*ImgpkgTar)(nil)
)
