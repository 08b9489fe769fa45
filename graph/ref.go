package graph

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// splitRef splits REPO:TAG, REPO@DIGEST or REPO:TAG@DIGEST into the
// repository, the reference to resolve (tag or digest) and the tag written
// in ref (empty for a plain digest reference).
func splitRef(ref string) (repo, reference, tag string, err error) {
	name := ref
	var dgst string
	if at := strings.LastIndexByte(ref, '@'); at >= 0 {
		name, dgst = ref[:at], ref[at+1:]
		if _, err := digest.Parse(dgst); err != nil {
			return "", "", "", fmt.Errorf("%q: %w: %v", ref, ErrInvalidReference, err)
		}
	}
	repo = name
	if colon := strings.LastIndexByte(name, ':'); colon >= 0 && colon > strings.LastIndexByte(name, '/') {
		repo, tag = name[:colon], name[colon+1:]
		if tag == "" {
			return "", "", "", fmt.Errorf("%q: %w: empty tag", ref, ErrInvalidReference)
		}
	}
	if repo == "" || strings.HasSuffix(repo, "/") || strings.HasPrefix(repo, "/") {
		return "", "", "", fmt.Errorf("%q: %w: empty repository", ref, ErrInvalidReference)
	}
	switch {
	case dgst != "":
		reference = dgst
	case tag != "":
		reference = tag
	default:
		return "", "", "", fmt.Errorf("%q: %w: need REPO:TAG or REPO@DIGEST", ref, ErrInvalidReference)
	}
	return repo, reference, tag, nil
}

// hasHost reports whether the first path component of a repository name is
// a registry host (it has a dot or a port, or is localhost), following the
// Docker convention.
func hasHost(repo string) bool {
	first, _, ok := strings.Cut(repo, "/")
	if !ok {
		return false
	}
	return strings.ContainsAny(first, ".:[") || first == "localhost"
}

// repoPath returns the repository path without the registry host. A name
// without a host is a Docker Hub name, where single names live under
// "library/".
func repoPath(repo string) string {
	if hasHost(repo) {
		_, path, _ := strings.Cut(repo, "/")
		return path
	}
	if !strings.Contains(repo, "/") {
		return "library/" + repo
	}
	return repo
}

// digestTag returns "<alg>-<hex><suffix>", the tag schema imgpkg and cosign
// use for content attached to a digest (sha256-<hex>.imgpkg, .sig, ...).
func digestTag(d digest.Digest, suffix string) string {
	return d.Algorithm().String() + "-" + d.Encoded() + suffix
}

// ImgpkgTag returns the tag imgpkg gives every relocated image so that
// registries which collect untagged manifests keep it: sha256-<hex>.imgpkg.
func ImgpkgTag(d digest.Digest) string {
	return digestTag(d, ".imgpkg")
}

// ImageLocationsTag returns the tag of a bundle's ImageLocations cache image:
// sha256-<bundle hex>.image-locations.imgpkg.
func ImageLocationsTag(bundle digest.Digest) string {
	return digestTag(bundle, ".image-locations.imgpkg")
}

// maxRepoTagPrefix is how many characters of the repository path a
// repo-based tag keeps: 49 + "-sha256-" + 64 hex + ".imgpkg" is 128, the
// longest tag registries accept.
const maxRepoTagPrefix = 49

// RepoBasedTag returns the tag `copy --repo-based-tags` gives an image,
// built from its original reference ref (REPO@DIGEST or REPO:TAG, as written
// in images.yml or on the command line) and its digest d, by imgpkg's rule:
// drop the registry host, join the remaining path with "-", delete leading
// characters outside [A-Za-z0-9_] and any character outside [A-Za-z0-9._-],
// keep the last 49 characters (cleaned again), append -sha256-<hex>.imgpkg
// and drop one leading "-" if any. For example
// "index.docker.io/library/nginx@sha256:ab.." gives
// "library-nginx-sha256-ab...imgpkg". A name without a registry host is a
// Docker Hub name ("nginx" is "library/nginx").
func RepoBasedTag(ref string, d digest.Digest) string {
	repo := ref
	if at := strings.LastIndexByte(repo, '@'); at >= 0 {
		repo = repo[:at]
	}
	if colon := strings.LastIndexByte(repo, ':'); colon >= 0 && colon > strings.LastIndexByte(repo, '/') {
		repo = repo[:colon]
	}
	prefix := cleanTagPrefix(strings.ReplaceAll(repoPath(repo), "/", "-"))
	if len(prefix) > maxRepoTagPrefix {
		prefix = cleanTagPrefix(prefix[len(prefix)-maxRepoTagPrefix:])
	}
	tag := prefix + "-" + digestTag(d, ".imgpkg")
	return strings.TrimPrefix(tag, "-")
}

// cleanTagPrefix deletes leading characters outside [A-Za-z0-9_] and every
// character outside [A-Za-z0-9._-].
func cleanTagPrefix(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		word := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if b.Len() == 0 && !word {
			continue
		}
		if word || c == '.' || c == '-' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
