package lockfile

import (
	"regexp"
	"strings"
)

// Reference grammar of the distribution project, written out here so the
// package needs nothing beyond the standard library. Compiled regexps are
// immutable and safe for concurrent use.
var (
	repositoryRE = regexp.MustCompile(`^` +
		// optional registry host: domain name or [IPv6], optional port
		`(?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?` +
		// path components: lowercase alphanumerics joined by . _ __ or dashes
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// maxRepositoryLength is the longest repository name (host included) the
// distribution spec allows.
const maxRepositoryLength = 255

// SplitDigestRef splits a digest reference "REPO@sha256:<64 lowercase hex>"
// into the repository and the digest ("sha256:<hex>"). A tag between the
// repository and the digest ("REPO:TAG@sha256:...") is accepted and dropped.
//
// Errors match ErrInvalid and say what is wrong with ref: a tag reference
// without digest, a digest algorithm other than sha256, hex that is not 64
// lowercase hexadecimal characters, or an invalid repository name.
// SplitDigestRef is pure string work and safe for concurrent use.
func SplitDigestRef(ref string) (repo, digest string, err error) {
	if ref == "" {
		return "", "", invalidf("empty image reference; %s", digestHint)
	}
	at := strings.LastIndexByte(ref, '@')
	if at < 0 {
		if _, tag := splitTag(ref); tag != "" {
			return "", "", invalidf("%q is a tag reference; %s", ref, digestHint)
		}
		return "", "", invalidf("%q has no digest; %s", ref, digestHint)
	}
	name, dgst := ref[:at], ref[at+1:]
	alg, hex, ok := strings.Cut(dgst, ":")
	switch {
	case !ok:
		return "", "", invalidf("%q: digest %q is not ALGORITHM:HEX; %s", ref, dgst, digestHint)
	case alg != "sha256":
		return "", "", invalidf("%q: digest algorithm %q is not supported; %s", ref, alg, digestHint)
	case len(hex) != 64:
		return "", "", invalidf("%q: sha256 digest has %d hex characters, want 64", ref, len(hex))
	case !isLowerHex(hex):
		return "", "", invalidf("%q: sha256 digest must be lowercase hexadecimal (0-9, a-f)", ref)
	}
	repo, tag := splitTag(name)
	if strings.HasSuffix(name, ":") {
		return "", "", invalidf("%q: empty tag before the digest", ref)
	}
	if tag != "" && !validTag(tag) {
		return "", "", invalidf("%q: %q is not a valid tag", ref, tag)
	}
	if err := checkRepository(repo); err != nil {
		return "", "", invalidf("%q: %s", ref, err)
	}
	return repo, dgst, nil
}

// checkRepository reports whether repo is a valid repository name such as
// "reg.io:5000/team/app" (no tag, no digest).
func checkRepository(repo string) error {
	switch {
	case repo == "":
		return invalidf("empty repository name")
	case len(repo) > maxRepositoryLength:
		return invalidf("repository name is %d characters long, the limit is %d", len(repo), maxRepositoryLength)
	case !repositoryRE.MatchString(repo):
		return invalidf("%q is not a valid repository name (path components use lowercase letters, digits and . _ -)", repo)
	}
	return nil
}

// splitTag splits "repo:tag" at the last colon after the last slash, so a
// registry port ("host:5000/app") is not taken for a tag.
func splitTag(name string) (repo, tag string) {
	colon := strings.LastIndexByte(name, ':')
	if colon < 0 || colon < strings.LastIndexByte(name, '/') {
		return name, ""
	}
	return name[:colon], name[colon+1:]
}

func validTag(tag string) bool { return tagRE.MatchString(tag) }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
