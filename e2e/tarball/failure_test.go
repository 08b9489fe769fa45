package tarball_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/e2e/harness"
)

// TestToTarFailureLeavesNothing checks that a --to-tar whose source fails
// midway exits 1 and leaves neither the tar nor a temporary file in the
// tar's directory: the source blob cut by the proxy (requests not retried),
// or the source going away while the blob is in flight.
func TestToTarFailureLeavesNothing(t *testing.T) {
	ctx := t.Context()
	src := harness.StartRegistry(t, harness.RegistryOptions{})
	b := src.Builder(111)
	img := b.Image(ctx, t, src.Ref("cut/app"), harness.ImageSpec{Layers: []int{1000, 64 << 10}})
	var m struct {
		Layers []struct {
			Digest digest.Digest `json:"digest"`
			Size   int64         `json:"size"`
		} `json:"layers"`
	}
	_, raw := b.FetchManifest(ctx, t, src.Ref("cut/app"), img.Digest.String())
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 2 {
		t.Fatalf("fixture manifest: %v", err)
	}
	big := m.Layers[1]
	isBig := func(r *http.Request) bool {
		return harness.IsBlobGet(r) && strings.HasSuffix(r.URL.Path, "/blobs/"+big.Digest.String())
	}

	cases := []struct {
		name  string
		setup func(p *harness.Proxy) (during func())
	}{
		{"blob cut, then refused", func(p *harness.Proxy) func() {
			var first atomic.Bool
			p.SetFault(func(r *http.Request) harness.Fault {
				switch {
				case !isBig(r):
					return harness.Fault{}
				case first.CompareAndSwap(false, true):
					return harness.CutAfter(big.Size / 2)
				}
				return harness.RespondStatus(http.StatusInternalServerError, nil)
			})
			return nil
		}},
		{"source gone during the blob", func(p *harness.Proxy) func() {
			p.SetFault(func(r *http.Request) harness.Fault {
				if isBig(r) {
					return harness.Throttle(16 << 10) // 4 s for the layer: stopped long before
				}
				return harness.Fault{}
			})
			return func() {
				deadline := time.Now().Add(20 * time.Second)
				for p.Stats().BlobBytesServedByDigest[big.Digest] == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				p.Stop()
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each waits about 3 s for the store to give up on the blob
			p := harness.StartProxy(t, src.Host)
			during := c.setup(p)
			out := t.TempDir()
			tarPath := filepath.Join(out, "app.tar")
			env := []string{"FERRY_STORE=" + filepath.Join(t.TempDir(), "store")}
			done := make(chan struct{})
			if during != nil {
				go func() {
					defer close(done)
					during()
				}()
			} else {
				close(done)
			}
			res := harness.Run(t, env, "copy", "-i", harness.DigestRef(p.Ref("cut/app"), img.Digest), "--to-tar", tarPath, "--registry-retry-count", "0")
			<-done
			line := harness.ErrorLine(t, res)
			if !strings.Contains(line, big.Digest.String()) && !strings.Contains(line, p.Host) {
				t.Errorf("error line %q names neither the blob nor the registry", line)
			}
			ents, err := os.ReadDir(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("%s left in the tar's directory after a failed --to-tar", e.Name())
			}
			if res.Stdout != "" {
				t.Errorf("stdout %q after a failed --to-tar, want nothing", res.Stdout)
			}
		})
	}
}
