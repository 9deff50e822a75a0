#!/usr/bin/env bash
# Installs the peer tools the tests use, pinned: cosign, jaeger and oras (built
# from one wrapper module, scripts/peer.sh), crane, and distribution's registry v3
# (built from scripts/registry), from the Go module proxy into .digestline/tools;
# skopeo, docker-registry and git-lfs from Debian (when root and missing). Idempotent and quick
# when already there.
#
# The installs run at once (their downloads and links overlap), and one
# installer runs at a time per clone: .ci/run starts this in the background
# while it fetches and builds the project, and `make test`'s own call then
# waits for it and finds everything in place.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/.digestline/tools
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9

# install BINARY MODULE@VERSION|DIR [NAME]: go install into a directory of its
# own, then move the binary (built as NAME, default BINARY) into place, so
# a half-built tool is never found. Every tool is built with the same flags
# as cosign and Jaeger (static, -trimpath, no symbols), so the packages
# they share at the same version are compiled once.
install() {
  local bin=$1 module=$2 built=${3:-$1}
  [ -x "$tools/$bin" ] && return 0
  echo "installing $bin ($module)" >&2
  local tmp
  tmp=$(mktemp -d "$tools/.install-$bin.XXXXXX")
  if [ -d "$module" ]; then # a wrapper module of our own (scripts/registry)
    (cd "$module" && GOBIN=$tmp GOFLAGS=-trimpath CGO_ENABLED=0 GOWORK=off go install -ldflags="-s -w" .)
  else
    GOBIN=$tmp GOFLAGS=-trimpath CGO_ENABLED=0 GOWORK=off go install -ldflags="-s -w" "$module"
  fi
  mv "$tmp/$built" "$tools/$bin"
  rm -rf "$tmp"
}

# peers: link the tools scripts/peer.sh builds from one module, once per machine
# (cosign and Jaeger are large builds, kept across clones).
peers() {
  local name path
  for name in cosign jaeger oras; do
    path=$(scripts/peer.sh "$name")
    ln -sf "$path" "$tools/$name"
  done
}

pids=()
# cosign, for the signing tests; Jaeger v2 all-in-one, for the trace test;
# oras, for the interoperability tests. (regctl, which only the benchmarks
# run, is built by scripts/bench.sh when it needs it: a fresh CI run is
# CPU-bound, and builds nothing it does not run.)
peers & pids+=($!)
# crane apart: its go-containerregistry asks for an OpenTelemetry SDK newer
# than Jaeger's collector runs with (scripts/peers/tools.go).
install crane github.com/google/go-containerregistry/cmd/crane@v0.22.1 & pids+=($!)
# distribution v3 (the registry of Docker Hub, GitLab and many self-hosted ones),
# for the registry matrix test; built by this Go (sha256 with SHA-NI) from
# scripts/registry (its storage drivers without the cloud ones). Called
# distribution-registry, so nothing mistakes it for another registry.
install distribution-registry ./scripts/registry registry & pids+=($!)
# From Debian: skopeo, docker-registry (distribution 2.8, a real registry
# without the referrers API), and git-lfs (the builder's tests of
# repositories that keep files in Git LFS).
apt_missing=()
command -v skopeo >/dev/null 2>&1 || apt_missing+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || apt_missing+=(docker-registry)
command -v git-lfs >/dev/null 2>&1 || apt_missing+=(git-lfs)
if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${apt_missing[*]}" >&2
    { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${apt_missing[@]}"; } >/dev/null &
    pids+=($!)
  else
    echo "missing ${apt_missing[*]}: install with apt-get for the interoperability tests" >&2
  fi
fi
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
if [ "$failed" != 0 ]; then
  echo "scripts/tools.sh: an install failed (see above)" >&2
  exit 1
fi
