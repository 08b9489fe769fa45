package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// registryProc is a registry (cmd/registry) running as a child process on
// 127.0.0.1, plain HTTP, storage under its own directory; with LATENCY, a
// delayProxy in front of it for the tools.
type registryProc struct {
	name  string      // "source" or "destination", for messages
	host  string      // 127.0.0.1:PORT, the registry itself (fixtures, checks)
	proxy *delayProxy // what the tools talk to; nil: they talk to host
	dir   string
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
	log   *os.File      // its standard error
}

// startRegistry starts bin -root dir and waits until it prints its address
// and answers GET /v2/. With latency > 0 it also starts a delayProxy in
// front of it, which toolHost and ref name.
func startRegistry(ctx context.Context, bin, name, dir string, latency time.Duration) (*registryProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-root", dir)
	cmd.Stderr = logFile
	// Killed with the bench even if the bench dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s registry: %w", name, err)
	}
	r := &registryProc{name: name, dir: dir, cmd: cmd, done: make(chan struct{}), log: logFile}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(r.done)
	}()
	fail := func(err error) (*registryProc, error) {
		r.stop()
		tail, _ := os.ReadFile(logFile.Name())
		return nil, fmt.Errorf("%s registry: %w\n%s", name, err, tail)
	}
	select {
	case host, ok := <-lines:
		if !ok || host == "" {
			return fail(fmt.Errorf("exited before printing its address"))
		}
		if _, _, err := net.SplitHostPort(host); err != nil {
			return fail(fmt.Errorf("printed %q, want HOST:PORT", host))
		}
		r.host = host
	case <-time.After(30 * time.Second):
		return fail(fmt.Errorf("no address after 30s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if err := r.waitReady(ctx); err != nil {
		return fail(err)
	}
	if latency > 0 {
		if r.proxy, err = startDelayProxy(r.host, latency); err != nil {
			return fail(err)
		}
	}
	return r, nil
}

// waitReady polls GET /v2/ until the registry answers 200.
func (r *registryProc) waitReady(ctx context.Context) error {
	client := loopbackHTTPClient()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the proxy and the registry (SIGTERM, then SIGKILL after 5 s)
// and waits for it. It is idempotent.
func (r *registryProc) stop() {
	if r == nil || r.cmd.Process == nil {
		return
	}
	r.proxy.stop()
	select {
	case <-r.done:
	default:
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	}
	r.log.Close()
}

// toolHost is the HOST:PORT the tools are given: the delay proxy's with
// LATENCY, the registry's otherwise.
func (r *registryProc) toolHost() string {
	if r.proxy != nil {
		return r.proxy.host
	}
	return r.host
}

// ref returns "TOOLHOST/repo", the reference the tools are given (and the
// bundles' images.yml names).
func (r *registryProc) ref(repo string) string { return r.toolHost() + "/" + repo }

// repository opens repo on the registry itself (not through the delay
// proxy) with oras-go over plain HTTP: fixtures and output checks are not
// slowed by LATENCY.
func (r *registryProc) repository(repo string) (*remote.Repository, error) {
	rr, err := remote.NewRepository(r.host + "/" + repo)
	if err != nil {
		return nil, err
	}
	rr.PlainHTTP = true
	rr.Client = &auth.Client{Client: loopbackHTTPClient(), Cache: auth.NewCache()}
	return rr, nil
}

// loopbackHTTPClient is an HTTP client that ignores proxy settings (the
// registries are on 127.0.0.1) and gives up on a stuck request.
func loopbackHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 8
	return &http.Client{Transport: tr, Timeout: 10 * time.Minute}
}
