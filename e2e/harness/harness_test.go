package harness_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/e2e/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func decode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

func TestFixturesRoundTrip(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	b := reg.Builder(1)
	repoRef := reg.Ref("fixtures/app")
	repo := reg.Repository(t, "fixtures/app")

	base := bytes.Repeat([]byte("shared base\n"), 100)
	oci := b.Image(ctx, t, repoRef, harness.ImageSpec{Layers: []int{1000, 3000}, SharedBase: base, Tag: "oci"})
	docker := b.Image(ctx, t, repoRef, harness.ImageSpec{Layers: []int{500}, SharedBase: base, Docker: true, Tag: "docker"})
	foreign := b.Image(ctx, t, repoRef, harness.ImageSpec{Docker: true, NonDistributable: true, Tag: "foreign"})
	foreignOCI := b.Image(ctx, t, repoRef, harness.ImageSpec{NonDistributable: true, ForeignBlobMissing: true})
	index := b.Index(ctx, t, repoRef, harness.IndexSpec{Tag: "index"})
	list := b.ManifestList(ctx, t, repoRef, harness.IndexSpec{Layers: []int{10}})
	sig := b.SignatureTag(ctx, t, repoRef, oci.Digest)
	images := []string{repoRef + "@" + oci.Digest.String(), repoRef + "@" + index.Digest.String()}
	inner := b.Bundle(ctx, t, reg.Ref("fixtures/inner"), harness.BundleSpec{Images: images})
	outer := b.Bundle(ctx, t, reg.Ref("fixtures/outer"), harness.BundleSpec{
		Images:      []string{reg.Ref("fixtures/inner") + "@" + inner.Digest.String()},
		Annotations: map[string]map[string]string{reg.Ref("fixtures/inner") + "@" + inner.Digest.String(): {"kbld.carvel.dev/id": "inner", "a": "b"}},
		Tag:         "v1",
	})

	for _, tc := range []struct {
		ref       string
		want      ocispec.Descriptor
		mediaType string
	}{
		{"oci", oci, ocispec.MediaTypeImageManifest},
		{"docker", docker, harness.MediaTypeDockerManifest},
		{"foreign", foreign, harness.MediaTypeDockerManifest},
		{foreignOCI.Digest.String(), foreignOCI, ocispec.MediaTypeImageManifest},
		{"index", index, ocispec.MediaTypeImageIndex},
		{list.Digest.String(), list, harness.MediaTypeDockerManifestList},
		{"sha256-" + oci.Digest.Encoded() + ".sig", sig, ocispec.MediaTypeImageManifest},
	} {
		got, raw := b.FetchManifest(ctx, t, repoRef, tc.ref)
		if got.Digest != tc.want.Digest || got.Size != tc.want.Size || tc.want.MediaType != tc.mediaType {
			t.Errorf("%s: resolved %s %s (%d), want %s %s (%d)", tc.ref, got.MediaType, got.Digest, got.Size, tc.mediaType, tc.want.Digest, tc.want.Size)
		}
		if m := decode[struct{ MediaType string }](t, raw); m.MediaType != tc.mediaType {
			t.Errorf("%s: mediaType %q in the manifest, want %q", tc.ref, m.MediaType, tc.mediaType)
		}
	}

	// The shared base layer is the same blob in both images; the random layers have the requested sizes.
	_, raw := b.FetchManifest(ctx, t, repoRef, "oci")
	ociManifest := decode[ocispec.Manifest](t, raw)
	_, raw = b.FetchManifest(ctx, t, repoRef, "docker")
	dockerManifest := decode[ocispec.Manifest](t, raw)
	if len(ociManifest.Layers) != 3 || len(dockerManifest.Layers) != 2 {
		t.Fatalf("layers: oci %d, docker %d; want 3 and 2", len(ociManifest.Layers), len(dockerManifest.Layers))
	}
	if ociManifest.Layers[0].Digest != dockerManifest.Layers[0].Digest {
		t.Errorf("shared base differs: %s vs %s", ociManifest.Layers[0].Digest, dockerManifest.Layers[0].Digest)
	}
	for i, size := range []int{1000, 3000} {
		files := harness.LayerFiles(t, harness.FetchAll(ctx, t, repo, ociManifest.Layers[i+1]))
		if len(files) != 1 {
			t.Fatalf("layer %d: %d files", i, len(files))
		}
		for name, content := range files {
			if len(content) != size {
				t.Errorf("layer %d: %s has %d bytes, want %d", i, name, len(content), size)
			}
		}
	}
	cfg := decode[ocispec.Image](t, harness.FetchAll(ctx, t, repo, ociManifest.Config))
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || len(cfg.RootFS.DiffIDs) != 3 {
		t.Errorf("config: %s/%s with %d diff IDs", cfg.OS, cfg.Architecture, len(cfg.RootFS.DiffIDs))
	}

	// Non-distributable layers: URLs set; the blob is in the registry unless asked otherwise.
	_, raw = b.FetchManifest(ctx, t, repoRef, "foreign")
	fl := decode[ocispec.Manifest](t, raw).Layers[0]
	if fl.MediaType != harness.MediaTypeDockerForeignLayer || len(fl.URLs) != 1 {
		t.Errorf("foreign layer: %s urls %v", fl.MediaType, fl.URLs)
	}
	if ok, err := repo.Exists(ctx, fl); err != nil || !ok {
		t.Errorf("foreign blob pushed: exists=%v err=%v", ok, err)
	}
	_, raw = b.FetchManifest(ctx, t, repoRef, foreignOCI.Digest.String())
	fl = decode[ocispec.Manifest](t, raw).Layers[0]
	if fl.MediaType != ocispec.MediaTypeImageLayerNonDistributableGzip { //nolint:staticcheck // the deprecated type is the point
		t.Errorf("OCI foreign layer: %s", fl.MediaType)
	}
	if ok, err := repo.Exists(ctx, fl); err != nil || ok {
		t.Errorf("foreign blob missing: exists=%v err=%v", ok, err)
	}

	// Index children carry their platforms.
	_, raw = b.FetchManifest(ctx, t, repoRef, "index")
	idx := decode[ocispec.Index](t, raw)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Platform.Architecture != "amd64" || idx.Manifests[1].Platform.Architecture != "arm64" {
		t.Errorf("index children: %+v", idx.Manifests)
	}

	// The bundle: label on the config, images.yml in the only layer.
	bundleRepo := reg.Repository(t, "fixtures/outer")
	got, raw := b.FetchManifest(ctx, t, reg.Ref("fixtures/outer"), "v1")
	if got.Digest != outer.Digest {
		t.Fatalf("bundle tag v1 -> %s, want %s", got.Digest, outer.Digest)
	}
	bm := decode[ocispec.Manifest](t, raw)
	if bm.MediaType != harness.MediaTypeDockerManifest || len(bm.Layers) != 1 {
		t.Fatalf("bundle manifest: %s with %d layers", bm.MediaType, len(bm.Layers))
	}
	bcfg := decode[ocispec.Image](t, harness.FetchAll(ctx, t, bundleRepo, bm.Config))
	if bcfg.Config.Labels[harness.BundleLabel] != "true" {
		t.Errorf("bundle labels: %v", bcfg.Config.Labels)
	}
	files := harness.LayerFiles(t, harness.FetchAll(ctx, t, bundleRepo, bm.Layers[0]))
	innerRef := reg.Ref("fixtures/inner") + "@" + inner.Digest.String()
	wantLock := "---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n" +
		"- image: \"" + innerRef + "\"\n  annotations:\n    \"a\": \"b\"\n    \"kbld.carvel.dev/id\": \"inner\"\n"
	if string(files[".imgpkg/images.yml"]) != wantLock {
		t.Errorf("images.yml:\n%s\nwant:\n%s", files[".imgpkg/images.yml"], wantLock)
	}
	if _, ok := files["config/config.yml"]; !ok {
		t.Errorf("bundle files: %v", files)
	}

	// Same seed, same content; another seed, other content.
	again := harness.StartRegistry(t, harness.RegistryOptions{})
	twin := again.Builder(1).Image(ctx, t, again.Ref("x"), harness.ImageSpec{Layers: []int{1000, 3000}, SharedBase: base})
	other := again.Builder(2).Image(ctx, t, again.Ref("x"), harness.ImageSpec{Layers: []int{1000, 3000}, SharedBase: base})
	if twin.Digest != oci.Digest || other.Digest == oci.Digest {
		t.Errorf("determinism: seed 1 gave %s and %s; seed 2 gave %s", oci.Digest, twin.Digest, other.Digest)
	}
}

