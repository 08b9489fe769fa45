package graph

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/ferry-oci/ferry/lockfile"
)

// ImageLocationsFile is the name of the file inside the ImageLocations cache
// image's layer.
const ImageLocationsFile = "image-locations.yml"

// BundleImageLocations lists the images of a followed bundle by their
// original reference (as in images.yml), with whether each is a bundle. It
// is the content of the bundle's ImageLocations cache image.
func BundleImageLocations(b *Node) *lockfile.ImageLocations {
	locs := &lockfile.ImageLocations{}
	if b.Lock == nil {
		return locs
	}
	for i, img := range b.Lock.Images {
		isBundle := false
		if i < len(b.Images) && b.Images[i] != nil {
			isBundle = b.Images[i].Bundle
		}
		locs.Images = append(locs.Images, lockfile.ImageLocation{Image: img.Image, IsBundle: isBundle})
	}
	return locs
}

// memBlob is a small blob built in memory (configs, manifests, the
// image-locations layer).
type memBlob struct {
	desc ocispec.Descriptor
	data []byte
}

func newMemBlob(mediaType string, data []byte) memBlob {
	return memBlob{desc: content.NewDescriptorFromBytes(mediaType, data), data: data}
}

// imageLocationsImage builds the ImageLocations cache image of locs: an OCI
// image with a config and one gzip tar layer holding image-locations.yml.
// The result is deterministic, so pushing it again sends nothing. It returns
// the manifest and the blobs (config, layer) with their content.
func imageLocationsImage(locs *lockfile.ImageLocations) (manifest memBlob, blobs []memBlob, err error) {
	yml, err := locs.Marshal()
	if err != nil {
		return memBlob{}, nil, fmt.Errorf("image locations: %w", err)
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     ImageLocationsFile,
		Mode:     0o600,
		Size:     int64(len(yml)),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return memBlob{}, nil, err
	}
	if _, err := tw.Write(yml); err != nil {
		return memBlob{}, nil, err
	}
	if err := tw.Close(); err != nil {
		return memBlob{}, nil, err
	}
	var gzBuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gzBuf, gzip.BestSpeed)
	if err != nil {
		return memBlob{}, nil, err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return memBlob{}, nil, err
	}
	if err := zw.Close(); err != nil {
		return memBlob{}, nil, err
	}
	layer := newMemBlob(ocispec.MediaTypeImageLayerGzip, gzBuf.Bytes())

	cfg := ocispec.Image{
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarBuf.Bytes())}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return memBlob{}, nil, err
	}
	config := newMemBlob(ocispec.MediaTypeImageConfig, cfgJSON)

	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.desc,
		Layers:    []ocispec.Descriptor{layer.desc},
	}
	m.SchemaVersion = 2
	mJSON, err := json.Marshal(m)
	if err != nil {
		return memBlob{}, nil, err
	}
	return newMemBlob(ocispec.MediaTypeImageManifest, mJSON), []memBlob{config, layer}, nil
}

// pushImageLocations writes the ImageLocations cache image of every
// followed bundle, tagged sha256-<bundle hex>.image-locations.imgpkg (see
// writeImageLocations). CopyToRepo calls it once every other upload
// succeeded, so the tag never points at the locations of a bundle whose
// images are not all there.
func (c *copier) pushImageLocations(ctx context.Context, g *Graph) error {
	bundles := g.Bundles()
	backoff := defaultUploadBackoff
	if up := uploadsOf(c.blobs); up != nil {
		backoff = up.backoff
	}
	return forEach(ctx, len(bundles), func(ctx context.Context, i int) error {
		b := bundles[i]
		if err := c.limit.acquire(ctx); err != nil {
			return err
		}
		defer c.limit.release()
		m, blobs, err := imageLocationsImage(BundleImageLocations(b))
		if err != nil {
			return fmt.Errorf("bundle %s: %w", b.Ref, err)
		}
		if err := writeImageLocations(ctx, c.dst, m, blobs, ImageLocationsTag(b.Desc.Digest), backoff); err != nil {
			return fmt.Errorf("bundle %s: image locations: %w", b.Ref, err)
		}
		return nil
	})
}

// defaultUploadBackoff is the first wait before an upload is restarted.
const defaultUploadBackoff = 200 * time.Millisecond

// writeImageLocations makes tag point at the image m with its blobs (the
// config and the layer) in dst, in as few requests as it can. The image's
// bytes are a function of its content (imageLocationsImage), so a tag that
// already points at m means that all of it is there: one HEAD, nothing
// written (a second copy). Otherwise (a first copy, or a tag that points at
// another image, say one imgpkg wrote) the blobs dst lacks are pushed, all
// at once, and then the manifest: on a registry (registry.ReferencePusher)
// by its tag, one PUT that stores it and points the tag at it; elsewhere by
// digest, then tagged. Each request that fails for a transient reason (429,
// 5xx, a cut connection; see transientPushError) is repeated up to
// uploadRetries times, waiting backoff, then twice as long each time.
func writeImageLocations(ctx context.Context, dst oras.Target, m memBlob, blobs []memBlob, tag string, backoff time.Duration) error {
	if cur, err := dst.Resolve(ctx, tag); err == nil && cur.Digest == m.desc.Digest {
		return nil
	}
	// Any other answer (missing, elsewhere, an error): write it all.
	err := forEach(ctx, len(blobs), func(ctx context.Context, i int) error {
		return retryTransient(ctx, backoff, func() error {
			return pushBytesIfMissing(ctx, dst, blobs[i].desc, blobs[i].data)
		})
	})
	if err != nil {
		return err
	}
	if rp, ok := dst.(registry.ReferencePusher); ok {
		return retryTransient(ctx, backoff, func() error {
			if err := rp.PushReference(ctx, m.desc, bytes.NewReader(m.data), tag); err != nil {
				return fmt.Errorf("push %s as %s: %w", m.desc.Digest, tag, err)
			}
			return nil
		})
	}
	if err := retryTransient(ctx, backoff, func() error {
		return pushBytesIfMissing(ctx, dst, m.desc, m.data)
	}); err != nil {
		return err
	}
	return retryTransient(ctx, backoff, func() error { return putTag(ctx, dst, m.desc, nil, tag) })
}

// retryTransient calls fn, and again while it fails for a transient reason
// (transientPushError), up to uploadRetries more times, waiting backoff
// before the first repeat and twice as long before each next one. fn must
// be safe to repeat (it sends bytes in hand).
func retryTransient(ctx context.Context, backoff time.Duration, fn func() error) error {
	err := fn()
	wait := backoff
	for attempt := 0; attempt < uploadRetries && err != nil && transientPushError(err) && ctx.Err() == nil; attempt++ {
		if werr := sleep(ctx, wait); werr != nil {
			return werr
		}
		wait *= 2
		err = fn()
	}
	return err
}

// pushBytesIfMissing pushes small in-memory content (a manifest, a config)
// described by desc unless dst has it already.
func pushBytesIfMissing(ctx context.Context, dst oras.Target, desc ocispec.Descriptor, data []byte) error {
	exists, err := dst.Exists(ctx, desc)
	if err != nil {
		return fmt.Errorf("%s: %w", desc.Digest, err)
	}
	if exists {
		return nil
	}
	if err := dst.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("push %s: %w", desc.Digest, err)
	}
	return nil
}
