// Package telemetry sets up OpenTelemetry tracing and structured logging the
// same way for every digestline process.
package telemetry
