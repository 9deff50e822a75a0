// Package reporter is the reporter service: it decides promotions through
// the gates (promotion.requested, and a build run's own verify.completed),
// turns each verified tag move into the environment's promotion record
// (current digest per environment and repository, in the promotions KV
// bucket), its history, its attestation and a promoted event, and serves
// records, history, runs (read from each run's subjects) and the page over
// HTTP for deployers, CI and people.
//
// Its files are its jobs:
//   - reporter.go: Config and Run (the consumer, its handlers, the API server).
//   - promote.go: the handlers of promotion.requested and verify.completed,
//     and the decision each request gets once.
//   - gates.go: the built-in gates, in order, and where a new one goes;
//     policyinput.go gathers what the policy (package policy) reads.
//   - store.go: the KV buckets of records, verified digests, history,
//     decisions and approvals.
//   - vsa.go, attest.go: the signed verification summary of a promotion,
//     attached to the promoted digest.
//   - places.go: where each environment lives (policy.Place).
//   - api.go (routes and reads), api_writes.go, api_policy.go: the HTTP
//     API, one handler method per route, its types in package api;
//     tokens.go: who may write; page.go: the page.
package reporter
