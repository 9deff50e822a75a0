// Package pusher is the pusher service: for each build.completed it pushes
// the artifact graph from the blob store to the target registry stage by
// stage, emitting one push.stage event, span and [STAGE] log line per stage,
// then push.completed or push.failed.
package pusher
