package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"slices"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Chart geometry: one panel per case row, each with its own time scale (the
// cases differ by two orders of magnitude), in a grid of 3 (or, with more
// than 6 rows, 4) columns.
const (
	chartWidth   = 1500
	chartHeader  = 96
	chartFooter  = 16
	chartPanelH  = 400
	panelPadLeft = 58
)

// chartSize returns the width and height of the chart of panels rows.
func chartSize(panels int) (int, int) {
	cols := chartColumns(panels)
	rows := max(1, (panels+cols-1)/cols)
	return chartWidth, chartHeader + rows*chartPanelH + chartFooter
}

func chartColumns(panels int) int {
	if panels > 6 {
		return 4
	}
	return max(1, min(3, panels))
}

// Colours as 0xRRGGBB.
const (
	colBackground = 0xffffff
	colText       = 0x212121
	colMuted      = 0x6e6e6e
	colGrid       = 0xe2e2e2
	colAxis       = 0x787878
	colWhisker    = 0x282828
	colTarget     = 0xd62728
	colFailed     = 0xd62728
)

// rgb turns 0xRRGGBB into an opaque colour.
func rgb(c uint32) color.RGBA {
	return color.RGBA{R: uint8(c >> 16), G: uint8(c >> 8), B: uint8(c), A: 255}
}

// toolColor returns the bar colour of a tool, the same in every panel.
func toolColor(tool string) color.RGBA {
	switch tool {
	case toolFerry:
		return rgb(0xf27d14)
	case toolImgpkg:
		return rgb(0x1f77b4)
	case toolCrane:
		return rgb(0x2ca02c)
	case toolOras:
		return rgb(0x9467bd)
	case toolRegctl:
		return rgb(0x8c564b)
	case toolSkopeo:
		return rgb(0x17becf)
	}
	return rgb(0x7f7f7f)
}

// painter draws text and shapes on an image with the Go fonts.
type painter struct {
	img                *image.RGBA
	title, bold, plain font.Face
	small              font.Face
}

func newPainter(w, h int) (*painter, error) {
	regular, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, err
	}
	boldFont, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, err
	}
	face := func(f *opentype.Font, size float64) (font.Face, error) {
		return opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	}
	p := &painter{img: image.NewRGBA(image.Rect(0, 0, w, h))}
	if p.title, err = face(boldFont, 20); err != nil {
		return nil, err
	}
	if p.bold, err = face(boldFont, 15); err != nil {
		return nil, err
	}
	if p.plain, err = face(regular, 14); err != nil {
		return nil, err
	}
	if p.small, err = face(regular, 12); err != nil {
		return nil, err
	}
	draw.Draw(p.img, p.img.Bounds(), image.NewUniform(rgb(colBackground)), image.Point{}, draw.Src)
	return p, nil
}

type align int

const (
	alignLeft align = iota
	alignCenter
	alignRight
)

