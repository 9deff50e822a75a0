// Package e2etest is what the CLI's tests and the system tests share:
// a whole `digestline dev` stack per test on free ports (StartStack, with
// Options), small sources to ship, the peer tools and registries they
// compare with (cosign, crane, oras, skopeo, the embedded registry, a
// container engine), and git repositories and webhook deliveries as forges
// send them. Like net/http/httptest, it takes a testing.TB and stops what
// it starts at cleanup.
package e2etest
