#!/usr/bin/env bash
# Installs the peer tools the tests and benchmarks use, pinned: crane, oras, regctl,
# distribution's registry v3, cosign and jaeger from the Go module proxy into .digestline/tools;
# skopeo and docker-registry from Debian (when root and missing). Idempotent and quick
# when already there.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/.digestline/tools
mkdir -p "$tools"
install() { # binary module@version
  [ -x "$tools/$1" ] || { echo "installing $1 ($2)" >&2; GOBIN=$tools GOFLAGS= GOWORK=off go install "$2"; }
}
install crane github.com/google/go-containerregistry/cmd/crane@v0.22.1
install oras oras.land/oras/cmd/oras@v1.3.6
install regctl github.com/regclient/regclient/cmd/regctl@v0.11.7
# distribution v3 (the registry of Docker Hub, GitLab and many self-hosted ones),
# for the registry matrix test; built by this Go (sha256 with SHA-NI). Its
# binary is called registry: renamed so nothing mistakes it for another.
if [ ! -x "$tools/distribution-registry" ]; then
  install registry github.com/distribution/distribution/v3/cmd/registry@v3.1.2
  mv "$tools/registry" "$tools/distribution-registry"
fi
# cosign, for the signing tests (see scripts/cosign.sh).
ln -sf "$(scripts/cosign.sh)" "$tools/cosign"
# Jaeger v2 all-in-one, for the trace test (see scripts/jaeger.sh).
jaeger=$(scripts/jaeger.sh)
ln -sf "$jaeger" "$tools/jaeger"
# From Debian: skopeo, and docker-registry (distribution 2.8, a real registry
# without the referrers API).
apt_missing=()
command -v skopeo >/dev/null 2>&1 || apt_missing+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || apt_missing+=(docker-registry)
if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${apt_missing[*]}" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}"; } >/dev/null
  else
    echo "missing ${apt_missing[*]}: install with apt-get for the interoperability tests" >&2
  fi
fi
