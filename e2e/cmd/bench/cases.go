package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// op is what one process of a run does.
type op int

const (
	opToRepo      op = iota // registry → registry
	opToArchive             // registry → the tool's OCI layout tar (a directory for crane)
	opToLayout              // registry → a shared OCI layout directory (per-image scripts)
	opFromArchive           // what opToArchive wrote → registry
)

// opArgs are the operands of one process.
type opArgs struct {
	src    string // source reference (registry) or archive path (opFromArchive)
	dst    string // destination repository (opToRepo, opFromArchive) or path
	tag    string // destination tag for the tools that need one
	bundle bool   // src is an imgpkg bundle (ferry and imgpkg copy it with -b)
	store  string // ferry's --store
	// dstHost is the destination registry's HOST:PORT ("" when the run
	// writes no registry), for the tools configured per registry.
	dstHost string
}

// bundleCapable reports whether tool copies a bundle with everything it
// lists in one process.
func bundleCapable(tool string) bool { return tool == toolFerry || tool == toolImgpkg }

// archiveName is the file (or, for crane, the directory) a tool writes in
// opToArchive.
func archiveName(tool string) string {
	if tool == toolCrane {
		return "out" // crane pull --format oci writes a layout directory
	}
	return "out.tar"
}

// argv returns the command line of tool doing o. Every tool talks plain
// HTTP to the loopback registries: ferry does so by itself, the others
// through their flags.
func (b *bench) argv(tool string, o op, a opArgs) []string {
	bin := b.bins[tool]
	withTag := a.dst + ":" + a.tag
	switch tool {
	case toolFerry:
		flag := "-i"
		if a.bundle {
			flag = "-b"
		}
		switch o {
		case opToRepo:
			return []string{bin, "copy", flag, a.src, "--to-repo", a.dst, "--store", a.store}
		case opToArchive:
			return []string{bin, "copy", flag, a.src, "--to-tar", a.dst, "--store", a.store}
		case opFromArchive:
			return []string{bin, "copy", "--tar", a.src, "--to-repo", a.dst, "--store", a.store}
		}
	case toolImgpkg:
		flag := "-i"
		if a.bundle {
			flag = "-b"
		}
		switch o {
		case opToRepo:
			return []string{bin, "copy", flag, a.src, "--to-repo", a.dst, "--registry-insecure"}
		case opToArchive:
			return []string{bin, "copy", flag, a.src, "--to-tar", a.dst, "--registry-insecure"}
		case opFromArchive:
			return []string{bin, "copy", "--tar", a.src, "--to-repo", a.dst, "--registry-insecure"}
		}
	case toolCrane:
		switch o {
		case opToRepo:
			return []string{bin, "copy", "--insecure", a.src, withTag}
		case opToArchive, opToLayout:
			return []string{bin, "pull", "--insecure", "--format", "oci", a.src, a.dst}
		case opFromArchive:
			return []string{bin, "push", "--insecure", a.src, withTag}
		}
	case toolOras:
		switch o {
		case opToRepo:
			return []string{bin, "cp", "--no-tty", "--from-plain-http", "--to-plain-http", a.src, withTag}
		case opToArchive:
			return []string{bin, "backup", "--no-tty", "--plain-http", "--output", a.dst, a.src}
		case opToLayout:
			return []string{bin, "cp", "--no-tty", "--from-plain-http", a.src, "--to-oci-layout", a.dst + ":" + a.tag}
		case opFromArchive:
			return []string{bin, "restore", "--no-tty", "--plain-http", "--input", a.src, withTag}
		}
	case toolRegctl:
		hosts := []string{bin, "--host", "reg=" + b.src.toolHost() + ",tls=disabled"}
		if a.dstHost != "" {
			hosts = append(hosts, "--host", "reg="+a.dstHost+",tls=disabled")
		}
		switch o {
		case opToRepo:
			return append(hosts, "image", "copy", a.src, withTag)
		case opToArchive:
			return append(hosts, "image", "export", a.src, a.dst)
		case opToLayout:
			return append(hosts, "image", "copy", a.src, "ocidir://"+a.dst+":"+a.tag)
		case opFromArchive:
			return append(hosts, "image", "import", withTag, a.src)
		}
	case toolSkopeo:
		base := []string{bin, "--insecure-policy", "copy", "--quiet", "--preserve-digests"}
		switch o {
		case opToRepo:
			return append(base, "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+a.src, "docker://"+withTag)
		case opToArchive:
			return append(base, "--src-tls-verify=false", "docker://"+a.src, "oci-archive:"+a.dst+":"+a.tag)
		case opToLayout:
			return append(base, "--src-tls-verify=false", "docker://"+a.src, "oci:"+a.dst+":"+a.tag)
		case opFromArchive:
			return append(base, "--dest-tls-verify=false", "oci-archive:"+a.src+":"+a.tag, "docker://"+withTag)
		}
	}
	panic(fmt.Sprintf("bench: no command for %s op %d", tool, o))
}

// runPlan is what one measured run executes and how its output is checked.
type runPlan struct {
	procs []process
	check func(ctx context.Context) error
}

// destRepo is the destination repository of a run: new for every tool,
// round, case and variant, so nothing is there before the run.
func destRepo(c, tool, variant string, round int) string {
	if variant != "" {
		variant = "-" + variant
	}
	return fmt.Sprintf("bench/%s-%s%s-r%d", c, tool, variant, round)
}

// toolEnv is the environment of every tool process: this process's minus
// anything that configures registries, credentials, proxies or ferry, with
// HOME under dir (a new one per run) and TMPDIR dir/tmp.
func toolEnv(dir string) ([]string, error) {
	home, tmp := filepath.Join(dir, "home"), filepath.Join(dir, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	return append(harness.Env(home), "TMPDIR="+tmp), nil
}

// writesRegistry reports whether case c copies into a registry (the run
// then gets a destination registry of its own).
func writesRegistry(c string) bool {
	return c == caseA || c == caseC || c == caseDRepo || c == caseERepo
}

// plan builds the run of tool on case c (variant "cold" or "warm" for
// ferry on b, "" otherwise) in round; dir is the run's scratch directory,
// removed after the run; dstReg is the run's destination registry (nil
// when c writes no registry).
func (b *bench) plan(c, tool, variant string, round int, dir string, dstReg *registryProc) (runPlan, error) {
	env, err := toolEnv(dir)
	if err != nil {
		return runPlan{}, err
	}
	dstHost, dst := "", ""
	if dstReg != nil {
		dstHost, dst = dstReg.toolHost(), dstReg.ref(destRepo(c, tool, variant, round))
	}
	proc := func(o op, a opArgs) process {
		a.dstHost = dstHost
		return process{argv: b.argv(tool, o, a), env: env, dir: dir}
	}
	store := filepath.Join(dir, "store") // ferry's cold store: new and empty
	if variant == "warm" {
		store = b.warmStore
	}
	big := b.fx.big
	switch c {
	case caseA:
		a := opArgs{src: b.src.ref(big.repo) + ":" + big.tag, dst: dst, tag: fixtureTag, store: store}
		return runPlan{
			procs: []process{proc(opToRepo, a)},
			check: func(ctx context.Context) error { return checkRepo(ctx, dstReg, dst, big) },
		}, nil
	case caseB:
		out := filepath.Join(dir, archiveName(tool))
		a := opArgs{src: b.src.ref(big.repo) + ":" + big.tag, dst: out, tag: fixtureTag, store: store}
		return runPlan{
			procs: []process{proc(opToArchive, a)},
			check: func(context.Context) error { return checkArchive(out, big) },
		}, nil
	case caseC:
		in, ok := b.inputs[tool]
		if !ok {
			return runPlan{}, fmt.Errorf("no input archive: %w", b.inputErrs[tool])
		}
		a := opArgs{src: in, dst: dst, tag: fixtureTag, store: store}
		return runPlan{
			procs: []process{proc(opFromArchive, a)},
			check: func(ctx context.Context) error { return checkRepo(ctx, dstReg, dst, big) },
		}, nil
	case caseDRepo, caseDTar, caseERepo, caseETar:
		bf := b.fx.many
		if c == caseERepo || c == caseETar {
			bf = b.fx.mid
		}
		toRepo := c == caseDRepo || c == caseERepo
		all := bf.all()
		if bundleCapable(tool) {
			a := opArgs{src: b.src.ref(bf.bundle.repo) + ":" + bf.bundle.tag, dst: dst, tag: fixtureTag, bundle: true, store: store}
			if toRepo {
				return runPlan{
					procs: []process{proc(opToRepo, a)},
					check: func(ctx context.Context) error { return checkRepo(ctx, dstReg, dst, all...) },
				}, nil
			}
			out := filepath.Join(dir, "out.tar")
			a.dst = out
			return runPlan{
				procs: []process{proc(opToArchive, a)},
				check: func(context.Context) error { return checkArchive(out, all...) },
			}, nil
		}
		// A user's script: one copy per image of the bundle, one after the other.
		layout := filepath.Join(dir, "layout")
		var procs []process
		for i, im := range all {
			tag := "bundle"
			if i > 0 {
				tag = fmt.Sprintf("img-%03d", i)
			}
			a := opArgs{src: b.src.ref(im.repo) + "@" + im.desc.Digest.String(), dst: dst, tag: tag}
			if toRepo {
				procs = append(procs, proc(opToRepo, a))
			} else {
				a.dst = layout
				procs = append(procs, proc(opToLayout, a))
			}
		}
		if toRepo {
			return runPlan{procs: procs, check: func(ctx context.Context) error { return checkRepo(ctx, dstReg, dst, all...) }}, nil
		}
		return runPlan{procs: procs, check: func(context.Context) error { return checkArchive(layout, all...) }}, nil
	}
	return runPlan{}, fmt.Errorf("unknown case %q", c)
}

// checkRepo checks that repoRef (reg.ref of a repository) holds every
// image's manifest under its digest (the registry accepted the manifest, so
// it has every blob it refers to). It asks the registry directly, not
// through the delay proxy.
func checkRepo(ctx context.Context, reg *registryProc, repoRef string, images ...imageFixture) error {
	repo, err := reg.repository(strings.TrimPrefix(repoRef, reg.toolHost()+"/"))
	if err != nil {
		return err
	}
	for _, im := range images {
		got, err := repo.Resolve(ctx, im.desc.Digest.String())
		if err != nil {
			return fmt.Errorf("%s@%s (%s): %w", repoRef, im.desc.Digest, im.repo, err)
		}
		if got.Digest != im.desc.Digest {
			return fmt.Errorf("%s@%s resolves to %s", repoRef, im.desc.Digest, got.Digest)
		}
	}
	return nil
}

// checkArchive checks that path (a tar file or a layout directory) exists,
// is not empty and names every image's manifest digest: as an entry
// (blobs/sha256/<hex> in an OCI layout) or inside its index.json or
// manifest.json (imgpkg's tar keeps the manifests in manifest.json).
func checkArchive(path string, images ...imageFixture) error {
	names, meta, size, err := archiveContents(path)
	if err != nil {
		return err
	}
	if size == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	for _, im := range images {
		hex := im.desc.Digest.Encoded()
		found := strings.Contains(meta, hex)
		for _, n := range names {
			if found {
				break
			}
			found = strings.Contains(n, hex)
		}
		if !found {
			return fmt.Errorf("%s names no %s (%s) among %d entries", path, im.desc.Digest, im.repo, len(names))
		}
	}
	return nil
}

// maxMetaSize bounds what archiveContents reads of index.json and
// manifest.json.
const maxMetaSize = 64 << 20

// isMeta reports whether an archive entry is an index the check reads.
func isMeta(name string) bool {
	base := filepath.Base(name)
	return base == "index.json" || base == "manifest.json"
}

// archiveContents lists the entry names of a tar file (the bodies of other
// entries are skipped by seeking) or the file paths under a directory, the
// contents of their index.json and manifest.json files, and the total
// bytes.
func archiveContents(path string) (names []string, meta string, size int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", 0, err
	}
	var metaBuf strings.Builder
	if fi.IsDir() {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			size += info.Size()
			names = append(names, filepath.ToSlash(strings.TrimPrefix(p, path)))
			if isMeta(p) && info.Size() <= maxMetaSize {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				metaBuf.Write(b)
			}
			return nil
		})
		return names, metaBuf.String(), size, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", 0, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", 0, fmt.Errorf("%s: %w", path, err)
		}
		names = append(names, h.Name)
		if isMeta(h.Name) && h.Size <= maxMetaSize {
			if _, err := io.Copy(&metaBuf, tr); err != nil {
				return nil, "", 0, fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
		}
	}
	return names, metaBuf.String(), fi.Size(), nil
}

