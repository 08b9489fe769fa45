package registry

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"oras.land/oras-go/v2/errdef"
	orasregistry "oras.land/oras-go/v2/registry"
)

// dockerHub is the registry name ferry writes for Docker Hub references.
// oras-go sends the traffic for it to registry-1.docker.io
// (see [orasregistry.Reference.Host]).
const dockerHub = "docker.io"

// dockerHubAliases are the host names that all mean Docker Hub.
var dockerHubAliases = map[string]bool{
	"docker.io":            true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// ParseReference parses ref ("host[:port]/path[:tag|@digest]") the way the
// Docker CLI and imgpkg read it, and validates it with oras-go's rules:
//   - a reference without a registry host is a Docker Hub reference
//     ("nginx" is docker.io/library/nginx, "user/app" is docker.io/user/app);
//     the first path component is a host when it contains "." or ":", is
//     "localhost", or has upper-case letters;
//   - docker.io, index.docker.io and registry-1.docker.io all become
//     "docker.io" (oras-go sends Docker Hub traffic to registry-1.docker.io),
//     and a one-component Docker Hub path gets the "library/" prefix;
//   - the tag or digest is kept in Reference.Reference; with both
//     ("repo:tag@sha256:..."), the digest wins.
//
// Errors name ref and wrap errdef.ErrInvalidReference. ParseReference uses no
// Client state; it is a method so that callers hold one object.
func (c *Client) ParseReference(ref string) (orasregistry.Reference, error) {
	return ParseReference(ref)
}

// ParseReference is [Client.ParseReference] without a client.
func ParseReference(ref string) (orasregistry.Reference, error) {
	fail := func(format string, args ...any) (orasregistry.Reference, error) {
		return orasregistry.Reference{}, fmt.Errorf("reference %q: %w: %s", ref, errdef.ErrInvalidReference, fmt.Sprintf(format, args...))
	}
	if ref == "" {
		return fail("empty reference")
	}
	if strings.TrimSpace(ref) != ref {
		return fail("leading or trailing white space")
	}
	if i := strings.Index(ref, "://"); i >= 0 {
		return fail("a reference has no scheme; drop %q", ref[:i+3])
	}

	if strings.HasSuffix(ref, ":") || strings.HasSuffix(ref, "@") {
		return fail("empty tag or digest")
	}
	host, rest := splitHost(ref)
	if rest == "" {
		return fail("missing repository")
	}
	if dockerHubAliases[strings.ToLower(host)] {
		host = dockerHub
		// A Docker Hub repository with a single component lives in library/.
		name := rest
		if i := strings.IndexAny(name, ":@"); i >= 0 {
			name = name[:i]
		}
		if !strings.Contains(name, "/") {
			rest = "library/" + rest
		}
	}
	parsed, err := orasregistry.ParseReference(host + "/" + rest)
	if err != nil {
		// oras-go's message already says what is wrong (and wraps
		// errdef.ErrInvalidReference); add the reference as given.
		return orasregistry.Reference{}, fmt.Errorf("reference %q: %w", ref, err)
	}
	return parsed, nil
}

// splitHost splits ref into its registry host and the rest, following the
// Docker CLI: the first component is a host only when it is followed by "/"
// and contains "." or ":", is "localhost", or is not all lower case.
// Without a host, the host is Docker Hub.
func splitHost(ref string) (host, rest string) {
	first, after, found := strings.Cut(ref, "/")
	if !found {
		return dockerHub, ref
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
		return first, after
	}
	return dockerHub, ref
}

// IsLoopback reports whether host ("name", "name:port", "1.2.3.4:5",
// "[::1]:5") names the local machine: "localhost", an address in
// 127.0.0.0/8, or ::1. Only these hosts (and all hosts with
// Options.Insecure) may be reached over plain HTTP.
func IsLoopback(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	return addr.Unmap().IsLoopback()
}

// authHost maps a registry name to the host that receives its traffic (and
// its credentials): Docker Hub names become registry-1.docker.io.
func authHost(registry string) string {
	if dockerHubAliases[strings.ToLower(registry)] {
		return "registry-1.docker.io"
	}
	return registry
}
