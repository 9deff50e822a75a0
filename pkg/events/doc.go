// Package events is digestline's event contract: what travels on the bus,
// and nothing that carries it. It imports no NATS client and no HTTP
// client, so a deployer in another module reads the pipeline's events with
// this package alone.
//
// Each event is a CloudEvents 1.0 structured-JSON message whose type is
// dev.digestline.<noun>.<verb>.v1 (Name.Type), whose data is one of the Go
// types in data.go (the push stage report in stage.go) and validates against
// the JSON Schema generated from it (schemas/*.json, ValidateData), and
// which carries the extensions runid, traceparent and tracestate. On NATS
// the subject is digestline.<noun>.<verb>.<runid> (Name.Subject) in the
// DIGESTLINE stream, and the JetStream Nats-Msg-Id is the event id, so a
// publish that is retried or repeated by a redelivered handler is stored
// once. NewEvent and Follow make events (Follow derives a stable id from the
// event answered); Parse and Decode read them back, refusing what the
// contract forbids with ErrInvalid. resources.go names the streams and
// buckets; progress.go the upload progress frames published outside the
// stream.
//
// The runtime that carries these events is package bus; the blob store
// between builder and pusher is package blobstore; the fold of a run's
// events into what people read is package runs.
package events