// commandTemplates returns, per tool, the command lines of its runs with
// placeholders for references and paths (for the report).
func commandTemplates(tools []string) map[string][]commandRecord {
	fake := &bench{
		bins: map[string]string{},
		src:  &registryProc{host: "$SRC_REGISTRY"},
	}
	out := map[string][]commandRecord{}
	for _, tool := range tools {
		fake.bins[tool] = tool
		add := func(runs string, o op, a opArgs) {
			a.tag, a.store = "$TAG", "$STORE"
			if o == opToRepo || o == opFromArchive {
				a.dstHost = "$DST_REGISTRY"
			}
			out[tool] = append(out[tool], commandRecord{Runs: runs, Command: strings.Join(fake.argv(tool, o, a), " ")})
		}
		add("a", opToRepo, opArgs{src: "$SRC", dst: "$DST"})
		add("b", opToArchive, opArgs{src: "$SRC", dst: "$OUT"})
		add("c", opFromArchive, opArgs{src: "$IN", dst: "$DST"})
		if bundleCapable(tool) {
			add("d, e to a registry", opToRepo, opArgs{src: "$SRC", dst: "$DST", bundle: true})
			add("d, e to a tar", opToArchive, opArgs{src: "$SRC", dst: "$OUT", bundle: true})
		} else {
			add("d, e to a registry, per image", opToRepo, opArgs{src: "$SRC@$DIGEST", dst: "$DST"})
			add("d, e to a layout, per image", opToLayout, opArgs{src: "$SRC@$DIGEST", dst: "$OUT"})
		}
	}
	return out
}
