// Package service is what every digestline service process does before its
// handlers run: read flags and DIGESTLINE_* variables, set up telemetry,
// connect to NATS, provision JetStream, and stop cleanly on SIGINT/SIGTERM.
// It keeps each service's main a few lines long.
package service
