// Package bus carries the events of package events on NATS JetStream: the
// runtime every service shares.
//
// Provision creates the streams, Object Store and KV buckets (idempotent;
// every service runs it at start). A Bus publishes (injecting the trace
// context into the event, setting the Nats-Msg-Id, validating the data
// against the contract) and emits the events a handler answers with
// (Emit, Emitter, Fail). A Router runs one durable consumer: a Handler per
// event name, wrapped in Middleware that each do one thing, one file each:
// Metrics, Acknowledge, DeadLettering, Retry, Validate, Trace, Recover,
// KeepAlive and Timeout. dlq.go lists and replays dead letters; progress.go
// publishes upload progress frames on core NATS. bustest starts an embedded
// server with a provisioned bus for tests.
package bus
