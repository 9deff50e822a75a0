#!/usr/bin/env bash
# Screenshots of the reporter's pages in headless Chromium (installed from
# Debian when missing), at a 1280 px laptop and a 390 px phone: digestline
# dev, one run that ends promoted, one that fails at the push's auth stage
# (a registry that is not there) and one promotion the gates reject; then
# the front page and the failed run's page at both widths, into docs/.
# Usage: scripts/screenshot.sh   (make screenshot)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/digestline
work=$(mktemp -d)
nats_port=${DEMO_NATS_PORT:-14222} registry=${DEMO_REGISTRY:-127.0.0.1:15000} api=${DEMO_API:-127.0.0.1:18080}
cleanup() { [ -n "${dev_pid:-}" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2
export DIGESTLINE_CONTEXT=$work/context.json # this stack's context, not the user's

"$bin" dev --data "$work/data" --nats-port "$nats_port" --registry-addr "$registry" --api-addr "$api" --log-level error \
  --trace-url "http://127.0.0.1:16686/trace/{traceId}" >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$work/app"
CGO_ENABLED=0 go build -trimpath -o "$work/app/hello" ./examples/hello
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello >"$work/ok.txt"
ref=$(grep -o "$registry/demo/hello@sha256:[0-9a-f]*" "$work/ok.txt" | head -1)
"$bin" ship "$work/app" "127.0.0.1:1/demo/hello:lab" --entrypoint /hello >"$work/failed.txt" 2>&1 || true
"$bin" promote "$ref" --to prod >/dev/null 2>&1 || true # skips staging: rejected
failed=$(grep -o 'run [0-9a-f-]*' "$work/failed.txt" | head -1 | cut -d' ' -f2)
shot() { # WIDTH HEIGHT PATH OUT
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$1,$2" --screenshot="$PWD/docs/$4" "http://$api$3" 2>/dev/null
  echo "wrote docs/$4"
}
shot 1280 900 / page-1280.png
shot 390 1600 / page-390.png
shot 1280 1100 "/runs/$failed" run-1280.png
shot 390 2200 "/runs/$failed" run-390.png
