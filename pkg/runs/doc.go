// Package runs is the read model of a run: Events reads one run's events
// from the stream (by its subjects, in order), and Run folds them into what
// people read — the target, a timeline of steps, how it ended and the
// [STAGE] and [VERIFY] lines — so `digestline ship`, `promote` and the
// reporter's page show a run the same way.
package runs
