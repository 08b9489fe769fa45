package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// kbldID is the annotation kbld writes on images.yml entries.
const kbldID = "kbld.carvel.dev/id"

// sampleImage is one image of the sample application.
type sampleImage struct {
	repo   string            // repository in the source registry
	tag    string            // tag it is pushed with
	kbldID string            // the image as the configuration names it
	files  map[string]string // content of its own layer
	cmd    []string

	desc   ocispec.Descriptor // set by push
	digest digest.Digest      // set by push
}

// baseFiles make a base layer both sample images share, as images built
// FROM one base do.
var baseFiles = map[string]string{
	"etc/os-release": "NAME=\"ferry demo base\"\nID=demo\nVERSION_ID=1\n",
	"bin/README":     "The base layer of the ferry demo images.\n",
}

// sampleImages returns the two images of the sample application, in the
// order of its images.yml.
func sampleImages() []*sampleImage {
	return []*sampleImage{
		{
			repo: "dkalinin/k8s-simple-app", tag: "v1", kbldID: "docker.io/dkalinin/k8s-simple-app",
			files: map[string]string{"app/main.go": "package main\n\nfunc main() { println(\"hello from simple-app\") }\n"},
			cmd:   []string{"/app/simple-app"},
		},
		{
			repo: "user1/simple-app-db", tag: "v1", kbldID: "docker.io/user1/simple-app-db",
			files: map[string]string{"db/schema.sql": "CREATE TABLE greetings (id INTEGER PRIMARY KEY, text TEXT);\n"},
			cmd:   []string{"/db/start"},
		},
	}
}

// push pushes the image (base layer, own layer, config, manifest) and tags
// it. The content is deterministic: the same digests every run.
func (img *sampleImage) push(ctx context.Context, repo *remote.Repository) error {
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, files := range []map[string]string{baseFiles, img.files} {
		blob, diffID, err := tarGz(files)
		if err != nil {
			return err
		}
		desc, err := pushBlob(ctx, repo, ocispec.MediaTypeImageLayerGzip, blob)
		if err != nil {
			return err
		}
		layers = append(layers, desc)
		diffIDs = append(diffIDs, diffID)
	}
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	config, err := json.Marshal(ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: img.cmd},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	if err != nil {
		return err
	}
	configDesc, err := pushBlob(ctx, repo, ocispec.MediaTypeImageConfig, config)
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    layers,
	})
	if err != nil {
		return err
	}
	img.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}
	if err := repo.PushReference(ctx, img.desc, bytes.NewReader(manifest), img.tag); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	img.digest = img.desc.Digest
	return nil
}

func pushBlob(ctx context.Context, repo *remote.Repository, mediaType string, blob []byte) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	if err := repo.Push(ctx, desc, bytes.NewReader(blob)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return ocispec.Descriptor{}, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return desc, nil
}

// tarGz makes a deterministic gzip tar of files and returns it with the
// digest of the tar (the layer's diff ID).
func tarGz(files map[string]string) ([]byte, digest.Digest, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := files[name]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest.FromBytes(tarBuf.Bytes()), nil
}

// appConfig is the bundle's configuration, a Kubernetes application naming
// its images as kbld would before resolving them.
const appConfig = `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: simple-app
spec:
  selector:
    matchLabels:
      simple-app: ""
  template:
    metadata:
      labels:
        simple-app: ""
    spec:
      containers:
      - name: simple-app
        image: docker.io/dkalinin/k8s-simple-app
      - name: simple-app-db
        image: docker.io/user1/simple-app-db
`

// writeBundleDir writes the bundle directory: config/config.yml and
// .imgpkg/images.yml locking each image by digest in the source registry.
func writeBundleDir(dir string, src *harness.Registry, images []*sampleImage) error {
	var lock bytes.Buffer
	lock.WriteString("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n")
	for _, img := range images {
		fmt.Fprintf(&lock, "- image: %s@%s\n  annotations:\n    %s: %s\n", src.Ref(img.repo), img.digest, kbldID, strconv.Quote(img.kbldID))
	}
	for path, content := range map[string][]byte{
		filepath.Join(dir, "config", "config.yml"):  []byte(appConfig),
		filepath.Join(dir, ".imgpkg", "images.yml"): lock.Bytes(),
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}
