#!/usr/bin/env bash
# Builds every image of a deployment with digestline itself — FROM scratch,
# one static binary, a non-root user, OCI labels — as OCI layouts and
# oci-archive tarballs that podman and docker load without pulling anything:
#   builder pusher verifier reporter notifier   the services
#   digestline                         the CLI (also `digestline registry`, the registry of the compose file)
#   nats                               nats-server with JetStream, from its Go module
#   jaeger                             Jaeger v2 all-in-one, in memory (scripts/peer.sh jaeger)
# Usage: scripts/images.sh [OUT]  (make images; default OUT .digestline/images)
#   podman load -i OUT/builder.tar   # or: podman pull oci-archive:OUT/builder.tar
# IMAGES_BINARIES=DIR takes the six digestline binaries from DIR, built
# already (static, -trimpath: the system tests' TestMain), instead of
# linking them again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.digestline/images}
tag=${IMAGE_TAG:-dev}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
given=${IMAGES_BINARIES:-}
digestline=bin/digestline # what builds the images
if [ -n "$given" ]; then
  digestline=$given/digestline
else
  [ -x bin/digestline ] || CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/digestline
fi

# image NAME PACKAGE PORTS DESCRIPTION ENTRYPOINT-ARGS...: a root of /usr/local/bin/<binary>
# (PACKAGE built static, or copied when it is the path of a binary), a world-writable /tmp
# and /data (sticky), and a digestline.yaml describing the image.
image() {
  local name=$1 pkg=$2 ports=$3 description=$4; shift 4
  local root="$work/$name" bin
  bin=$(basename "$1")
  mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/data"
  chmod 1777 "$root/tmp" "$root/data"
  if [ -f "$pkg" ]; then
    cp "$pkg" "$root/usr/local/bin/$bin"
  elif [ -n "$given" ] && [ -x "$given/$bin" ]; then
    cp "$given/$bin" "$root/usr/local/bin/$bin"
  else
    (cd cmd/digestline && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$root/usr/local/bin/$bin" "$pkg")
  fi
  {
    printf 'entrypoint: ['; local first=1 a; for a in "$@"; do [ $first = 1 ] || printf ', '; printf '"%s"' "$a"; first=0; done; printf ']\n'
    echo 'user: "65532:65532"'
    echo 'env: ["TMPDIR=/tmp"]'
    echo 'workingDir: /data'
    [ -n "$ports" ] && echo "ports: [$ports]"
    echo 'labels:'
    echo "  org.opencontainers.image.title: digestline-$name"
    echo "  org.opencontainers.image.description: \"$description\""
    echo '  org.opencontainers.image.source: https://github.com/digestline/digestline'
    echo "  org.opencontainers.image.revision: \"$revision\""
    echo "  org.opencontainers.image.version: \"$tag\""
    echo '  org.opencontainers.image.licenses: Apache-2.0'
  } >"$root/digestline.yaml"
  rm -rf "${out:?}/$name"
  "$digestline" build "$root" -o "$out/$name" -t "$tag" >"$work/$name.out"
  tar -C "$out/$name" -cf "$out/$name.tar" .
  echo "$name $(awk 'NR == 1' "$work/$name.out") $out/$name.tar"
}

image builder github.com/digestline/digestline/services/builder/cmd/builder '"8081/tcp", "9000/tcp"' "digestline builder: sources to OCI images" /usr/local/bin/builder
image pusher github.com/digestline/digestline/services/pusher/cmd/pusher '"8082/tcp"' "digestline pusher: images to registries, stage by stage" /usr/local/bin/pusher
image verifier github.com/digestline/digestline/services/verifier/cmd/verifier '"8083/tcp"' "digestline verifier: every byte proved" /usr/local/bin/verifier
image reporter github.com/digestline/digestline/services/reporter/cmd/reporter '"8080/tcp"' "digestline reporter: promotions, gates, API" /usr/local/bin/reporter
image notifier github.com/digestline/digestline/services/notifier/cmd/notifier '"8084/tcp"' "digestline notifier: chosen events to webhooks" /usr/local/bin/notifier
image digestline github.com/digestline/digestline/cmd/digestline '"5000/tcp"' "digestline CLI and standalone registry" /usr/local/bin/digestline
image nats github.com/nats-io/nats-server/v2 '"4222/tcp", "8222/tcp"' "nats-server with JetStream" /usr/local/bin/nats-server -js -sd /data/jetstream -m 8222
jaeger=$(scripts/peer.sh jaeger) # built once per machine (several minutes the first time)
image jaeger "$jaeger" '"4317/tcp", "4318/tcp", "16686/tcp", "13133/tcp"' "Jaeger v2 all-in-one (in memory), built from its Go module" /usr/local/bin/jaeger
