package ocilayout

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
)

const (
	mtSBOM      = "application/vnd.example.sbom"
	mtSigConfig = "application/vnd.example.sig.config"
)

// referrerFixture is newFixture plus referrers:
//
//	sbom      artifactType mtSBOM, subject app, listed in index.json
//	sig       no artifactType, config mtSigConfig, subject sbom, listed in index.json
//	armNote   artifactType mtSBOM, subject the arm child of multi, found only
//	          as a child of the index "holder" listed in index.json
//	sparse    an index listed in index.json whose child is not in the layout
type referrerFixture struct {
	*fixture
	sbom, sig, armNote, holder, arm ocispec.Descriptor
}

func newReferrerFixture(t *testing.T) *referrerFixture {
	t.Helper()
	fx := &referrerFixture{fixture: newFixture(t)}
	var idx ocispec.Index
	if err := json.Unmarshal(fx.data[fx.multi.Digest], &idx); err != nil {
		t.Fatal(err)
	}
	fx.arm = idx.Manifests[1]
	empty := fx.add(ocispec.MediaTypeEmptyJSON, []byte("{}"))
	artifact := func(artifactType, cfgType string, subject ocispec.Descriptor, note string) ocispec.Descriptor {
		cfg := empty
		if cfgType != "" {
			cfg = fx.add(cfgType, []byte(`{"note":"`+note+`"}`))
		}
		layer := fx.add("application/octet-stream", []byte(note))
		s := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Config: cfg,
			Layers: []ocispec.Descriptor{layer}, Subject: &s, Annotations: map[string]string{"note": note}}
		m.SchemaVersion = 2
		return fx.add(ocispec.MediaTypeImageManifest, mustJSON(t, m))
	}
	fx.sbom = artifact(mtSBOM, "", fx.app, "sbom of app")
	fx.sig = artifact("", mtSigConfig, fx.sbom, "signature of the sbom")
	fx.armNote = artifact(mtSBOM, "", fx.arm, "sbom of arm")
	holder := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{fx.armNote}}
	holder.SchemaVersion = 2
	fx.holder = fx.add(ocispec.MediaTypeImageIndex, mustJSON(t, holder))
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("not here"), Size: 8}
	sparse := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{missing}}
	sparse.SchemaVersion = 2
	sparseDesc := fx.add(ocispec.MediaTypeImageIndex, mustJSON(t, sparse))

	fx.roots = append(fx.roots,
		Root{Desc: fx.sbom, OriginalRef: "reg.example/tiny/app@" + fx.sbom.Digest.String()},
		Root{Desc: fx.sig, OriginalRef: "reg.example/tiny/app@" + fx.sig.Digest.String()},
		Root{Desc: fx.holder},
		Root{Desc: sparseDesc},
	)
	var err error
	if fx.index, err = NewIndex(fx.roots); err != nil {
		t.Fatal(err)
	}
	return fx
}

// listAll collects what Referrers hands fn, counting the calls of fn.
func listAll(t *testing.T, l registry.ReferrerLister, subject ocispec.Descriptor, artifactType string) ([]ocispec.Descriptor, int) {
	t.Helper()
	var got []ocispec.Descriptor
	calls := 0
	err := l.Referrers(context.Background(), subject, artifactType, func(page []ocispec.Descriptor) error {
		calls++
		got = append(got, page...)
		return nil
	})
	if err != nil {
		t.Fatalf("Referrers(%s): %v", subject.Digest, err)
	}
	return got, calls
}

func TestLayoutReferrers(t *testing.T) {
	ctx := context.Background()
	fx := newReferrerFixture(t)
	tarPath := filepath.Join(t.TempDir(), "layout.tar")
	if _, err := WriteTar(ctx, tarPath, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	dirPath := filepath.Join(t.TempDir(), "layout")
	if err := WriteDir(ctx, dirPath, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := OpenTar(ctx, tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dr, err := OpenDir(ctx, dirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()

	for _, layout := range []struct {
		name string
		l    registry.ReferrerLister
	}{{"tar", tr}, {"dir", dr}} {
		t.Run(layout.name, func(t *testing.T) {
			tests := []struct {
				name         string
				subject      ocispec.Descriptor
				artifactType string
				want         []ocispec.Descriptor // digest, media type, size, artifact type
			}{
				{"image", fx.app, "", []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: fx.sbom.Digest, Size: fx.sbom.Size, ArtifactType: mtSBOM}}},
				{"referrer of a referrer, artifact type from the config", fx.sbom, "", []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: fx.sig.Digest, Size: fx.sig.Size, ArtifactType: mtSigConfig}}},
				{"index child, referrer found under an index", fx.arm, "", []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: fx.armNote.Digest, Size: fx.armNote.Size, ArtifactType: mtSBOM}}},
				{"filtered in", fx.app, mtSBOM, []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: fx.sbom.Digest, Size: fx.sbom.Size, ArtifactType: mtSBOM}}},
				{"filtered out", fx.app, mtSigConfig, nil},
				{"none", fx.bundle, "", nil},
				{"unknown digest", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: 1}, "", nil},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					got, calls := listAll(t, layout.l, tc.subject, tc.artifactType)
					if len(tc.want) == 0 {
						if calls != 0 || len(got) != 0 {
							t.Fatalf("fn called %d times with %v, want no call", calls, got)
						}
						return
					}
					if calls != 1 || len(got) != len(tc.want) {
						t.Fatalf("fn called %d times with %v, want once with %v", calls, got, tc.want)
					}
					for i, w := range tc.want {
						g := got[i]
						if g.Digest != w.Digest || g.MediaType != w.MediaType || g.Size != w.Size || g.ArtifactType != w.ArtifactType {
							t.Errorf("referrer %d = %+v, want %+v", i, g, w)
						}
						if g.Annotations["note"] == "" {
							t.Errorf("referrer %s has no annotations: %v", g.Digest, g.Annotations)
						}
					}
				})
			}
		})
	}
}