func TestProxyCountsBytes(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	b := &harness.Builder{Client: reg.AnonymousClient(), PlainHTTP: true, Seed: 3}

	desc := b.Image(ctx, t, p.Ref("counted"), harness.ImageSpec{Layers: []int{4000, 20000}, Tag: "v1"})
	_, raw := b.FetchManifest(ctx, t, reg.Ref("counted"), desc.Digest.String())
	m := decode[ocispec.Manifest](t, raw)
	blobs := append([]ocispec.Descriptor{m.Config}, m.Layers...)
	var want int64
	for _, d := range blobs {
		want += d.Size
	}

	s := p.Stats()
	if s.BlobBytesUploaded != want {
		t.Errorf("uploaded %d blob bytes, want %d", s.BlobBytesUploaded, want)
	}
	// Each blob: POST to start the upload, PUT (through the rewritten Location) to finish it.
	if got := s.Count(http.MethodPost, harness.ClassUpload); got != len(blobs) {
		t.Errorf("POST uploads: %d, want %d", got, len(blobs))
	}
	if got := s.Count(http.MethodPut, harness.ClassUpload); got != len(blobs) {
		t.Errorf("PUT uploads: %d, want %d (Location not rewritten?)", got, len(blobs))
	}
	if got := s.Count(http.MethodPut, harness.ClassManifest); got < 1 {
		t.Errorf("PUT manifests: %d", got)
	}
	if s.BlobBytesServed != 0 {
		t.Errorf("served %d blob bytes during a push", s.BlobBytesServed)
	}
	// The PUT that ends each upload names the blob in its query.
	putDigests := map[string]bool{}
	for _, rec := range s.Log {
		if rec.Method == http.MethodPut && rec.Class == harness.ClassUpload {
			q, err := url.ParseQuery(rec.Query)
			if err != nil {
				t.Fatalf("query %q: %v", rec.Query, err)
			}
			putDigests[q.Get("digest")] = true
		}
	}
	for _, d := range blobs {
		if !putDigests[d.Digest.String()] {
			t.Errorf("no upload PUT with digest=%s in the log (queries recorded: %v)", d.Digest, putDigests)
		}
	}

	p.Reset()
	if s := p.Stats(); s.Count("", "") != 0 || len(s.Log) != 0 || s.BlobBytesUploaded != 0 {
		t.Fatalf("after Reset: %+v", s)
	}
	repo := b.Repository(t, p.Ref("counted"))
	for _, d := range blobs {
		harness.FetchAll(ctx, t, repo, d)
	}
	s = p.Stats()
	if s.BlobBytesServed != want {
		t.Errorf("served %d blob bytes, want %d", s.BlobBytesServed, want)
	}
	for _, d := range blobs {
		if got := s.BlobBytesServedByDigest[d.Digest]; got != d.Size {
			t.Errorf("blob %s: served %d bytes, want %d", d.Digest, got, d.Size)
		}
	}
	if got := s.Count(http.MethodGet, harness.ClassBlob); got != len(blobs) {
		t.Errorf("GET blobs: %d, want %d", got, len(blobs))
	}
	if got := s.Count("", ""); got != len(blobs) {
		t.Errorf("requests: %d, want %d: %+v", got, len(blobs), s.Requests)
	}
}

