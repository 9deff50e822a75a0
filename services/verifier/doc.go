// Package verifier is the verifier service: for each push.completed it pulls
// the artifact back by digest and proves it with package verify — every
// manifest and blob stream-hashed, sizes and media types checked, the graph
// compared with the build's, the evidence proven with the trusted keys, and
// the pushed tag checked for drift — and answers with verify.completed or
// verify.failed.
package verifier