// TestLayoutReferrersScanOnce checks that concurrent callers share one scan
// and that the result does not alias the cache.
func TestLayoutReferrersScanOnce(t *testing.T) {
	ctx := context.Background()
	fx := newReferrerFixture(t)
	var mu sync.Mutex
	fetched := map[digest.Digest]int{}
	fetch := func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		mu.Lock()
		fetched[d.Digest]++
		mu.Unlock()
		if _, ok := fx.data[d.Digest]; !ok {
			return nil, missingBlob(d.Digest, "")
		}
		return streamOpener(fx.data).OpenBlob(ctx, d)
	}
	var x referrerIndex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			err := x.list(ctx, fx.index, fetch, fx.app, "", func(rs []ocispec.Descriptor) error {
				rs[0].Annotations["note"] = "changed by a caller"
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for d, n := range fetched {
		if n != 1 {
			t.Errorf("%s fetched %d times, want once", d, n)
		}
	}
	// Manifests and indexes only: bundle, app, multi and its two
	// children, foreign, sbom, sig, holder, armNote, sparse (its missing
	// child is looked for too).
	if want := 12; len(fetched) != want {
		t.Errorf("%d blobs fetched, want %d (manifests only)", len(fetched), want)
	}
	again := x.bySubject[fx.app.Digest]
	if again[0].Annotations["note"] != "sbom of app" {
		t.Errorf("cache modified through a result: %v", again[0].Annotations)
	}
}

func TestLayoutReferrersErrors(t *testing.T) {
	ctx := context.Background()
	fx := newReferrerFixture(t)
	t.Run("corrupt manifest", func(t *testing.T) {
		bad := *fx.fixture
		bad.data = map[digest.Digest][]byte{}
		for d, b := range fx.data {
			bad.data[d] = b
		}
		b := slices.Clone(bad.data[fx.sig.Digest])
		b[len(b)-2] ^= 1
		bad.data[fx.sig.Digest] = b
		es := layoutEntries(t, &bad)
		for i := range es {
			if es[i].name == "index.json" {
				es[i].body = mustJSON(t, fx.index)
			}
		}
		tr, err := OpenTar(ctx, writeRawTar(t, es))
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		err = tr.Referrers(ctx, fx.app, "", func([]ocispec.Descriptor) error { return nil })
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("cancelled scan is not kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		dr, err := OpenDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer dr.Close()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := dr.Referrers(cctx, fx.app, "", func([]ocispec.Descriptor) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if got, _ := listAll(t, dr, fx.app, ""); len(got) != 1 || got[0].Digest != fx.sbom.Digest {
			t.Fatalf("after a cancelled call: %v, want the sbom", got)
		}
	})
	t.Run("fn error", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		if err := WriteDir(ctx, dir, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		dr, err := OpenDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer dr.Close()
		stop := errors.New("stop")
		if err := dr.Referrers(ctx, fx.app, "", func([]ocispec.Descriptor) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("err = %v, want fn's error", err)
		}
	})
}

func TestImgpkgTarReferrers(t *testing.T) {
	ctx := context.Background()
	it, err := OpenImgpkgTar(ctx, "testdata/imgpkg-bundle.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for _, d := range []string{imgpkgBundle, imgpkgApp, imgpkgMulti, imgpkgMultiAMD} {
		got, calls := listAll(t, it, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(d)}, "")
		if calls != 0 {
			t.Errorf("referrers of %s: %v, want none (imgpkg writes none)", d, got)
		}
	}
	if it.refs.bySubject == nil {
		t.Error("the manifests were not scanned")
	}
}
