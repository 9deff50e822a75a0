#!/usr/bin/env bash
# Installs the peer tools the tests and benchmarks compare with, pinned:
# crane and oras from the Go module proxy into .digestline/tools, skopeo from
# Debian (when root and missing). Idempotent and quick when already there.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/.digestline/tools
mkdir -p "$tools"
install() { # binary module@version
  [ -x "$tools/$1" ] || { echo "installing $1 ($2)" >&2; GOBIN=$tools GOFLAGS= GOWORK=off go install "$2"; }
}
install crane github.com/google/go-containerregistry/cmd/crane@v0.22.1
install oras oras.land/oras/cmd/oras@v1.3.6
if ! command -v skopeo >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing skopeo" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo; } >/dev/null
  else
    echo "skopeo is missing: install it (apt-get install skopeo) for the interoperability tests" >&2
  fi
fi
