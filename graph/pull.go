package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
)

// PullOptions tunes Pull. The zero value is imgpkg's default.
type PullOptions struct {
	// Recursive also extracts every nested bundle (at any depth) into
	// DIR/.imgpkg/bundles/sha256-<hex>/, with the same images.yml rewrite.
	Recursive bool
	// SkipBundleCheck lets a RootImage pull be a bundle, whose layer is
	// then extracted as raw contents with no images.yml rewrite (imgpkg's
	// --image-is-bundle-check=false). Default: a bundle given as an image is
	// an error.
	SkipBundleCheck bool
	// Concurrency bounds the registry requests in flight while checking
	// the bundle repository and discovering nested bundles. <= 0 means 5.
	Concurrency int
	// OnMessage, when not nil, receives progress lines in imgpkg's words
	// ("Pulling bundle '...'", "Extracting layer '...' (1/1)", the lock file
	// update message). Calls are serialized.
	OnMessage func(msg string)
}

// PullResult tells what Pull did.
type PullResult struct {
	// Digest is the digest of the pulled bundle or image.
	Digest digest.Digest
	// Repo is the repository it was pulled from.
	Repo string
	// Bundle is true when a bundle was pulled as a bundle.
	Bundle bool
	// LockUpdated is true when .imgpkg/images.yml was rewritten to point at
	// the bundle's repository.
	LockUpdated bool
	// Nested lists the nested bundles extracted (Recursive), in discovery
	// order, each once.
	Nested []NestedPull
}

// NestedPull is one nested bundle extracted by a recursive Pull.
type NestedPull struct {
	// Digest of the nested bundle.
	Digest digest.Digest
	// Repo is the repository it was read from.
	Repo string
	// Dir is where it was extracted.
	Dir string
	// LockUpdated is true when its images.yml was rewritten.
	LockUpdated bool
}

// Message texts of Pull, as imgpkg prints them.
const (
	msgLocating   = "Locating image lock file images..."
	msgHostedFmt  = "The bundle repo (%s) is hosting every image specified in the bundle's Images Lock file (.imgpkg/images.yml)"
	msgNotHosted  = "One or more images not found in bundle repo; skipping lock file update"
	nestedBundles = ".imgpkg/bundles"
)

