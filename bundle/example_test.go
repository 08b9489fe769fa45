package bundle_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ferry-oci/ferry/bundle"
)

// Build the bundle of the imgpkg test vector, read its images.yml back from
// the layer, and pull it into a directory.
func Example() {
	ctx := context.Background()
	img, err := bundle.Build(ctx, []string{"testdata/imgpkg-push-vector/bundle"}, bundle.BuildOptions{
		Bundle:         true,
		FileExclusions: []string{".git"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer img.Close()
	fmt.Println("manifest", img.ManifestDesc.Digest)
	fmt.Println("layer   ", img.LayerDesc.Digest)

	rc, err := img.OpenLayer()
	if err != nil {
		fmt.Println(err)
		return
	}
	lock, err := bundle.ReadImagesLock(ctx, rc, img.LayerDesc.MediaType)
	rc.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("image   ", lock.Images[0].Image)

	tmp, err := os.MkdirTemp("", "ferry-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "pulled")
	err = bundle.Unpack(ctx, out, []bundle.Layer{{
		MediaType: img.LayerDesc.MediaType,
		Digest:    img.LayerDesc.Digest,
		Open:      func(context.Context) (io.ReadCloser, error) { return img.OpenLayer() },
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	readme, _ := os.ReadFile(filepath.Join(out, "README.md"))
	fmt.Printf("README   %q\n", readme)
	// Output:
	// manifest sha256:0202fecf9e1d820d721d3af134fb86be794681f808f85ba9242ca285b55b5f76
	// layer    sha256:91fe5d6114ef997691fd0dc57bdde39bcd34ffa0fa7120afd6098b22be906a3a
	// image    registry.example.com/team/app@sha256:1111111111111111111111111111111111111111111111111111111111111111
	// README   "just a readme\n"
}
