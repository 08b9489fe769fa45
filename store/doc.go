// Package store is ferry's local content-addressable store: every blob ferry
// downloads lands here, verified, so a second run fetches nothing twice and an
// interrupted download continues at the byte where it stopped.
//
// It is built on containerd's content store (core/content interfaces and the
// plugins/content/local implementation). A [Store] satisfies oras-go's
// content.Storage; [Store.Cache] puts it in front of a remote repository as a
// caching, resumable source for oras.CopyGraph.
//
// Layout under the root directory (created 0700):
//
//	blobs/<alg>/<hex>          committed blobs, verified at commit, read-only;
//	                           the modification time records the last use
//	ingest/<hash>/             partial downloads (containerd): data, ref, total,
//	                           startedat, updatedat; resumed by digest
//	locks/<alg>-<hex>.lock     cross-process lock of one digest's ingest,
//	                           present only while someone holds it
//	tars/<alg>/<hex>           the digest of a tarball written before, by
//	                           the key of its content (ocilayout.TarKey), so
//	                           writing it again need not hash it
//
// Several goroutines and several processes may use one root at the same time:
// writes of one large blob (over 256 KiB) are serialised by a file lock, and a
// process that needs a blob another one is downloading waits for it and then
// reads it from disk. Smaller blobs are written without the lock: each writer
// renames (or links) a complete, verified copy of the same bytes into place.
// They are not synced to disk one by one; after a power loss, a process
// hashes a small blob's file before it first trusts it, and one that lost
// its bytes counts as absent and is fetched again (see [Store.Fetch]).
//
// The package never prints. containerd's local store may log through
// containerd/log (logrus) on its own, for instance a warning that fs-verity is
// not supported when a store is opened; a command line program that does not
// want this on its standard error silences that logger at start-up.
package store
