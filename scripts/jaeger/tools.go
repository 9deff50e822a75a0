//go:build tools

// Package jaeger pins Jaeger v2 (all-in-one: OTLP in, query API out) for
// the trace test. Its module cannot be installed with `go install ...@v`
// (it needs a replace), so this wrapper module holds the replace and
// Jaeger's own go.sum; scripts/tools.sh installs from here.
package jaeger

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
