#!/usr/bin/env bash
# Takes a screenshot of the reporter's page in headless Chromium (installed
# from Debian when missing): digestline dev, one run that ends promoted and
# one that fails at the push's auth stage, then docs/page.png.
# Usage: scripts/screenshot.sh [OUT.png]  (make screenshot)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/page.png}
bin=./bin/digestline
work=$(mktemp -d)
nats_port=${DEMO_NATS_PORT:-14222} registry=${DEMO_REGISTRY:-127.0.0.1:15000} api=${DEMO_API:-127.0.0.1:18080}
cleanup() { [ -n "${dev_pid:-}" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2

"$bin" dev --data "$work/data" --nats-port "$nats_port" --registry-addr "$registry" --api-addr "$api" --log-level error >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$work/app"
CGO_ENABLED=0 go build -trimpath -o "$work/app/hello" ./examples/hello
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --nats "nats://127.0.0.1:$nats_port" >/dev/null
# A registry that is not there: the push fails at auth, after its retries.
"$bin" ship "$work/app" "127.0.0.1:1/demo/hello:lab" --entrypoint /hello --nats "nats://127.0.0.1:$nats_port" >/dev/null 2>&1 || true
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,820 --screenshot="$PWD/$out" "http://$api/" 2>/dev/null
echo "wrote $out"