// waitLog waits up to 3 s until p has logged n requests (a record is
// appended when the proxy's handler returns) and returns its stats.
func waitLog(t *testing.T, p *harness.Proxy, n int) harness.Stats {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		s := p.Stats()
		if len(s.Log) >= n || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProxyFaults(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	p := harness.StartProxy(t, reg.Host)
	b := reg.Builder(4)
	desc := b.Image(ctx, t, reg.Ref("faulty"), harness.ImageSpec{Layers: []int{10000}, Tag: "v1"})
	_, raw := b.FetchManifest(ctx, t, reg.Ref("faulty"), "v1")
	layer := decode[ocispec.Manifest](t, raw).Layers[0]
	repo := (&harness.Builder{Client: reg.AnonymousClient(), PlainHTTP: true}).Repository(t, p.Ref("faulty"))

	t.Run("cut", func(t *testing.T) {
		p.Reset()
		p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.CutAfter(100)))
		defer p.SetFault(nil)
		rc, err := repo.Fetch(ctx, layer)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read error %v, want unexpected EOF", err)
		}
		if len(got) != 100 {
			t.Errorf("read %d bytes before the cut, want 100", len(got))
		}
		if s := p.Stats(); s.BlobBytesServed != 100 {
			t.Errorf("served %d bytes, want 100", s.BlobBytesServed)
		}
		// Only the first matching request is cut.
		harness.FetchAll(ctx, t, repo, layer)
		if s := p.Stats(); s.BlobBytesServed != 100+layer.Size {
			t.Errorf("served %d bytes, want %d", s.BlobBytesServed, 100+layer.Size)
		}
	})

	t.Run("throttle", func(t *testing.T) {
		p.Reset()
		p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.Throttle(20000)))
		defer p.SetFault(nil)
		start := time.Now()
		harness.FetchAll(ctx, t, repo, layer) // checks the digest
		// 10 KB at 20 KB/s: about half a second.
		if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
			t.Errorf("throttled fetch of %d bytes at 20000 B/s took %s", layer.Size, elapsed)
		}
		s := waitLog(t, p, 1)
		if s.BlobBytesServedByDigest[layer.Digest] != layer.Size {
			t.Errorf("served %d bytes, want %d", s.BlobBytesServedByDigest[layer.Digest], layer.Size)
		}
		if len(s.Log) != 1 || s.Log[0].Fault != harness.FaultThrottle || s.Log[0].Status != http.StatusOK {
			t.Errorf("log: %+v", s.Log)
		}

		// A client that goes away ends the throttled response at once
		// (about 12 s of body at 1000 B/s are left).
		p.Reset()
		p.SetFault(harness.FaultFirst(1, harness.IsBlobGet, harness.Throttle(1000)))
		rc, err := repo.Fetch(ctx, layer)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
			t.Fatalf("read: %v", err)
		}
		rc.Close()
		s = waitLog(t, p, 1)
		if len(s.Log) != 1 || s.Log[0].BodyBytes >= layer.Size/2 {
			t.Errorf("after the client closed a throttled response: log %+v", s.Log)
		}
	})

	t.Run("status", func(t *testing.T) {
		p.Reset()
		p.SetFault(harness.FaultFirst(1, func(r *http.Request) bool { return harness.ClassOf(r) == harness.ClassManifest },
			harness.RespondStatus(http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}})))
		defer p.SetFault(nil)
		_, err := repo.Resolve(ctx, "v1")
		var errResp *errcode.ErrorResponse
		if !errors.As(err, &errResp) || errResp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("resolve error %v, want status 503", err)
		}
		got, err := repo.Resolve(ctx, "v1")
		if err != nil || got.Digest != desc.Digest {
			t.Fatalf("second resolve: %v %v", got.Digest, err)
		}
		s := p.Stats()
		if len(s.Log) != 2 || s.Log[0].Fault != harness.FaultStatus || s.Log[0].Status != 503 || s.Log[1].Status != 200 {
			t.Errorf("log: %+v", s.Log)
		}
	})
}

