#!/usr/bin/env bash
# Prints the path of the cosign CLI (v2.6.5), building it first if needed:
# a large build (~5 minutes on 2 cores), kept in the user's cache as Jaeger
# is, so a fresh clone on the same machine does not build it again. The
# signing tests verify digestline's signatures with it (and verify its
# signatures), and make demo shows `cosign verify` passing.
# Usage: scripts/cosign.sh   (used by scripts/tools.sh and scripts/demo.sh)
set -euo pipefail
version=v2.6.5
cache=${XDG_CACHE_HOME:-$HOME/.cache}/digestline/cosign-$version
if [ ! -x "$cache/cosign" ]; then
  echo "installing cosign ($version; several minutes the first time)" >&2
  GOBIN=$cache GOFLAGS=-trimpath CGO_ENABLED=0 GOWORK=off go install -ldflags="-s -w" "github.com/sigstore/cosign/v2/cmd/cosign@$version" >&2
fi
echo "$cache/cosign"