// Pull extracts the bundle or image ref (REPO:TAG or REPO@DIGEST) into dir,
// which is replaced (see bundle.Unpack for the directories it refuses).
//
// kind RootBundle requires a bundle (ErrNotBundle, hint -i); RootImage
// requires a plain image (ErrIsBundle, hint -b) unless
// opts.SkipBundleCheck; RootAny takes either. An index is refused
// (ErrIsIndex); a bundle must have exactly one layer (ErrBundleLayers).
//
// For a bundle, .imgpkg/images.yml is then rewritten when the bundle's
// repository hosts every image: when the ImageLocations cache image tag
// exists there, or when every image answers at <bundle repo>@<digest> (not
// found, 401 and 403 count as absent). Each image becomes <bundle
// repo>@<digest>, annotations and order kept, and the file is replaced
// atomically. Otherwise it is left as it is. OnMessage says which.
//
// Pull is safe for concurrent use with distinct dirs if src is.
func Pull(ctx context.Context, src Source, ref string, kind RootKind, dir string, opts PullOptions) (*PullResult, error) {
	p := &puller{src: src, opts: opts, limit: newLimiter(opts.Concurrency)}
	repo, reference, _, err := splitRef(ref)
	if err != nil {
		return nil, err
	}
	t, err := src.Repository(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("%s: repository %s: %w", ref, repo, err)
	}
	desc, body, err := fetchManifest(ctx, t, reference)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if isIndex(desc.MediaType) {
		return nil, fmt.Errorf("%s (%s): %w: pull needs a bundle or an image", ref, desc.Digest, ErrIsIndex)
	}
	if !isImageManifest(desc.MediaType) {
		return nil, fmt.Errorf("%s (%s): %w %q", ref, desc.Digest, ErrUnsupportedMediaType, desc.MediaType)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%s (%s): manifest: %w", ref, desc.Digest, err)
	}
	isBundle, err := hasBundleLabel(ctx, t, m.Config)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): config %s: %w", ref, desc.Digest, m.Config.Digest, err)
	}
	switch {
	case kind == RootBundle && !isBundle:
		return nil, fmt.Errorf("%s (%s): %w: it is an image (hint: use -i for images)", ref, desc.Digest, ErrNotBundle)
	case kind == RootImage && isBundle && !opts.SkipBundleCheck:
		return nil, fmt.Errorf("%s (%s): %w (hint: use -b for bundles, or --image-is-bundle-check=false for its raw contents)", ref, desc.Digest, ErrIsBundle)
	}
	asBundle := isBundle && kind != RootImage
	res := &PullResult{Digest: desc.Digest, Repo: repo, Bundle: asBundle}
	location := repo + "@" + desc.Digest.String()
	if asBundle {
		p.say(fmt.Sprintf("Pulling bundle '%s'", location))
	} else {
		p.say(fmt.Sprintf("Pulling image '%s'", location))
	}
	if err := p.unpack(ctx, t, ref, desc, m.Layers, asBundle, dir); err != nil {
		return nil, err
	}
	if !asBundle {
		return res, nil
	}
	var nested []*Node
	if opts.Recursive {
		g, err := Discover(ctx, src, []RootSpec{{Ref: location, Kind: RootBundle}}, DiscoverOptions{Concurrency: opts.Concurrency})
		if err != nil {
			return nil, err
		}
		for _, b := range g.Bundles() {
			if b.Desc.Digest != desc.Digest {
				nested = append(nested, b)
			}
		}
	}
	for _, b := range nested {
		nt, err := src.Repository(ctx, b.Repo)
		if err != nil {
			return nil, fmt.Errorf("nested bundle %s: repository %s: %w", b.Ref, b.Repo, err)
		}
		p.say(fmt.Sprintf("Pulling nested bundle '%s'", b.Location()))
		ndir := filepath.Join(dir, filepath.FromSlash(nestedBundles), digestTag(b.Desc.Digest, ""))
		if err := p.unpack(ctx, nt, b.Ref, b.Desc, b.layers, true, ndir); err != nil {
			return nil, err
		}
		res.Nested = append(res.Nested, NestedPull{Digest: b.Desc.Digest, Repo: b.Repo, Dir: ndir})
	}
	p.say(msgLocating)
	if res.LockUpdated, err = p.rewriteLock(ctx, t, repo, desc.Digest, dir); err != nil {
		return nil, err
	}
	for i, b := range nested {
		nt, err := src.Repository(ctx, b.Repo)
		if err != nil {
			return nil, fmt.Errorf("nested bundle %s: repository %s: %w", b.Ref, b.Repo, err)
		}
		if res.Nested[i].LockUpdated, err = p.rewriteLock(ctx, nt, b.Repo, b.Desc.Digest, res.Nested[i].Dir); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// puller holds the state of one Pull call.
type puller struct {
	src   Source
	opts  PullOptions
	limit limiter
	msgMu sync.Mutex
}

func (p *puller) say(msg string) {
	if p.opts.OnMessage == nil {
		return
	}
	p.msgMu.Lock()
	defer p.msgMu.Unlock()
	p.opts.OnMessage(msg)
}

// unpack extracts layers into dir through bundle.Unpack.
func (p *puller) unpack(ctx context.Context, t oras.ReadOnlyTarget, ref string, desc ocispec.Descriptor, layers []ocispec.Descriptor, asBundle bool, dir string) error {
	if asBundle && len(layers) != 1 {
		return fmt.Errorf("bundle %s (%s) has %d layers: %w", ref, desc.Digest, len(layers), ErrBundleLayers)
	}
	bl := make([]bundle.Layer, len(layers))
	for i, l := range layers {
		bl[i] = bundle.Layer{
			MediaType: l.MediaType,
			Digest:    l.Digest,
			Open: func(ctx context.Context) (io.ReadCloser, error) {
				p.say(fmt.Sprintf("Extracting layer '%s' (%d/%d)", l.Digest, i+1, len(layers)))
				return t.Fetch(ctx, l)
			},
		}
	}
	if err := bundle.Unpack(ctx, dir, bl); err != nil {
		return fmt.Errorf("%s (%s): %w", ref, desc.Digest, err)
	}
	return nil
}

// errAbsent stops the per-image check at the first image missing.
var errAbsent = errors.New("absent")

// rewriteLock applies the images.yml rewrite rule to the bundle extracted in
// dir, read from repo (target t).
func (p *puller) rewriteLock(ctx context.Context, t oras.ReadOnlyTarget, repo string, bundleDigest digest.Digest, dir string) (bool, error) {
	path := filepath.Join(dir, filepath.FromSlash(bundle.ImagesLockPath))
	lock, err := lockfile.ReadImagesLock(path)
	if err != nil {
		return false, err
	}
	hosted, err := p.hostsEveryImage(ctx, t, bundleDigest, lock)
	if err != nil {
		return false, fmt.Errorf("bundle %s@%s: %w", repo, bundleDigest, err)
	}
	if !hosted {
		p.say(msgNotHosted)
		return false, nil
	}
	relocated, err := lock.Relocate(repo)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	data, err := relocated.Marshal()
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if err := lockfile.WriteFile(path, data); err != nil {
		return false, err
	}
	p.say(fmt.Sprintf(msgHostedFmt, repo))
	return true, nil
}

// hostsEveryImage reports whether the bundle repository t hosts every image
// of lock: the ImageLocations cache image is there, or every digest resolves.
func (p *puller) hostsEveryImage(ctx context.Context, t oras.ReadOnlyTarget, bundleDigest digest.Digest, lock *lockfile.ImagesLock) (bool, error) {
	if _, err := t.Resolve(ctx, ImageLocationsTag(bundleDigest)); err == nil {
		return true, nil
	} else if !isAbsent(err) {
		return false, err
	}
	err := forEach(ctx, len(lock.Images), func(ctx context.Context, i int) error {
		_, dgst, err := lockfile.SplitDigestRef(lock.Images[i].Image)
		if err != nil {
			return err
		}
		if err := p.limit.acquire(ctx); err != nil {
			return err
		}
		defer p.limit.release()
		desc, err := t.Resolve(ctx, dgst)
		switch {
		case err == nil && desc.Digest.String() != dgst:
			return fmt.Errorf("%s resolved to %s: %w", dgst, desc.Digest, ErrDigestMismatch)
		case err == nil:
			return nil
		case isAbsent(err):
			return errAbsent
		default:
			return fmt.Errorf("image %s: %w", lock.Images[i].Image, err)
		}
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errAbsent):
		return false, nil
	default:
		return false, err
	}
}
