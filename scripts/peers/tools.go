//go:build tools

// Package peers pins the peer tools the tests, benchmarks and make demo
// run, in one module so that what they share is resolved to one version
// and compiled once: cosign, Jaeger v2 (all-in-one: OTLP in, query API
// out), oras and regctl; scripts/peer.sh builds them. Jaeger cannot be
// installed with `go install ...@v` (it needs the replace below), and
// cosign and Jaeger are the two largest builds: apart they compile 4,080
// packages, together about 3,400.
//
// What they share resolves to the newest version either asks for, and
// Jaeger's collector (v0.140) only runs with the OpenTelemetry SDK it was
// built with (1.38: a newer one fails at start, "conflicting Schema URL").
// So cosign is v2.6.2, the newest that asks for no newer SDK (v2.6.3+ and
// go-containerregistry v0.22 ask for 1.41), and crane and distribution's
// registry are installed apart (scripts/tools.sh).
package peers

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
	_ "github.com/regclient/regclient/cmd/regctl"
	_ "github.com/sigstore/cosign/v2/cmd/cosign"
	_ "oras.land/oras/cmd/oras"
)
