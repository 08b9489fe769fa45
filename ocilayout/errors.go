package ocilayout

import (
	"errors"
	"fmt"

	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// Sentinel errors. Every error this package returns about content wraps one
// of them together with the file, tar entry, digest or reference at fault;
// test with [errors.Is].
var (
	// ErrNotLayout means a file or directory is not an OCI image layout: not
	// a tar, no oci-layout file, an unsupported layout version, or no
	// index.json.
	ErrNotLayout = errors.New("not an OCI image layout")
	// ErrMalformedIndex means index.json (or one of ferry's annotations in
	// it) cannot be parsed or is not a valid image index.
	ErrMalformedIndex = errors.New("malformed index.json")
	// ErrMalformedManifest means a manifest, an index blob or imgpkg's
	// manifest.json cannot be parsed.
	ErrMalformedManifest = errors.New("malformed manifest")
	// ErrTruncated means the tar ends before an entry or its header does.
	ErrTruncated = errors.New("truncated tar")
	// ErrCorruptTar means a tar header cannot be parsed (bad checksum or
	// fields) after the first entry. A file whose very first header is
	// invalid is not a tar at all and gives ErrNotLayout (or
	// ErrUnknownFormat from Detect and OpenImgpkgTar).
	ErrCorruptTar = errors.New("corrupt tar header")
	// ErrDuplicateEntry means a tar holds two entries with the same name.
	ErrDuplicateEntry = errors.New("duplicate tar entry")
	// ErrUnsafeEntry means a tar entry has an absolute name, a ".." element,
	// or is a link, device, FIFO or sparse file.
	ErrUnsafeEntry = errors.New("unsafe tar entry")
	// ErrMissingBlob means a blob is not in the layout. Errors wrapping it
	// also match oras-go's errdef.ErrNotFound.
	ErrMissingBlob = errors.New("blob missing from layout")
	// ErrDigestMismatch means a blob's bytes do not hash to its digest.
	// Errors wrapping it also match oras-go's content.ErrMismatchedDigest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch means a blob's length differs from the size its
	// descriptor gives.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrUnknownBlob means a blob given to a TarBuilder's or DirBuilder's
	// WriteBlob is not among the blobs it was created for.
	ErrUnknownBlob = errors.New("blob not among the layout's blobs")
	// ErrBuilderClosed means a TarBuilder or DirBuilder was used after
	// Commit or Abort.
	ErrBuilderClosed = errors.New("layout builder already committed or aborted")
	// ErrInvalidDescriptor means a descriptor has an invalid or unsupported
	// digest or a negative size.
	ErrInvalidDescriptor = errors.New("invalid descriptor")
	// ErrRefNotFound means Resolve found no root with that name. Errors
	// wrapping it also match oras-go's errdef.ErrNotFound.
	ErrRefNotFound = errors.New("reference not found in layout")
	// ErrConflictingRef means one reference name points at two different
	// digests (two roots given the same tag, or an ambiguous Resolve).
	ErrConflictingRef = errors.New("reference names two different digests")
	// ErrInvalidRoot means a Root cannot be written into index.json (an
	// invalid tag).
	ErrInvalidRoot = errors.New("invalid root")
	// ErrUnknownFormat means Detect recognised neither an OCI image layout
	// nor imgpkg's tar format.
	ErrUnknownFormat = errors.New("unknown tarball format")
	// ErrDockerSave means the file is a "docker save" tarball. Errors
	// wrapping it also match ErrUnknownFormat.
	ErrDockerSave = fmt.Errorf("docker save tarball is not supported (use an OCI image layout or imgpkg tarball; convert with e.g. `skopeo copy docker-archive:FILE oci-archive:FILE.oci`): %w", ErrUnknownFormat)
)

// missingBlob builds the error for a blob that is not in the layout.
func missingBlob(d fmt.Stringer, hint string) error {
	return fmt.Errorf("blob %s%s: %w (%w)", d, hint, ErrMissingBlob, errdef.ErrNotFound)
}

// digestMismatch builds the error for bytes that do not hash to want.
func digestMismatch(want, got fmt.Stringer, entry string) error {
	return fmt.Errorf("blob %s (%s): %w: content hashes to %s (%w)", want, entry, ErrDigestMismatch, got, content.ErrMismatchedDigest)
}
