// Command rusage runs a command and writes what the kernel accounted for
// it: wall time, user and system CPU time and peak RSS. The bench
// (cmd/bench) runs every measured tool through it.
//
// Why a separate, small process: a child started by a Go program shares
// its parent's address space until it execs (vfork), and Linux keeps the
// larger of that address space's peak RSS and the new program's as the
// child's ru_maxrss. Started straight from the bench, every tool would
// report at least the bench's own peak RSS; started from this tiny program,
// at least this program's (about 1–2 MiB).
//
// Usage:
//
//	rusage OUTFILE PROGRAM [ARG...]
//
// PROGRAM must be an absolute path. Standard input, output and error and
// the environment are passed on. OUTFILE receives one line,
// "wall_ns user_ns sys_ns maxrss_kib", once PROGRAM has exited; rusage then
// exits with PROGRAM's exit status (128+N when a signal N ended it). The
// child is killed if rusage dies.
package main

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		os.Stderr.WriteString("usage: rusage OUTFILE PROGRAM [ARG...]\n")
		os.Exit(2)
	}
	out, argv := os.Args[1], os.Args[2:]
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	start := time.Now()
	pid, err := syscall.ForkExec(argv[0], argv, attr)
	if err != nil {
		os.Stderr.WriteString("rusage: " + argv[0] + ": " + err.Error() + "\n")
		os.Exit(127)
	}
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err = syscall.Wait4(pid, &ws, 0, &ru)
		if err != syscall.EINTR {
			break
		}
	}
	wall := time.Since(start)
	if err != nil {
		os.Stderr.WriteString("rusage: wait: " + err.Error() + "\n")
		os.Exit(125)
	}
	line := strconv.FormatInt(wall.Nanoseconds(), 10) + " " +
		strconv.FormatInt(syscall.TimevalToNsec(ru.Utime), 10) + " " +
		strconv.FormatInt(syscall.TimevalToNsec(ru.Stime), 10) + " " +
		strconv.FormatInt(ru.Maxrss, 10) + "\n"
	if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
		os.Stderr.WriteString("rusage: " + err.Error() + "\n")
		os.Exit(125)
	}
	switch {
	case ws.Exited():
		os.Exit(ws.ExitStatus())
	case ws.Signaled():
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(125)
}
