package store_test

import (
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-oci/ferry/ocilayout"
	"github.com/ferry-oci/ferry/store"
)

// The store serves what other packages declare they need (they do not
// import it): ocilayout's memory of tarball digests, and graph's test for
// sources that verify what they serve.
var (
	_ ocilayout.TarDigests = (*store.Store)(nil)
	_ interface {
		Verifies(ocispec.Descriptor, io.Reader) bool
	} = (*store.CachedTarget)(nil)
	_ interface {
		Verifies(ocispec.Descriptor, io.Reader) bool
	} = (*store.Store)(nil)
)
