package main

import (
	"archive/tar"
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/image/font"
)

// colorCounts counts the pixels of img per colour.
func colorCounts(img image.Image) map[color.RGBA]int {
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]++
		}
	}
	return counts
}

func TestChartIsADecodablePNGOfTheRightSize(t *testing.T) {
	tests := []struct {
		name   string
		cases  []string
		panels int
	}{
		{"a and b: 3 panels in one row", []string{caseA, caseB}, 3},
		{"a only", []string{caseA}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := testResults()
			res.Config.Cases = tt.cases
			rep := buildReport(res)
			var buf bytes.Buffer
			if err := writeChart(&buf, rep, "test chart"); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("chart.png does not decode: %v", err)
			}
			w, h := chartSize(tt.panels)
			if got := img.Bounds().Size(); got != image.Pt(w, h) {
				t.Errorf("chart is %v, want %dx%d", got, w, h)
			}
			// ferry and crane have bars (far more pixels than their legend
			// squares); oras failed on a, so with a alone it only has its
			// legend square (16×16).
			legend := 16 * 16
			counts := colorCounts(img)
			if n := counts[toolColor(toolFerry)]; n < 20*legend {
				t.Errorf("%d ferry-coloured pixels, want bars", n)
			}
			if n := counts[toolColor(toolCrane)]; n < 20*legend {
				t.Errorf("%d crane-coloured pixels, want bars", n)
			}
			if n := counts[toolColor(toolOras)]; len(tt.cases) == 1 && n != legend {
				t.Errorf("%d oras-coloured pixels, want only its legend square (%d): it failed every run", n, legend)
			}
		})
	}
}

func TestChartTitle(t *testing.T) {
	p, err := newPainter(10, 10)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     reportConfig
		want    string
		wantNot string
	}{
		{"loopback", reportConfig{SizeBytes: 1 << 30, Rounds: 3}, "big image 1024.0 MiB, 3 round(s), loopback registries", "latency"},
		{"latency", reportConfig{SizeBytes: 16 << 20, Rounds: 1, LatencySeconds: 0.02}, "big image 16.0 MiB, 1 round(s), 20ms latency per request", "loopback"},
		{"a long latency", reportConfig{SizeBytes: 1536 << 20, Rounds: 10, LatencySeconds: 0.1505}, "150.5ms latency per request", "loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			title := chartTitle(tt.cfg)
			if !strings.Contains(title, tt.want) || strings.Contains(title, tt.wantNot) {
				t.Errorf("title %q: want %q in it and not %q", title, tt.want, tt.wantNot)
			}
			if w := font.MeasureString(p.title, title).Ceil(); 20+w > chartWidth-20 {
				t.Errorf("title %q is %d px wide: it does not fit the %d px chart", title, w, chartWidth)
			}
		})
	}
}

func TestChartSize(t *testing.T) {
	for _, tt := range []struct{ panels, w, h int }{
		{1, chartWidth, chartHeader + chartPanelH + chartFooter},
		{6, chartWidth, chartHeader + 2*chartPanelH + chartFooter},
		{7, chartWidth, chartHeader + 2*chartPanelH + chartFooter},
		{8, chartWidth, chartHeader + 2*chartPanelH + chartFooter},
	} {
		if w, h := chartSize(tt.panels); w != tt.w || h != tt.h {
			t.Errorf("chartSize(%d) = %dx%d, want %dx%d", tt.panels, w, h, tt.w, tt.h)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ top, want float64 }{
		{1, 0.2}, {5, 1}, {7, 2}, {33, 10}, {0.33, 0.1}, {0, 1},
	} {
		if got := niceStep(tt.top); got < tt.want*0.999 || got > tt.want*1.001 {
			t.Errorf("niceStep(%v) = %v, want %v", tt.top, got, tt.want)
		}
	}
}

func TestCheckArchive(t *testing.T) {
	im := imageFixture{repo: "big/image", desc: ocispec.Descriptor{Digest: digest.FromString("manifest")}}
	other := imageFixture{repo: "other", desc: ocispec.Descriptor{Digest: digest.FromString("other")}}
	dir := t.TempDir()
	writeTar := func(name string, entries map[string]string) string {
		t.Helper()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for n, body := range entries {
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	layout := writeTar("layout.tar", map[string]string{"oci-layout": "{}", "blobs/sha256/" + im.desc.Digest.Encoded(): "{}"})
	imgpkgTar := writeTar("imgpkg.tar", map[string]string{"manifest.json": `[{"Ref":"x@` + im.desc.Digest.String() + `"}]`, "sha256-00.tar.gz": "x"})
	layoutDir := filepath.Join(dir, "layout")
	if err := os.MkdirAll(filepath.Join(layoutDir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layoutDir, "blobs", "sha256", im.desc.Digest.Encoded()), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.tar")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		images  []imageFixture
		wantErr string
	}{
		{"OCI layout tar", layout, []imageFixture{im}, ""},
		{"imgpkg tar: digest in manifest.json", imgpkgTar, []imageFixture{im}, ""},
		{"layout directory", layoutDir, []imageFixture{im}, ""},
		{"missing image", layout, []imageFixture{im, other}, "names no " + other.desc.Digest.String()},
		{"empty file", empty, []imageFixture{im}, "is empty"},
		{"no such file", filepath.Join(dir, "nothing.tar"), []imageFixture{im}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkArchive(tt.path, tt.images...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkArchive: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkArchive error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}
