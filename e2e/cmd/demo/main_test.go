package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// tempDirOf returns the temporary directory the demo announced.
func tempDirOf(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`Temporary files: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output does not announce its temporary directory:\n%s", out)
	}
	return m[1]
}

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out, config{ferryBinary: os.Getenv("FERRY_DEMO_BINARY")}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Log(text)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^## Step 1: `),
		regexp.MustCompile(`(?m)^\$ ferry push -b 127\.0\.0\.1:\d+/user1/simple-app-bundle:v1\.0\.0 -f \S+/simple-app-bundle$`),
		regexp.MustCompile(`(?m)^\$ ferry copy -b 127\.0\.0\.1:\d+/user1/simple-app-bundle:v1\.0\.0 --to-repo 127\.0\.0\.1:\d+/apps/simple-app-bundle$`),
		regexp.MustCompile(`(?m)^copy \| exporting 3 images\.\.\.$`),
		regexp.MustCompile(`(?m)^copy \| imported 3 images$`),
		regexp.MustCompile(`(?m)^## Step 2, Option 2: With intermediate tarball$`),
		regexp.MustCompile(`(?m)^\$ ferry copy -b 127\.0\.0\.1:\d+/user1/simple-app-bundle:v1\.0\.0 --to-tar \S+/my-image\.tar$`),
		regexp.MustCompile(`(?m)^[0-9a-f]{64}  \S+/my-image\.tar$`),
		regexp.MustCompile(`(?m)^\$ ferry copy --tar \S+/my-image\.tar --to-repo 127\.0\.0\.1:\d+/airgapped/simple-app-bundle --store \S+$`),
		regexp.MustCompile(`(?m)^\$ ferry pull -b 127\.0\.0\.1:\d+/apps/simple-app-bundle:v1\.0\.0 -o \S+/bundle$`),
		regexp.MustCompile(`(?m)^The bundle repo \(127\.0\.0\.1:\d+/apps/simple-app-bundle\) is hosting every image`),
		regexp.MustCompile(`(?m)^- image: 127\.0\.0\.1:\d+/apps/simple-app-bundle@sha256:[0-9a-f]{64}\n  annotations:\n    kbld\.carvel\.dev/id: docker\.io/dkalinin/k8s-simple-app$`),
		regexp.MustCompile(`(?m)^Succeeded in .* \(4 steps run, 0 pending\)`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output does not match %s", want)
		}
	}
	if strings.Contains(text, "\n\n\n") {
		t.Errorf("output has two blank lines in a row")
	}
	if _, err := os.Stat(tempDirOf(t, text)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory left behind: %v", err)
	}
}

func TestDemoCanceledCleansUp(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	// Cancel as soon as the first step starts.
	w := &cancelOn{w: &out, marker: "## Step 1", cancel: cancel}
	err := run(ctx, w, config{ferryBinary: os.Getenv("FERRY_DEMO_BINARY")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("demo canceled: error %v, want context.Canceled\n%s", err, out.String())
	}
	if _, err := os.Stat(tempDirOf(t, out.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory left behind: %v", err)
	}
}

// cancelOn calls cancel once marker has been written.
type cancelOn struct {
	w      *bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if strings.Contains(c.w.String(), c.marker) {
		c.cancel()
	}
	return n, err
}
