#!/usr/bin/env bash
# Prints the path of a peer tool (cosign, jaeger, oras or regctl),
# building them first if needed: all four in one `go install` from the
# wrapper module in scripts/peers, so what they share is compiled once
# (~15 minutes cold on 2 cores, most of it cosign and Jaeger). They are
# kept in the user's cache, keyed by the module's go.sum, so a fresh clone
# on the same machine builds nothing, and one build runs at a time: make
# demo and scripts/tools.sh may ask at once. Static (no cgo, -trimpath, no
# symbols), so the same Jaeger runs in the trace test and in a FROM-scratch
# image.
# Usage: scripts/peer.sh NAME
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/peer.sh cosign|jaeger|oras|regctl}
case $name in
  cosign | jaeger | oras | regctl) ;;
  *) echo "scripts/peer.sh: no peer tool $name (cosign, jaeger, oras, regctl)" >&2; exit 2 ;;
esac
cache=${XDG_CACHE_HOME:-$HOME/.cache}/digestline/peers-$(sha256sum scripts/peers/go.sum | cut -c1-12)
mkdir -p "$cache"
if [ ! -x "$cache/bin/$name" ]; then
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -x "$cache/bin/$name" ]; then
    echo "building cosign, jaeger, oras and regctl (scripts/peers; several minutes the first time)" >&2
    tmp=$(mktemp -d "$cache/.build.XXXXXX")
    (cd scripts/peers && CGO_ENABLED=0 GOBIN=$tmp GOFLAGS=-trimpath GOWORK=off go install -ldflags="-s -w" \
      github.com/sigstore/cosign/v2/cmd/cosign github.com/jaegertracing/jaeger/cmd/jaeger \
      oras.land/oras/cmd/oras github.com/regclient/regclient/cmd/regctl) >&2
    rm -rf "$cache/bin"
    mv "$tmp" "$cache/bin" # all at once: a half-built set is never found
  fi
fi
echo "$cache/bin/$name"
