#!/usr/bin/env bash
# Prints the path of a peer tool (cosign, jaeger, oras or regctl), building
# it first if needed from the wrapper module in scripts/peers: one module,
# so what the tools share is one version, compiled once and found in the
# build cache by the next tool's build. Each is built alone, so make demo
# (cosign) waits for cosign only. They are kept in the user's cache, keyed
# by the module's go.sum, so a fresh clone on the same machine builds
# nothing; one build runs at a time (make demo and scripts/tools.sh may ask
# at once). Static (no cgo, -trimpath, no symbols), so the same Jaeger runs
# in the trace test and in a FROM-scratch image. Cold on 2 cores: cosign
# ~5 minutes, Jaeger ~8 (less after cosign), oras and regctl ~1.
# Usage: scripts/peer.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/peer.sh cosign|jaeger|oras|regctl}
# cosign and Jaeger are built without the compiler's optimizations: they
# sign, verify and keep a few spans in tests and make demo, where their
# speed is not measured, and a fresh machine compiles them in about 30%
# less CPU time (oras and regctl, which the benchmarks time, are built
# optimized).
gcflags=
case $name in
  cosign) pkg=github.com/sigstore/cosign/v2/cmd/cosign gcflags="all=-N -l" ;;
  jaeger) pkg=github.com/jaegertracing/jaeger/cmd/jaeger gcflags="all=-N -l" ;;
  oras) pkg=oras.land/oras/cmd/oras ;;
  regctl) pkg=github.com/regclient/regclient/cmd/regctl ;;
  *) echo "scripts/peer.sh: no peer tool $name (cosign, jaeger, oras, regctl)" >&2; exit 2 ;;
esac
cache=${XDG_CACHE_HOME:-$HOME/.cache}/digestline/peers-$(sha256sum scripts/peers/go.sum | cut -c1-12)
mkdir -p "$cache/bin"
if [ ! -x "$cache/bin/$name" ]; then
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -x "$cache/bin/$name" ]; then
    echo "building $name (scripts/peers; minutes the first time)" >&2
    tmp=$(mktemp -d "$cache/.build.XXXXXX")
    (cd scripts/peers && CGO_ENABLED=0 GOBIN=$tmp GOFLAGS=-trimpath GOWORK=off go install -gcflags="$gcflags" -ldflags="-s -w" "$pkg") >&2
    mv "$tmp/$name" "$cache/bin/$name" # whole: a half-built tool is never found
    rm -rf "$tmp"
  fi
fi
echo "$cache/bin/$name"
