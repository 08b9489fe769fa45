package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ferry-oci/ferry/graph"
)

// printPlan writes the --dry-run table: one row per image (bytes first
// reached from it) and a total row, then what is left out and a summary.
// destName names the destination; throughLocal says a layout is written
// from the store (what it has is still fetched); platforms are the
// --platform values.
func printPlan(w io.Writer, p *graph.Plan, destName string, throughLocal bool, discoveryFetched int64, platforms []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tKIND\tBLOBS\tSIZE\tFETCH\tSTORE\tAT DESTINATION")
	for _, np := range p.Nodes {
		kind := nodeKind(np.Node)
		if np.AtDest {
			kind += " (present)"
		}
		b := np.Bytes
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", shortRef(np.Node.Ref), kind, b.Blobs,
			humanBytes(b.Total), humanBytes(b.Fetch), humanBytes(b.Local), humanBytes(b.Dest))
	}
	t := p.Total
	fmt.Fprintf(tw, "TOTAL (%d images)\t\t%d\t%s\t%s\t%s\t%s\n", len(p.Nodes), t.Blobs,
		humanBytes(t.Total), humanBytes(t.Fetch), humanBytes(t.Local), humanBytes(t.Dest))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.LeftOut) > 0 {
		fmt.Fprintf(w, "\nleft out: %s, %s (--include-non-distributable-layers copies them)\n", plural(len(p.LeftOut), "non-distributable layer"), humanBytes(t.LeftOut))
		for _, lo := range p.LeftOut {
			fmt.Fprintf(w, "  %s  %s  %s\n", shortRef(lo.Node.Ref), lo.Desc.Digest, humanBytes(lo.Desc.Size))
		}
	}
	if len(p.LeftOutChildren) > 0 {
		printLeftOutChildren(w, p, platforms)
	}
	fmt.Fprintln(w)
	if throughLocal {
		fmt.Fprintf(w, "would write %s (%s) to %s: fetch %s from the source, %s already in the store",
			plural(len(p.Nodes), "image"), humanBytes(t.Total), destName, humanBytes(t.Fetch), humanBytes(t.Local))
		if t.Dest > 0 {
			fmt.Fprintf(w, "; %s already there", humanBytes(t.Dest))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "would copy %s (%s) to %s: fetch %s from the source, %s from the store, %s already there\n",
			plural(len(p.Nodes), "image"), humanBytes(t.Total), destName, humanBytes(t.Fetch), humanBytes(t.Local), humanBytes(t.Dest))
	}
	if discoveryFetched > 0 {
		fmt.Fprintf(w, "(finding the images fetched %s of manifests, configs and bundle layers into the store)\n", humanBytes(discoveryFetched))
	}
	return nil
}

// printLeftOutChildren lists, per index, the children the platform filter
// leaves out and the bytes that saves.
func printLeftOutChildren(w io.Writer, p *graph.Plan, platforms []string) {
	var (
		order    []*graph.Node
		children = map[*graph.Node][]graph.LeftOutChild{}
		saved    = map[*graph.Node]int64{}
	)
	for _, lc := range p.LeftOutChildren {
		if _, ok := children[lc.Node]; !ok {
			order = append(order, lc.Node)
		}
		children[lc.Node] = append(children[lc.Node], lc.Child)
		saved[lc.Node] += lc.Bytes
	}
	fmt.Fprintf(w, "\nleft out of %s: %s, %s", count(len(order), "index", "indexes"), count(len(p.LeftOutChildren), "child", "children"), humanBytes(p.Total.PlatformLeftOut))
	if len(platforms) > 0 {
		fmt.Fprintf(w, " (--platform %s)", strings.Join(platforms, ","))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range order {
		how := "sparse, same digest"
		if n.Rewrite != nil {
			how = "rewritten, new digest " + n.Desc.Digest.Algorithm().String() + ":" + shortDigest(n.Desc.Digest)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t(%s)\n", shortRef(n.Ref), leftOutLabels(children[n]), humanBytes(saved[n]), how)
	}
	tw.Flush()
}

// shortRef shortens the digest of REPO@sha256:<hex> to 12 hex characters.
func shortRef(ref string) string {
	repo, dg, ok := strings.Cut(ref, "@")
	if !ok {
		return ref
	}
	alg, hex, ok := strings.Cut(dg, ":")
	if !ok || len(hex) <= 12 {
		return ref
	}
	return repo + "@" + alg + ":" + hex[:12]
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// count is "1 one" or "N many".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
