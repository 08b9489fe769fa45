package main

import (
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// debugFlagName is the persistent root flag that turns on the HTTP debug log.
const debugFlagName = "debug"

// debugFlag is the value of --debug. It also knows where the log goes (the
// command's error stream), so that any command's registry flags can find
// both through the merged flag set (see debugLog).
type debugFlag struct {
	on bool
	w  io.Writer
}

var _ pflag.Value = (*debugFlag)(nil)

func (d *debugFlag) String() string { return strconv.FormatBool(d.on) }
func (d *debugFlag) Type() string   { return "bool" }

func (d *debugFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	d.on = v
	return nil
}

// addDebugFlag adds --debug to root's persistent flags; the log goes to
// s.Err (stderr), never to stdout, so results stay machine-readable.
func addDebugFlag(root *cobra.Command, s streams) {
	f := root.PersistentFlags().VarPF(&debugFlag{w: s.Err}, debugFlagName, "",
		"Log every registry HTTP request and response (method, URL, status, selected headers; credentials redacted) to stderr")
	f.NoOptDefVal = "true"
}

// debugLog returns where the registry debug log goes for a command whose
// flags are fs, or nil when --debug is off. At run time cobra has merged the
// root's persistent flags into the command's flag set, so --debug is found
// there.
func debugLog(fs *pflag.FlagSet) io.Writer {
	if fs == nil {
		return nil
	}
	f := fs.Lookup(debugFlagName)
	if f == nil {
		return nil
	}
	if d, ok := f.Value.(*debugFlag); ok && d.on {
		return d.w
	}
	return nil
}
