// Package registry is digestline's stage-aware OCI registry client, over
// the HTTP layer of package transport (auth challenges, limits, timeouts,
// spans, request counting, and the classification of every answer into a
// *failure.Error with a hint).
//
// The files show its parts:
//   - client.go, options.go, open.go: a Client, its options, and opening a
//     repository (auth proven up front when there is a credential).
//   - repo.go, upload.go, referrers.go, graph.go, shared.go: what a Repo
//     does — manifests, blobs, upload sessions, the referrers API and its
//     fallback tag, reading a whole graph with its referrers (cosign's
//     tags too), and reads shared by concurrent pushes.
//   - push.go runs Client.Push as explicit stages from a table (auth →
//     manifest check → blob check → mount → upload → manifest publish →
//     tag update → referrers, and verify when the push carries a Proof),
//     each one span and one events.StageReport, retrying only transient
//     classes and resuming at the stage that failed. push_stages.go holds
//     the stages, push_upload.go the three ways a blob goes up (one POST,
//     streamed, resumable chunks), push_referrers.go what is attached to
//     the image; pushoptions.go the options of one push.
//   - drift.go: the tag policies that guard a tag against drift.
//   - probe.go: what a registry supports, asked without leaving anything.
package registry
