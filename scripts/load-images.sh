#!/usr/bin/env bash
# Loads the images scripts/images.sh built into the container engine and
# names them localhost/digestline-<name>:<tag>, as docker-compose.yml and
# deploy/k8s expect. CONTAINER_CLI picks the engine (podman by default; docker
# 25+ loads OCI archives too).
# Usage: scripts/load-images.sh [DIR]  (default .digestline/images)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.digestline/images}
cli=${CONTAINER_CLI:-podman}
tag=${IMAGE_TAG:-dev}
for tarball in "$dir"/*.tar; do
  name=$(basename "$tarball" .tar)
  if [ "$cli" = podman ]; then
    id=$(podman pull -q "oci-archive:$tarball" | tail -1)
  else
    id=$("$cli" load -q -i "$tarball" | awk '{print $NF}' | tail -1)
  fi
  "$cli" tag "$id" "localhost/digestline-$name:$tag"
  echo "localhost/digestline-$name:$tag"
done
