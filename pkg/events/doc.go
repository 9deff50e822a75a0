// Package events is digestline's event contract and the runtime every service
// shares.
//
// The contract: each event is a CloudEvents 1.0 structured-JSON message whose
// type is dev.digestline.<noun>.<verb>.v1, whose data is one of the Go types in
// this package and validates against the JSON Schema generated from it
// (schemas/*.json), and which carries the extensions runid, traceparent and
// tracestate. On NATS the subject is digestline.<noun>.<verb>.<runid> in the
// DIGESTLINE stream (so one run's events can be read alone: RunEvents), and
// the JetStream Nats-Msg-Id is the event id, so a publish that is retried or
// repeated by a redelivered handler is stored once.
//
// The runtime: Provision creates the streams, Object Store and KV buckets;
// Bus publishes (injecting trace context, setting the message id) and runs
// consumers (validate → handler → ack, nak with backoff on transient errors,
// terminate and dead-letter invalid events, one span per handled event).
package events
