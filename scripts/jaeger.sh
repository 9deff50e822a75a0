#!/usr/bin/env bash
# Prints the path of a static Jaeger v2 all-in-one binary (OTLP in, query API
# out), building it first if needed. Jaeger's module cannot be installed with
# `go install ...@version` (it needs a replace), so it is built from the
# wrapper module in scripts/jaeger: ~8 minutes cold on 2 cores. The binary is
# kept in the user's cache, keyed by the wrapper's go.sum, so a fresh clone
# on the same machine does not build it again. Static (no cgo), so that the
# same binary runs in the trace test and in a FROM-scratch image.
# Usage: scripts/jaeger.sh   (used by scripts/tools.sh and scripts/images.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${XDG_CACHE_HOME:-$HOME/.cache}/digestline/jaeger-static-$(sha256sum scripts/jaeger/go.sum | cut -c1-12)
if [ ! -x "$cache/jaeger" ]; then
  echo "installing jaeger (from scripts/jaeger; several minutes the first time)" >&2
  (cd scripts/jaeger && CGO_ENABLED=0 GOBIN=$cache GOFLAGS=-trimpath GOWORK=off go install -ldflags="-s -w" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
fi
echo "$cache/jaeger"
