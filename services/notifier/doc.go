// Package notifier is the digestline notifier service: it sends the events
// people want to hear of (a promotion, a rollback, a rejection, a failed
// run, a failed deployment) to outbound webhooks, as Slack-compatible JSON
// or as CloudEvents over HTTP, with the bus's retries, deadline and dead
// letters. Each rule of its file has a durable consumer of its own, so a
// webhook that is down delays and dead-letters its own notifications only,
// and each remembers what it sent (events.NotifiedBucket), so an event
// stored twice or delivered again is sent once.
package notifier
