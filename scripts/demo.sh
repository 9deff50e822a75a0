#!/usr/bin/env bash
# The golden path of seed 000 on embedded defaults: start `digestline dev`,
# build a static binary into a FROM-scratch image, ship it (build → push →
# verify → promote to dev), ship it again (a warm push uploads nothing),
# promote it to staging through the gates, show the records, then verify the
# pushed digest standalone.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/digestline
work=$(mktemp -d)
nats_port=${DEMO_NATS_PORT:-14222}
registry=${DEMO_REGISTRY:-127.0.0.1:15000}
api=${DEMO_API:-127.0.0.1:18080}
cleanup() { [ -n "${dev_pid:-}" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== building the payload: a static Go binary in an empty root"
mkdir -p "$work/app"
CGO_ENABLED=0 go build -trimpath -o "$work/app/hello" ./examples/hello

echo "== starting digestline dev (embedded NATS, registry, four services, API)"
"$bin" dev --data "$work/data" --nats-port "$nats_port" --registry-addr "$registry" --api-addr "$api" --log-level warn >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
cat "$work/dev.log"

echo; echo "== ship (cold): build, push stage by stage, verify every byte, promote"
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --nats "nats://127.0.0.1:$nats_port"

echo; echo "== ship again (warm): same digest, nothing uploaded"
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --nats "nats://127.0.0.1:$nats_port"

digest=$(curl -fsS "http://$api/v1/promotions" | sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p' | head -1)
echo; echo "== promote to prod before staging: the previous-environment gate refuses"
"$bin" promote "$registry/demo/hello@$digest" --to prod --api "http://$api" --token-file "$work/data/api-token" || true

echo; echo "== promote to staging: gates, tag move, re-verify, record, attestation"
"$bin" promote "$registry/demo/hello@$digest" --to staging --api "http://$api" --token-file "$work/data/api-token"

echo; echo "== records, and the history"
"$bin" records --api "http://$api"
"$bin" records --history --api "http://$api"

echo; echo "== standalone verify of $registry/demo/hello@$digest"
"$bin" verify "$registry/demo/hello@$digest"
