// Package lockfile reads, validates and writes the Carvel imgpkg lock files:
// ImagesLock (.imgpkg/images.yml), BundleLock (written by --lock-output) and
// ImageLocations (image-locations.yml inside a cache image).
//
// All three are YAML documents with apiVersion "imgpkg.carvel.dev/v1alpha1".
// Parsing is strict: unknown fields, a wrong apiVersion or kind, a second
// document and image references that are not digest references
// (REPO@sha256:<64 lowercase hex>) are errors. Every such error is a
// *FieldError that names the file and the field and matches ErrInvalid with
// errors.Is.
//
// Written files start with "---", list apiVersion and kind first, keep the
// order of the images list and write annotation keys sorted.
//
// The package is pure data: it imports no other ferry package and holds no
// package-level mutable state, so every function is safe for concurrent use.
// Values such as *ImagesLock are not synchronised; do not mutate one while
// another goroutine reads it.
package lockfile

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// APIVersion is the apiVersion of every imgpkg lock file.
const APIVersion = "imgpkg.carvel.dev/v1alpha1"

// Kinds of lock files, the value of the kind field.
const (
	// KindImagesLock is the kind of .imgpkg/images.yml.
	KindImagesLock = "ImagesLock"
	// KindBundleLock is the kind of the file written by --lock-output for a bundle.
	KindBundleLock = "BundleLock"
	// KindImageLocations is the kind of image-locations.yml inside a cache image.
	KindImageLocations = "ImageLocations"
)

// MaxFileSize is the largest lock file accepted, in bytes (16 MiB). Read*
// refuse larger files and Parse* refuse larger inputs.
const MaxFileSize = 16 << 20

// digestHint ends every message about an image reference that is not a
// digest reference.
const digestHint = "lock files need digest references (REPO@sha256:...)"

// ErrInvalid matches (errors.Is) every error reporting a lock file or an
// image reference that does not follow the format: bad YAML, unknown fields,
// a wrong apiVersion or kind, tag references, bad digests, oversized files.
// I/O errors (a missing file) do not match it.
var ErrInvalid = errors.New("invalid lock file")

// FieldError reports a problem in a lock file, or in a lock value being
// marshalled. File is the file name given to Parse* or the path given to
// Read* (empty when marshalling); Field is the path of the field in the
// document such as `images[2].image` (empty when the problem is the file as a
// whole, for example invalid YAML). Err holds the reason.
//
// A *FieldError always matches ErrInvalid with errors.Is.
type FieldError struct {
	File  string
	Field string
	Err   error
}

// Error returns `FILE: field "FIELD": REASON`, leaving out the parts that are empty.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(ErrInvalid.Error())
	}
	return b.String()
}

// Unwrap returns the reason.
func (e *FieldError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalid: every FieldError is a validation error.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// invalidError is a reason that matches ErrInvalid without adding
// "invalid lock file" to the message.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// ImageRef is one entry of an ImagesLock.
type ImageRef struct {
	// Image is a digest reference, REPO@sha256:<hex>.
	Image string
	// Annotations such as kbld.carvel.dev/id; nil when there are none.
	Annotations map[string]string
}

// ImagesLock is the content of .imgpkg/images.yml: the images a bundle
// refers to, in order. The zero value is a valid, empty lock.
type ImagesLock struct {
	Images []ImageRef
}

// BundleRef names a bundle in a BundleLock.
type BundleRef struct {
	// Image is a digest reference, REPO@sha256:<hex>.
	Image string
	// Tag is re-applied by `copy --lock`; empty when none.
	Tag string
}

// BundleLock is the file written by --lock-output when a bundle was copied or pushed.
type BundleLock struct {
	Bundle BundleRef
}

// ImageLocation is one entry of an ImageLocations file.
type ImageLocation struct {
	// Image is the original digest reference, REPO@sha256:<hex>.
	Image string
	// IsBundle is true when the image is a bundle.
	IsBundle bool
}

// ImageLocations is the content of image-locations.yml, stored in the cache
// image next to a relocated bundle. The zero value is valid and empty.
type ImageLocations struct {
	Images []ImageLocation
}

// Validate checks that every image is a digest reference. Errors are
// *FieldError values with an empty File.
func (l *ImagesLock) Validate() error {
	for i, img := range l.Images {
		if _, _, err := SplitDigestRef(img.Image); err != nil {
			return &FieldError{Field: fmt.Sprintf("images[%d].image", i), Err: err}
		}
	}
	return nil
}

// Validate checks that the bundle image is a digest reference and the tag,
// when set, is a valid tag. Errors are *FieldError values with an empty File.
func (l *BundleLock) Validate() error {
	if _, _, err := SplitDigestRef(l.Bundle.Image); err != nil {
		return &FieldError{Field: "bundle.image", Err: err}
	}
	if l.Bundle.Tag != "" && !validTag(l.Bundle.Tag) {
		return &FieldError{Field: "bundle.tag", Err: invalidf("%q is not a valid tag (up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)", l.Bundle.Tag)}
	}
	return nil
}

// Validate checks that every image is a digest reference. Errors are
// *FieldError values with an empty File.
func (l *ImageLocations) Validate() error {
	for i, img := range l.Images {
		if _, _, err := SplitDigestRef(img.Image); err != nil {
			return &FieldError{Field: fmt.Sprintf("images[%d].image", i), Err: err}
		}
	}
	return nil
}

// Relocate returns a copy of l in which every image is repo@<its digest>,
// with annotations and order kept. This is how `pull` rewrites images.yml
// when the bundle's repository hosts every image. repo is a repository name
// without tag or digest, such as "reg.io/team/bundle". l is not modified.
func (l *ImagesLock) Relocate(repo string) (*ImagesLock, error) {
	if err := checkRepository(repo); err != nil {
		return nil, err
	}
	out := &ImagesLock{}
	if len(l.Images) > 0 {
		out.Images = make([]ImageRef, len(l.Images))
	}
	for i, img := range l.Images {
		_, dgst, err := SplitDigestRef(img.Image)
		if err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("images[%d].image", i), Err: err}
		}
		out.Images[i] = ImageRef{Image: repo + "@" + dgst, Annotations: cloneAnnotations(img.Annotations)}
	}
	return out, nil
}

