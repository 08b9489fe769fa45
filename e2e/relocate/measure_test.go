package relocate_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestMeasureCopy100 measures copying a bundle of 100 small images (each in
// its own repository, all sharing one base layer) between two registries,
// through a counting proxy on each side: wall time and HTTP requests by
// class, for a first copy, a second copy of the same bundle (nothing to
// send), and a first copy with --concurrency 16. It only runs with
// FERRY_E2E_MEASURE=1; the figures go to the test log (go test -v).
func TestMeasureCopy100(t *testing.T) {
	if os.Getenv("FERRY_E2E_MEASURE") != "1" {
		t.Skip("measurement; run with FERRY_E2E_MEASURE=1 go test -v -run TestMeasureCopy100 ./relocate/")
	}
	const images = 100
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	srcProxy := harness.StartProxy(t, src.Host)

	start := time.Now()
	b := src.Builder(100)
	base := bytes.Repeat([]byte("shared base layer of the measured images\n"), 100)
	refs := make([]string, images)
	for i := range images {
		repo := fmt.Sprintf("measure/app-%03d", i)
		d := b.Image(ctx, t, src.Ref(repo), harness.ImageSpec{Layers: []int{512}, SharedBase: base}).Digest
		refs[i] = at(srcProxy.Ref(repo), d)
	}
	bundle := b.Bundle(ctx, t, src.Ref("measure/bundle"), harness.BundleSpec{Images: refs, Tag: "v1"})
	t.Logf("fixtures: %d images + bundle pushed in %s", images, time.Since(start).Round(time.Millisecond))

	run := func(name string, dstProxy *harness.Proxy, repo string, extra ...string) {
		t.Helper()
		srcProxy.Reset()
		dstProxy.Reset()
		args := append([]string{"copy", "-b", srcProxy.Ref("measure/bundle") + ":v1", "--to-repo", dstProxy.Ref(repo)}, extra...)
		start := time.Now()
		res := harness.RunOK(t, nil, args...)
		elapsed := time.Since(start)
		wantLine(t, res, fmt.Sprintf("copy | imported %d images", images+1))
		s, d := srcProxy.Stats(), dstProxy.Stats()
		t.Logf("MEASURE %s: %s wall; %d requests in all", name, elapsed.Round(time.Millisecond), s.Count("", "")+d.Count("", ""))
		t.Logf("MEASURE %s: source      %s", name, requestSummary(s))
		t.Logf("MEASURE %s: destination %s", name, requestSummary(d))
	}

	dst := harness.StartRegistry(t, harness.RegistryOptions{})
	dstProxy := harness.StartProxy(t, dst.Host)
	run("first copy (concurrency 5)", dstProxy, "apps/measure")
	if got := resolve(ctx, t, anonymousRepo(t, dst.Ref("apps/measure")), "v1"); got != bundle.Digest {
		t.Fatalf("v1 -> %s, want %s", got, bundle.Digest)
	}
	run("second copy, nothing to send", dstProxy, "apps/measure")
	if s := dstProxy.Stats(); s.BlobBytesUploaded != 0 || s.Count(http.MethodPut, "") != 0 {
		t.Errorf("second copy sent data: %s", requestSummary(s))
	}

	dst2 := harness.StartRegistry(t, harness.RegistryOptions{})
	dst2Proxy := harness.StartProxy(t, dst2.Host)
	run("first copy (concurrency 16)", dst2Proxy, "apps/measure", "--concurrency", "16")
}
