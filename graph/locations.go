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

// pushImageLocations pushes the ImageLocations cache image of every followed
// bundle and tags it sha256-<bundle hex>.image-locations.imgpkg.
func (c *copier) pushImageLocations(ctx context.Context, g *Graph) error {
	bundles := g.Bundles()
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
		for _, blob := range append(blobs, m) {
			if err := pushBytesIfMissing(ctx, c.dst, blob.desc, blob.data); err != nil {
				return fmt.Errorf("bundle %s: image locations: %w", b.Ref, err)
			}
		}
		if err := ensureTagBytes(ctx, c.dst, m.desc, m.data, ImageLocationsTag(b.Desc.Digest)); err != nil {
			return fmt.Errorf("bundle %s: image locations: %w", b.Ref, err)
		}
		return nil
	})
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