// text draws s with its baseline at y, aligned on x.
func (p *painter) text(face font.Face, s string, x, y int, c color.Color, a align) {
	w := font.MeasureString(face, s).Ceil()
	switch a {
	case alignCenter:
		x -= w / 2
	case alignRight:
		x -= w
	}
	d := font.Drawer{Dst: p.img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func (p *painter) rect(x0, y0, x1, y1 int, c color.Color) {
	draw.Draw(p.img, image.Rect(x0, y0, x1, y1), image.NewUniform(c), image.Point{}, draw.Src)
}

// niceStep returns a tick step of 1, 2 or 5 times a power of ten that
// divides [0, top] into about five parts.
func niceStep(top float64) float64 {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		return 1
	}
	raw := top / 5
	exp := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / exp; {
	case f <= 1:
		return exp
	case f <= 2:
		return 2 * exp
	case f <= 5:
		return 5 * exp
	default:
		return 10 * exp
	}
}

// renderChart draws one panel per row of the report: a bar per tool at its
// median wall time, a whisker from the fastest to the slowest run, the value
// above it, the tool (and ferry's ratio to the best peer) below, "failed"
// for a tool with no successful run, and ferry's target as a dashed line at
// target × the best peer's median.
func renderChart(rep report, title string) (*image.RGBA, error) {
	var rowNames []string
	for _, tr := range rep.rows {
		if !slices.Contains(rowNames, tr.Row) {
			rowNames = append(rowNames, tr.Row)
		}
	}
	w, h := chartSize(len(rowNames))
	p, err := newPainter(w, h)
	if err != nil {
		return nil, err
	}
	p.text(p.title, title, 20, 34, rgb(colText), alignLeft)
	// Legend: the tools in the report's order.
	var tools []string
	for _, tr := range rep.rows {
		if !slices.Contains(tools, tr.Tool) {
			tools = append(tools, tr.Tool)
		}
	}
	x := 20
	for _, t := range tools {
		p.rect(x, 58, x+16, 74, toolColor(t))
		p.text(p.plain, t, x+22, 71, rgb(colText), alignLeft)
		x += 30 + font.MeasureString(p.plain, t).Ceil() + 20
	}
	p.text(p.small, "dashed red line: ferry's target (ratio × the best peer's median)", x+10, 71, rgb(colTarget), alignLeft)

	cols := chartColumns(len(rowNames))
	panelW := (w - 20) / cols
	for i, row := range rowNames {
		px := 10 + (i%cols)*panelW
		py := chartHeader + (i/cols)*chartPanelH
		var group []tableRow
		for _, tr := range rep.rows {
			if tr.Row == row {
				group = append(group, tr)
			}
		}
		p.panel(px, py, panelW, chartPanelH, row, group, rep.bestPeer(row))
	}
	return p.img, nil
}

// panel draws one case row's bars in the rectangle (x0, y0, w, h).
func (p *painter) panel(x0, y0, w, h int, row string, group []tableRow, best float64) {
	p.text(p.bold, row+": "+rowTitle(row), x0+12, y0+26, rgb(colText), alignLeft)
	left, right := x0+panelPadLeft, x0+w-16
	top, bottom := y0+60, y0+h-54

	target := 0.0
	if t := ratioTarget(row); t > 0 && best > 0 {
		target = t * best
	}
	top1 := target
	for _, tr := range group {
		if tr.ok() {
			top1 = max(top1, tr.Wall.Max)
		}
	}
	step := niceStep(top1 * 1.1)
	yMax := math.Ceil(top1*1.1/step) * step
	if yMax <= 0 {
		yMax = step
	}
	yOf := func(v float64) int { return bottom - int(math.Round(v/yMax*float64(bottom-top))) }

	// Grid and axis labels (seconds).
	format := "%.0f"
	if step < 0.1 {
		format = "%.2f"
	} else if step < 1 {
		format = "%.1f"
	}
	for v := 0.0; v <= yMax+step/1000; v += step {
		y := yOf(v)
		p.rect(left, y, right, y+1, rgb(colGrid))
		p.text(p.small, fmt.Sprintf(format, v), left-6, y+4, rgb(colMuted), alignRight)
	}
	p.rect(left, top, left+1, bottom+1, rgb(colAxis))
	p.rect(left, bottom, right, bottom+1, rgb(colAxis))

	n := max(1, len(group))
	slot := (right - left) / n
	barW := max(8, slot*6/10)
	for i, tr := range group {
		cx := left + slot*i + slot/2
		label := tr.Tool
		p.text(p.plain, label, cx, bottom+20, rgb(colText), alignCenter)
		if !tr.ok() {
			p.text(p.bold, "failed", cx, bottom-12, rgb(colFailed), alignCenter)
			continue
		}
		p.rect(cx-barW/2, yOf(tr.Wall.Median), cx+barW/2, bottom, toolColor(tr.Tool))
		// Whisker: min to max.
		yLo, yHi := yOf(tr.Wall.Min), yOf(tr.Wall.Max)
		p.rect(cx-1, yHi, cx+1, yLo+1, rgb(colWhisker))
		p.rect(cx-6, yHi, cx+6, yHi+2, rgb(colWhisker))
		p.rect(cx-6, yLo-1, cx+6, yLo+1, rgb(colWhisker))
		p.text(p.small, fmt.Sprintf("%.2f", tr.Wall.Median), cx, min(yHi, yOf(tr.Wall.Median))-6, rgb(colText), alignCenter)
		switch {
		case tr.Tool == toolFerry && !math.IsNaN(tr.Ratio):
			p.text(p.small, fmt.Sprintf("%.2f× best", tr.Ratio), cx, bottom+37, rgb(colText), alignCenter)
		case tr.Best:
			p.text(p.small, "best peer", cx, bottom+37, rgb(colMuted), alignCenter)
		case tr.SameAs != "":
			p.text(p.small, "(no store)", cx, bottom+37, rgb(colMuted), alignCenter)
		}
	}
	if target > 0 {
		y := yOf(target)
		for x := left; x < right; x += 10 {
			p.rect(x, y, min(x+6, right), y+2, rgb(colTarget))
		}
		p.text(p.small, fmt.Sprintf("ferry target: %.2f s (%.1f× best peer)", target, ratioTarget(row)), right, y0+44, rgb(colTarget), alignRight)
	}
}

// writeChart renders the chart as PNG to w.
func writeChart(w io.Writer, rep report, title string) error {
	img, err := renderChart(rep, title)
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}
