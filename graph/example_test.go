package graph_test

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-oci/ferry/graph"
)

func ExampleRepoBasedTag() {
	d := digest.Digest("sha256:5c2f0b6fb0c6e3e8a6b0b56c1b8c8f8d6a0f2b2d3c9e4f5a6b7c8d9e0f1a2b3c")
	fmt.Println(graph.RepoBasedTag("127.0.0.1:5001/tiny/app@"+d.String(), d))
	fmt.Println(graph.ImgpkgTag(d))
	// Output:
	// tiny-app-sha256-5c2f0b6fb0c6e3e8a6b0b56c1b8c8f8d6a0f2b2d3c9e4f5a6b7c8d9e0f1a2b3c.imgpkg
	// sha256-5c2f0b6fb0c6e3e8a6b0b56c1b8c8f8d6a0f2b2d3c9e4f5a6b7c8d9e0f1a2b3c.imgpkg
}