func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		path string
		want harness.Class
	}{
		{"/v2/", harness.ClassOther},
		{"/v2/_catalog", harness.ClassOther},
		{"/v2/a/b/manifests/v1", harness.ClassManifest},
		{"/v2/a/manifests/sha256:abc", harness.ClassManifest},
		{"/v2/a/blobs/sha256:abc", harness.ClassBlob},
		{"/v2/a/blobs/uploads/", harness.ClassUpload},
		{"/v2/a/blobs/uploads/0f4c-uuid", harness.ClassUpload},
		{"/v2/blobs/manifests/latest", harness.ClassManifest},
		{"/v2/manifests/x/blobs/sha256:abc", harness.ClassBlob},
		{"/v2/a/tags/list", harness.ClassTags},
		{"/v2/a/referrers/sha256:abc", harness.ClassReferrers},
		{"/token", harness.ClassToken},
		{"/favicon.ico", harness.ClassOther},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if got := harness.ClassOf(r); got != tc.want {
			t.Errorf("ClassOf(%s) = %s, want %s", tc.path, got, tc.want)
		}
	}
}

func TestRegistryHtpasswd(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{Htpasswd: map[string]string{"alice": "s3cret", "bob": "hunter2"}})
	if u, pw := reg.User(); u != "alice" || pw != "s3cret" {
		t.Fatalf("User() = %q, %q", u, pw)
	}
	desc := reg.Builder(5).Image(ctx, t, reg.Ref("private"), harness.ImageSpec{Tag: "v1"})

	// The registry challenges anonymous requests (oras-go then gives up
	// before sending anything, for want of a credential).
	resp, err := reg.HTTPClient().Get("http://" + reg.Host + "/v2/private/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), `Basic realm="ferry-e2e"`) {
		t.Errorf("anonymous GET: %s, challenge %q", resp.Status, resp.Header.Get("Www-Authenticate"))
	}
	_, err = (&harness.Builder{Client: reg.AnonymousClient(), PlainHTTP: true}).Repository(t, reg.Ref("private")).Resolve(ctx, "v1")
	if !errors.Is(err, auth.ErrBasicCredentialNotFound) {
		t.Errorf("anonymous resolve: %v, want ErrBasicCredentialNotFound", err)
	}

	for _, tc := range []struct {
		name   string
		client func() *harness.Builder
		status int
	}{
		{"wrong password", func() *harness.Builder {
			c := reg.AnonymousClient()
			c.Credential = auth.StaticCredential(reg.Host, auth.Credential{Username: "bob", Password: "nope"})
			return &harness.Builder{Client: c, PlainHTTP: true}
		}, http.StatusUnauthorized},
		{"bob", func() *harness.Builder {
			c := reg.AnonymousClient()
			c.Credential = auth.StaticCredential(reg.Host, auth.Credential{Username: "bob", Password: "hunter2"})
			return &harness.Builder{Client: c, PlainHTTP: true}
		}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.client().Repository(t, reg.Ref("private")).Resolve(ctx, "v1")
			if tc.status == http.StatusOK {
				if err != nil || got.Digest != desc.Digest {
					t.Fatalf("resolve: %s %v, want %s", got.Digest, err, desc.Digest)
				}
				return
			}
			var errResp *errcode.ErrorResponse
			if !errors.As(err, &errResp) || errResp.StatusCode != tc.status {
				t.Fatalf("resolve error %v, want status %d", err, tc.status)
			}
		})
	}
}

