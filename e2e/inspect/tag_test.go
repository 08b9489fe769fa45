package inspect_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestTagListAfterCopy lists the tags of a repository that `ferry copy
// --to-repo --cosign-signatures` filled: by default the user tag and the
// cosign tags only, as imgpkg hides every tag ending in .imgpkg; with
// --imgpkg-internal-tags everything the registry has; with --digests each
// tag with the digest the registry resolves it to.
func TestTagListAfterCopy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	f := pushFixture(ctx, t, src)
	dstRef := dst.Ref("relocated/app")
	harness.RunOK(t, nil, "copy", "-b", f.outerRepo+":v1", "--to-repo", dstRef, "--cosign-signatures")

	repo := dst.Repository(t, "relocated/app")
	all := harness.Tags(ctx, t, repo)
	// what copy made, so that the filter below is tested on real tags
	for _, internal := range []string{
		cosignTag(f.outer.Digest, "imgpkg"), cosignTag(f.a.Digest, "imgpkg"),
		cosignTag(f.outer.Digest, "image-locations.imgpkg"), cosignTag(f.inner.Digest, "image-locations.imgpkg"),
	} {
		if !slices.Contains(all, internal) {
			t.Fatalf("copy made no tag %s; tags: %q", internal, all)
		}
	}
	user := []string{cosignTag(f.a.Digest, "att"), cosignTag(f.a.Digest, "sig"), cosignTag(f.outer.Digest, "sig"), "v1"}
	slices.Sort(user)

	for _, args := range [][]string{
		{"tag", "list", "-i", dstRef},
		{"tag", "ls", "--image", dstRef + ":v1"}, // the alias; a tag in the reference is ignored
	} {
		res := harness.RunOK(t, nil, args...)
		if got := lines(res.Stdout); !slices.Equal(got, user) || res.Stderr != "" {
			t.Errorf("%s:\n got %q\nwant %q (stderr %q)", strings.Join(args, " "), got, user, res.Stderr)
		}
	}

	res := harness.RunOK(t, nil, "tag", "list", "-i", dstRef, "--imgpkg-internal-tags")
	if got := lines(res.Stdout); !slices.Equal(got, all) {
		t.Errorf("--imgpkg-internal-tags:\n got %q\nwant %q", got, all)
	}

	for _, c := range []struct {
		flags []string
		want  []string
	}{
		{[]string{"--digests"}, user},
		{[]string{"--digests", "--imgpkg-internal-tags", "--concurrency", "2"}, all},
	} {
		res := harness.RunOK(t, nil, append([]string{"tag", "list", "-i", dstRef}, c.flags...)...)
		got := lines(res.Stdout)
		if len(got) != len(c.want) {
			t.Fatalf("%v: %d lines, want %d:\n%s", c.flags, len(got), len(c.want), res.Stdout)
		}
		for i, line := range got {
			fields := strings.Fields(line)
			if len(fields) != 2 || fields[0] != c.want[i] {
				t.Errorf("%v line %d: %q, want tag %s and a digest", c.flags, i, line, c.want[i])
				continue
			}
			desc, err := repo.Resolve(ctx, fields[0])
			if err != nil {
				t.Fatal(err)
			}
			if fields[1] != desc.Digest.String() {
				t.Errorf("%v: %s -> %s, registry says %s", c.flags, fields[0], fields[1], desc.Digest)
			}
		}
		if i := slices.Index(c.want, "v1"); i < 0 || !strings.HasPrefix(got[i], "v1 ") || !strings.HasSuffix(got[i], " "+f.outer.Digest.String()) {
			t.Errorf("%v: v1 is not listed with the bundle's digest %s:\n%s", c.flags, f.outer.Digest, res.Stdout)
		}
	}
}

// TestTagResolve prints REPO@DIGEST for a tag, a digest and a bare
// repository (latest), and fails by name for what is not there.
func TestTagResolve(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	f := pushFixture(ctx, t, reg)
	latest := reg.Builder(5).Image(ctx, t, reg.Ref("apps/c"), harness.ImageSpec{Tag: "latest"})

	for _, c := range []struct {
		ref  string
		want string
	}{
		{f.outerRepo + ":v1", harness.DigestRef(f.outerRepo, f.outer.Digest)},
		{f.outerRepo + ":" + cosignTag(f.outer.Digest, "sig"), harness.DigestRef(f.outerRepo, f.outerSig.Digest)},
		{f.aRef, f.aRef},
		{f.outerRepo + ":v1@" + f.outer.Digest.String(), harness.DigestRef(f.outerRepo, f.outer.Digest)},
		{reg.Ref("apps/c"), harness.DigestRef(reg.Ref("apps/c"), latest.Digest)},
	} {
		res := harness.RunOK(t, nil, "tag", "resolve", "-i", c.ref)
		if res.Stdout != c.want+"\n" || res.Stderr != "" {
			t.Errorf("tag resolve -i %s: stdout %q, want %q (stderr %q)", c.ref, res.Stdout, c.want+"\n", res.Stderr)
		}
	}

	missing := harness.DigestRef(f.aRepo, digest.FromString("nothing"))
	wantFailure(t, harness.Run(t, nil, "tag", "resolve", "-i", f.outerRepo+":nope"), f.outerRepo+":nope", "not found")
	wantFailure(t, harness.Run(t, nil, "tag", "resolve", "-i", missing), missing, "not found")
	wantFailure(t, harness.Run(t, nil, "tag", "list", "-i", reg.Ref("no/such/repo")), "tags of "+reg.Ref("no/such/repo"))
}

// TestTagCredentials: a registry that requires credentials is named with the
// credential source tried; the registry flags give access.
func TestTagCredentials(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: map[string]string{"alice": "s3cret"}})
	img := reg.Builder(9).Image(ctx, t, reg.Ref("private/app"), harness.ImageSpec{Tag: "v1"})

	wantFailure(t, harness.Run(t, nil, "tag", "list", "-i", reg.Ref("private/app")), reg.Host, "private/app")
	wantFailure(t, harness.Run(t, nil, "tag", "resolve", "-i", reg.Ref("private/app:v1")), reg.Host, "private/app")

	creds := []string{"--registry-username", "alice", "--registry-password", "s3cret"}
	res := harness.RunOK(t, nil, append([]string{"tag", "list", "-i", reg.Ref("private/app"), "--digests"}, creds...)...)
	if got := strings.Fields(res.Stdout); !slices.Equal(got, []string{"v1", img.Digest.String()}) {
		t.Errorf("tag list with credentials: %q", res.Stdout)
	}
	res = harness.RunOK(t, []string{"IMGPKG_USERNAME=alice", "IMGPKG_PASSWORD=s3cret"}, "tag", "resolve", "-i", reg.Ref("private/app:v1"))
	if res.Stdout != harness.DigestRef(reg.Ref("private/app"), img.Digest)+"\n" {
		t.Errorf("tag resolve with credentials: %q", res.Stdout)
	}
}
