package graph

import (
	"bytes"
	"context"
	"fmt"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry"

	"github.com/ferry-oci/ferry/bundle"
)

// PushImage uploads an image built by bundle.Build to dst: the layer, the
// config and then the manifest, skipping any blob dst already has, and tags
// the manifest with tag when tag is not empty. On a registry
// (registry.ReferencePusher) a tagged manifest is pushed once, by its tag,
// which stores it and points the tag at it; otherwise it is pushed by
// digest unless present, then tagged. The layer streams from its temporary
// file; nothing is held whole in memory.
func PushImage(ctx context.Context, dst oras.Target, img *bundle.Image, tag string) error {
	exists, err := dst.Exists(ctx, img.LayerDesc)
	if err != nil {
		return fmt.Errorf("checking layer %s: %w", img.LayerDesc.Digest, err)
	}
	if !exists {
		layer, err := img.OpenLayer()
		if err != nil {
			return err
		}
		err = dst.Push(ctx, img.LayerDesc, layer)
		layer.Close()
		if err != nil {
			return fmt.Errorf("pushing layer %s: %w", img.LayerDesc.Digest, err)
		}
	}
	if err := pushBytesIfMissing(ctx, dst, img.ConfigDesc, img.Config); err != nil {
		return fmt.Errorf("pushing config %s: %w", img.ConfigDesc.Digest, err)
	}
	if rp, ok := dst.(registry.ReferencePusher); ok && tag != "" {
		if err := rp.PushReference(ctx, img.ManifestDesc, bytes.NewReader(img.Manifest), tag); err != nil {
			return fmt.Errorf("pushing manifest %s as %s: %w", img.ManifestDesc.Digest, tag, err)
		}
		return nil
	}
	if err := pushBytesIfMissing(ctx, dst, img.ManifestDesc, img.Manifest); err != nil {
		return fmt.Errorf("pushing manifest %s: %w", img.ManifestDesc.Digest, err)
	}
	if tag != "" {
		if err := dst.Tag(ctx, img.ManifestDesc, tag); err != nil {
			return fmt.Errorf("tagging %s as %s: %w", img.ManifestDesc.Digest, tag, err)
		}
	}
	return nil
}