func TestRegistryTLS(t *testing.T) {
	ctx := t.Context()
	reg := harness.StartRegistry(t, harness.RegistryOptions{TLS: true})
	if reg.Scheme() != "https" || reg.PlainHTTP() {
		t.Fatalf("scheme %s", reg.Scheme())
	}
	pemBytes, err := os.ReadFile(reg.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatalf("CA file %s holds no PEM block", reg.CAPath)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("CA certificate: %v (IsCA %v)", err, ca != nil && ca.IsCA)
	}

	desc := reg.Builder(6).Image(ctx, t, reg.Ref("secure"), harness.ImageSpec{Tag: "v1"})
	got, _ := reg.Builder(6).FetchManifest(ctx, t, reg.Ref("secure"), "v1")
	if got.Digest != desc.Digest {
		t.Fatalf("resolved %s, want %s", got.Digest, desc.Digest)
	}

	// localhost is in the certificate too.
	resp, err := reg.HTTPClient().Get("https://localhost:" + strings.Split(reg.Host, ":")[1] + "/v2/")
	if err != nil {
		t.Fatalf("GET via localhost: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/: %s", resp.Status)
	}

	// Without the CA the certificate is refused.
	untrusting := &harness.Builder{Client: &http.Client{Transport: &http.Transport{Proxy: nil}}}
	_, err = untrusting.Repository(t, reg.Ref("secure")).Resolve(ctx, "v1")
	var unknownAuthority x509.UnknownAuthorityError
	if !errors.As(err, &unknownAuthority) {
		t.Fatalf("resolve without the CA: %v, want x509.UnknownAuthorityError", err)
	}
}

