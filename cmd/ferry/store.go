package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferry-oci/ferry/store"
)

// storeFlags choose the local content store every download goes through.
type storeFlags struct {
	path    string
	noStore bool
}

func (f *storeFlags) bind(fs *pflag.FlagSet, withNoStore bool) {
	fs.StringVar(&f.path, "store", "", "Local content store directory ($FERRY_STORE, default ${XDG_CACHE_HOME:-$HOME/.cache}/ferry/store)")
	if withNoStore {
		fs.BoolVar(&f.noStore, "no-store", false, "Keep nothing locally: stream and verify without the content store (no resume, nothing cached)")
	}
}

// root returns the store directory chosen by --store, FERRY_STORE or the default.
func (f *storeFlags) root() (string, error) {
	if f.path != "" {
		return f.path, nil
	}
	return store.DefaultRoot(os.Getenv)
}

// open opens the store, or returns nil with --no-store.
func (f *storeFlags) open(cmd *cobra.Command) (*store.Store, error) {
	if f.noStore {
		return nil, nil
	}
	root, err := f.root()
	if err != nil {
		return nil, err
	}
	s, err := store.Open(cmd.Context(), root)
	if err != nil {
		return nil, fmt.Errorf("content store %s: %w", root, err)
	}
	return s, nil
}

// temporaryStore opens a store in a new temporary directory, removed by
// cleanup: what --no-store uses when a layout must be written from a store.
func temporaryStore(cmd *cobra.Command) (*store.Store, func(), error) {
	dir, err := os.MkdirTemp("", "ferry-store-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	st, err := store.Open(cmd.Context(), dir)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return st, cleanup, nil
}

func newStoreCmd(s streams) *cobra.Command {
	var f storeFlags
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Inspect and maintain the local content store",
		Long: `Every byte ferry downloads passes through a local content-addressable store, so a
second run fetches nothing it already has and an interrupted download resumes at the byte
where it stopped. These commands show and maintain it.`,
	}
	f.bind(cmd.PersistentFlags(), false)

	path := &cobra.Command{
		Use:   "path",
		Short: "Print the store directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := f.root()
			if err != nil {
				return err
			}
			fmt.Fprintln(s.Out, root)
			return nil
		},
	}
	du := &cobra.Command{
		Use:   "du",
		Short: "Show how much the store holds: blobs, bytes and partial downloads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.open(cmd)
			if err != nil {
				return err
			}
			u, err := st.DiskUsage(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "blobs:    %d (%s)\npartials: %d (%s)\n", u.Blobs, humanBytes(u.Bytes), u.Partials, humanBytes(u.PartialBytes))
			return nil
		},
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the blobs in the store with their size and last use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.open(cmd)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DIGEST\tSIZE\tLAST USED")
			err = st.List(cmd.Context(), func(b store.BlobInfo) error {
				_, err := fmt.Fprintf(tw, "%s\t%d\t%s\n", b.Digest, b.Size, b.LastUsed.UTC().Format(time.RFC3339))
				return err
			})
			if err != nil {
				return err
			}
			return tw.Flush()
		},
	}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Re-hash every blob; report and remove anything corrupt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.open(cmd)
			if err != nil {
				return err
			}
			problems, err := st.Verify(cmd.Context(), true)
			for _, p := range problems {
				action := "kept"
				if p.Removed {
					action = "removed"
				}
				fmt.Fprintf(s.Err, "store | %s (%s): %v; %s\n", p.Digest, p.Path, p.Err, action)
			}
			if err != nil {
				return err
			}
			if len(problems) > 0 {
				return fmt.Errorf("store %s: %d corrupt entries found (removed ones are fetched again when needed)", st.Root(), len(problems))
			}
			fmt.Fprintln(s.Err, "store | every blob verified")
			return nil
		},
	}
	var prune struct {
		olderThan time.Duration
		maxSize   string
		partials  time.Duration
		dryRun    bool
	}
	pruneCmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove blobs by last use or down to a size budget, and stale partial downloads",
		Example: `  ferry store prune --older-than 720h
  ferry store prune --max-size 20GiB --stale-partials 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prune.olderThan == 0 && prune.maxSize == "" && prune.partials == 0 {
				return errors.New("expected --older-than, --max-size or --stale-partials")
			}
			maxBytes, err := parseBytes(prune.maxSize)
			if err != nil {
				return fmt.Errorf("--max-size: %w", err)
			}
			st, err := f.open(cmd)
			if err != nil {
				return err
			}
			res, err := st.Prune(cmd.Context(), store.PruneOptions{
				OlderThan:              prune.olderThan,
				MaxBytes:               maxBytes,
				StalePartialsOlderThan: prune.partials,
				DryRun:                 prune.dryRun,
			})
			if err != nil {
				return err
			}
			verb := "removed"
			if prune.dryRun {
				verb = "would remove"
			}
			fmt.Fprintf(s.Out, "%s %d blobs (%s) and %d partials (%s)\n", verb, len(res.Removed), humanBytes(res.Bytes), res.Partials, humanBytes(res.PartialBytes))
			return nil
		},
	}
	pf := pruneCmd.Flags()
	pf.DurationVar(&prune.olderThan, "older-than", 0, "Remove blobs not used for this long (e.g. 720h)")
	pf.StringVar(&prune.maxSize, "max-size", "", "Then remove least recently used blobs until the store holds at most this much (e.g. 20GiB)")
	pf.DurationVar(&prune.partials, "stale-partials", 0, "Remove partial downloads not written to for this long")
	pf.BoolVar(&prune.dryRun, "dry-run", false, "Show what would be removed")

	cmd.AddCommand(path, du, ls, verify, pruneCmd)
	return cmd
}

// humanBytes formats n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseBytes reads sizes such as 512MiB, 20GiB, 1G or 1000 (bytes).
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("%q is not a size", s)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 512MiB, 20GiB)", s)
	}
	return v, nil
}
