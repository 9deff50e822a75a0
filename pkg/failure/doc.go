// Package failure is digestline's vocabulary of failures: one error type
// (Error) that every service fails with, its classes (auth, transport,
// rate-limit, schema, integrity, not-found, conflict, input) that callers
// test with errors.Is, a hint a person can act on, and the one rule of what
// is worth retrying (Error.Temporary). The event contract turns an Error
// into a run's failure in one place: events.NewFailure.
package failure
