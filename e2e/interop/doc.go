// Package interop checks that ferry's OCI image layouts (the tar of
// "copy --to-tar" and the directory of "copy --to-oci-layout") are read as
// they are by other OCI tools, and that ferry reads the layouts those tools
// write:
//
//   - umoci (Debian package): "umoci ls" and "umoci unpack --rootless";
//   - oras: "oras cp --from-oci-layout" from the directory and from the tar,
//     and "oras cp --to-oci-layout" for ferry to import;
//   - regctl: "regctl image digest/copy ocidir://", "regctl image import" of
//     the tar, and "regctl image export" for ferry to import;
//   - crane: "crane push" of the directory (crane reads no OCI tar);
//   - containerd (Debian package): a containerd started by the test with a
//     temporary root, state and socket, and "ctr images import" of the tar;
//   - skopeo (Debian package): "skopeo inspect oci-archive:" and
//     "skopeo copy oci:" of the OCI-typed roots, and "skopeo copy
//     oci-archive:" for ferry to import. skopeo 1.9 (Debian 12) does not see
//     Docker-typed manifests in a layout; the tests record that limit.
//
// The tests carry the build tag "interop", so "go test ./..." in the e2e
// module leaves them out; run them with
//
//	go tool task test:interop                 # installs missing tools, then runs the tests
//	go test -tags interop ./interop/...       # from e2e/, with the tools installed
//
// .ci/install-interop-tools installs the tools (the Debian packages with
// apt-get as root; oras, regctl and crane with go install at the versions it
// pins, into bin/tools of the checkout). The tests take a tool from bin/tools,
// else from PATH. A missing tool skips the tests that need it, with a message
// saying how to install it; with CI=true it fails them. Everything listens on
// 127.0.0.1.
package interop
