// Package harness is the end-to-end test harness of ferry: real registries,
// a counting and fault-injecting proxy, fixtures built in code, and the ferry
// binary run as a user would run it.
//
// Everything listens on 127.0.0.1 and lives in the test process:
//
//   - StartRegistry starts the CNCF distribution registry (the same code as
//     the registry:3 container) with its filesystem storage driver under
//     t.TempDir(), optionally behind htpasswd basic auth and TLS with a test
//     CA generated in code. Manifests with non-distributable layers are
//     accepted (validation.manifests.urls.allow is "^https?://").
//     NewRegistry starts the same registry outside a test (the demo uses it).
//   - StartProxy puts a reverse proxy in front of a registry. It counts
//     requests by method and path class, counts the blob bytes it serves and
//     receives, and injects faults (a response cut after N body bytes, a
//     connection reset, a body or an upload throttled to a rate, a flipped
//     byte in a body, or a canned status such as 503 or 429 with
//     Retry-After) chosen per request by a hook; its log records when each
//     request started and ended.
//   - Builder pushes fixtures with oras-go, never with ferry: images (OCI or
//     Docker schema2, optional shared base layer and non-distributable
//     layer), OCI indexes and Docker manifest lists, imgpkg bundles with an
//     ImagesLock, and cosign-like signature tags. Content is pseudo-random
//     from a seed, so a fixture built twice from the same seed is identical.
//   - Ferry builds cmd/ferry once per test process (BuildFerry builds it
//     anywhere) and Run executes it with a private HOME, DOCKER_CONFIG and
//     XDG directories under t.TempDir(), so the developer's own credentials
//     and cache never leak into a test.
//
// Test packages that run the binary use Main in their TestMain so the built
// binary is removed at the end:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// Environment knobs, all optional: FERRY_E2E_BINARY runs an existing ferry
// binary instead of building one; FERRY_E2E_RACE=1 builds it with -race;
// FERRY_E2E_REGISTRY_LOG=1 lets the registries log to stderr.
package harness