func TestNewRegistry(t *testing.T) {
	reg, err := harness.NewRegistry(harness.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(reg.RootDir)
	desc := reg.Builder(7).Image(t.Context(), t, reg.Ref("outside"), harness.ImageSpec{Tag: "v1"})
	if got, _ := reg.Builder(7).FetchManifest(t.Context(), t, reg.Ref("outside"), "v1"); got.Digest != desc.Digest {
		t.Fatalf("resolved %s, want %s", got.Digest, desc.Digest)
	}
	if _, err := os.Stat(reg.RootDir); err != nil {
		t.Fatalf("storage: %v", err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s after Close: %v, want it removed", dir, err)
	}
	if resp, err := reg.HTTPClient().Get("http://" + reg.Host + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("registry answered after Close: %s", resp.Status)
	}

	// A directory given in the options is the caller's: it stays.
	keep := t.TempDir()
	reg, err = harness.NewRegistry(harness.RegistryOptions{Dir: keep})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(reg.RootDir) != keep {
		t.Errorf("RootDir %s is not under %s", reg.RootDir, keep)
	}
	reg.Builder(7).Image(t.Context(), t, reg.Ref("kept"), harness.ImageSpec{})
	if err := reg.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(reg.RootDir); err != nil {
		t.Errorf("storage after Close with opts.Dir: %v, want it kept", err)
	}
}

func TestRegistryStop(t *testing.T) {
	reg := harness.StartRegistry(t, harness.RegistryOptions{})
	client := reg.HTTPClient()
	resp, err := client.Get("http://" + reg.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reg.Stop()
	reg.Stop() // idempotent
	if resp, err := client.Get("http://" + reg.Host + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("registry answered after Stop: %s", resp.Status)
	}
}

func TestRun(t *testing.T) {
	res := harness.RunOK(t, nil, "version")
	if !strings.HasPrefix(res.Stdout, "ferry version ") {
		t.Errorf("stdout %q", res.Stdout)
	}
	res = harness.Run(t, []string{"FERRY_EXTRA=1"}, "no-such-command")
	if res.ExitCode != 1 || !strings.HasPrefix(res.Stderr, "ferry: Error: ") {
		t.Errorf("unknown command: %s", res)
	}
}