func cloneAnnotations(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// YAML shapes used only for writing; field order here is the order in the file.
type imagesLockYAML struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Images     []imageRefYAML `yaml:"images"`
}

type imageRefYAML struct {
	Image       string            `yaml:"image"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

type bundleLockYAML struct {
	APIVersion string        `yaml:"apiVersion"`
	Kind       string        `yaml:"kind"`
	Bundle     bundleRefYAML `yaml:"bundle"`
}

type bundleRefYAML struct {
	Image string `yaml:"image"`
	Tag   string `yaml:"tag,omitempty"`
}

type imageLocationsYAML struct {
	APIVersion string              `yaml:"apiVersion"`
	Kind       string              `yaml:"kind"`
	Images     []imageLocationYAML `yaml:"images"`
}

type imageLocationYAML struct {
	Image    string `yaml:"image"`
	IsBundle bool   `yaml:"isBundle"`
}

// Marshal validates l and returns it as YAML: "---", apiVersion, kind, then
// images in their order, annotation keys sorted, annotations left out when
// empty, two-space indentation.
func (l *ImagesLock) Marshal() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	doc := imagesLockYAML{APIVersion: APIVersion, Kind: KindImagesLock, Images: make([]imageRefYAML, len(l.Images))}
	for i, img := range l.Images {
		doc.Images[i] = imageRefYAML{Image: img.Image, Annotations: img.Annotations}
	}
	return encode(doc)
}

// Marshal validates l and returns it as YAML: "---", apiVersion, kind, then
// bundle with image and tag (tag left out when empty).
func (l *BundleLock) Marshal() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return encode(bundleLockYAML{
		APIVersion: APIVersion,
		Kind:       KindBundleLock,
		Bundle:     bundleRefYAML{Image: l.Bundle.Image, Tag: l.Bundle.Tag},
	})
}

// Marshal validates l and returns it as YAML: "---", apiVersion, kind, then
// images sorted by Image (l itself is not reordered), isBundle always written.
func (l *ImageLocations) Marshal() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	doc := imageLocationsYAML{APIVersion: APIVersion, Kind: KindImageLocations, Images: make([]imageLocationYAML, len(l.Images))}
	for i, img := range l.Images {
		doc.Images[i] = imageLocationYAML{Image: img.Image, IsBundle: img.IsBundle}
	}
	slices.SortStableFunc(doc.Images, func(a, b imageLocationYAML) int {
		if c := strings.Compare(a.Image, b.Image); c != 0 {
			return c
		}
		// Same image twice: false before true, so the output does not depend on input order.
		switch {
		case a.IsBundle == b.IsBundle:
			return 0
		case b.IsBundle:
			return -1
		default:
			return 1
		}
	})
	return encode(doc)
}

func encode(doc any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("---\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	enc.CompactSeqIndent()
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode lock file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode lock file: %w", err)
	}
	return buf.Bytes(), nil
}
