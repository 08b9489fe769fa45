// Package ocilayout writes and reads OCI image layouts (image-spec v1.1
// "image-layout"), as a directory and as a plain, uncompressed tar, and reads
// imgpkg's legacy tarball for migration.
//
// # Writing
//
// WriteTar and WriteDir write a layout from blobs that were verified when
// they were stored: a BlobOpener gives their bytes, which are copied file to
// file (copy_file_range) when it returns an *os.File, and only their length
// is checked. A tar is reproducible: the same blobs and index always give
// the same bytes. Its entries come in this order, with mtime 0, uid/gid 0,
// empty user and group names, mode 0644 for files and 0755 for directories:
//
//	oci-layout
//	index.json            (early, so a streaming reader learns the roots first)
//	blobs/
//	blobs/sha256/
//	blobs/sha256/<hex>    (each blob once, sorted by digest)
//
// Headers are USTAR; a blob of 8 GiB or more gets a PAX size record. The tar
// is written under a temporary name and renamed when complete; WriteTar
// returns its sha256.
//
// A TarBuilder (CreateTar) writes the same tar while its blobs arrive in any
// order, for example as downloads into a store complete: every entry's
// offset follows from the blob sizes, each blob is copied into its slot
// when it is ready, and the tar's hash follows the filled start of the
// file, so little is left to do once the last blob is in. WriteTar is
// CreateTar followed by Commit.
//
// # index.json
//
// NewIndex builds index.json from Roots, one entry per ref name. Each entry
// is the root's descriptor with these annotations, so that a later copy from
// the layout to a repository can re-apply tags, write lock output and report
// the layers left out without contacting any registry:
//
//	org.opencontainers.image.ref.name  the root's tag when one is known
//	                                   (-b/-i REF:TAG, a BundleLock, a
//	                                   signature's sha256-<hex>.sig), otherwise
//	                                   "sha256-<hex>.imgpkg"
//	io.containerd.image.name           the reference as written in images.yml
//	                                   or on the command line ("ctr images
//	                                   import" names the image after it)
//	dev.ferry-oci.original-ref         the same reference, for ferry
//	dev.ferry-oci.tag                  the tag to apply at the destination;
//	                                   absent when there is none
//	dev.ferry-oci.bundle               "true" on imgpkg bundles
//	dev.ferry-oci.root-bundle          "true" on the bundle asked for with -b
//	                                   or a BundleLock: lock output is then a
//	                                   BundleLock of it with its tag
//	dev.ferry-oci.requests             JSON array of {"position", "ref",
//	                                   "annotations"}: where the root was asked
//	                                   for (its place among -b, -i or the
//	                                   entries of a --lock ImagesLock, the
//	                                   reference as written and the ImagesLock
//	                                   entry's annotations). Without a root
//	                                   bundle, lock output is an ImagesLock of
//	                                   every request, ordered by position.
//	dev.ferry-oci.skipped-layers       JSON array of the descriptors of the
//	                                   non-distributable layers of the root's
//	                                   graph that the layout leaves out
//	dev.ferry-oci.left-out-children    JSON array of {"parent", "descriptor"}:
//	                                   the children of the root index (or of
//	                                   an index nested in it, the parent) that
//	                                   a platform filter left out; the index
//	                                   keeps its digest and still lists them
//
// Roots found only through a bundle's images.yml carry no requests; the
// ImageLocations of a bundle are rebuilt from its images.yml, which the
// layout holds. RootFromDescriptor and RootsOf read entries back, including
// entries written by other tools (no dev.ferry-oci.* annotations).
//
// # Reading
//
// OpenTar reads a layout tar in place: one pass over the headers records
// where each blob's bytes are, and Fetch reads them with random access,
// verifying size and digest as they stream. OpenDir reads a layout directory.
// Both are oras.ReadOnlyTarget, so oras.CopyGraph can copy from them. Bad
// input gives an error naming the entry or digest and wrapping one of the
// sentinel errors (ErrTruncated, ErrUnsafeEntry, ErrDuplicateEntry,
// ErrNotLayout, ErrMalformedIndex, ErrMissingBlob, ErrDigestMismatch,
// ErrSizeMismatch, ...). Verify re-hashes every blob and checks that every
// referenced blob is present.
//
// Detect tells a layout tar or directory from imgpkg's tarball, and refuses
// anything else by name (ErrDockerSave for a "docker save" tarball; Docker 25
// and later write an oci-layout entry too and are read as layouts).
// OpenImgpkgTar reads imgpkg's tarball (manifest.json with embedded manifests
// and configs, sha256-<hex>.tar.gz layer entries); ferry never writes it.
package ocilayout
