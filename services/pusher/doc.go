// Package pusher is the pusher service: for each build.completed it pushes
// the artifact graph from the blob store to the target registry stage by
// stage, emitting one push.stage event, span and [STAGE] log line per stage,
// then push.completed or push.failed; for each promotion.approved it moves
// the environment's tag, or copies the digest with everything attached to
// it to where the environment lives and proves it there first.
package pusher
