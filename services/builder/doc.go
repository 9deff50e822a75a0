// Package builder is the builder service: it turns build.requested events
// into deterministic OCI images whose blobs go to the JetStream Object Store,
// and answers with build.completed (the whole artifact graph) or build.failed.
package builder
