// Package registry is digestline's stage-aware OCI registry client.
//
// Repo speaks the distribution protocol (HEAD/GET/PUT manifests, HEAD/GET
// blobs, upload sessions) over go-containerregistry's auth transport and turns
// every failure into a *failure.Error of one class — auth, transport, rate-limit,
// schema, integrity, not-found, conflict — with the registry's codes and a
// hint a person can act on. Client.Push runs a push as explicit stages
// (auth → manifest check → blob check → mount → upload → manifest publish →
// tag update → referrers), each one span and one StageReport, retrying only
// transient classes and resuming at the stage that failed.
package registry
