// Package reporter is the reporter service: it turns verify.completed into
// promotion records (current digest per environment and repository, in the
// promotions KV bucket) and promoted events, indexes every run's events, and
// serves both over HTTP for deployers, CI and people.
package reporter
