// Package verifier is the verifier service: for each push.completed it pulls
// the artifact back by digest, stream-hashes every manifest and blob, checks
// sizes and media types, compares the result with the build's artifact graph,
// and answers with verify.completed or verify.failed. Verify is the same check
// for the standalone `digestline verify`.
package verifier
