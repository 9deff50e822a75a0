#!/usr/bin/env bash
# The golden path of seed 000 on embedded defaults: start `digestline dev`
# with a signing key and a policy, build a static binary into a FROM-scratch
# image, ship it (build and sign → push → verify every byte and signature →
# promote to dev), ship it again (a warm push uploads nothing), promote it
# to staging through the gates, see prod's policy refuse it (no approval
# yet), approve it and promote it to prod — which lives in another
# registry: the digest is copied there with its signatures, provenance and
# SBOMs and proven before prod's tag moves — then verify the promoted digest
# there standalone, with digestline and with cosign. Then day two: a freeze
# refuses a promotion, a rollback moves dev back and pins it, and the pin
# refuses the pipeline until it is lifted. DEMO_KEEP=1 keeps the stack
# running at the end (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/digestline
work=$(mktemp -d)
nats_port=${DEMO_NATS_PORT:-14222}
registry=${DEMO_REGISTRY:-127.0.0.1:15000}
api=${DEMO_API:-127.0.0.1:18080}
prod_registry=${DEMO_PROD_REGISTRY:-127.0.0.1:15001}
cleanup() {
  for pid in ${dev_pid:-} ${prod_pid:-}; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
# The demo's stack is found by its own context, not the user's current one.
export DIGESTLINE_CONTEXT=$work/context.json

# during MESSAGE COMMAND...: runs COMMAND, saying every 15 s that it still
# does (a cold Go build is minutes of silence otherwise).
during() {
  local what=$1 start=$SECONDS rc=0 ticker
  shift
  (while sleep 15; do echo "   … still $what ($((SECONDS - start)) s)" >&2; done) &
  ticker=$!
  "$@" || rc=$?
  kill "$ticker" 2>/dev/null
  wait "$ticker" 2>/dev/null || true
  return "$rc"
}

echo "== compiling digestline and its four services into bin/ (the first time Go compiles every dependency: minutes on 2 cores; then seconds)"
during compiling make -s build
echo "== cosign, to check digestline's signatures with the ecosystem's own tool (built once per machine: several minutes the first time)"
cosign=$(during "building cosign" scripts/peer.sh cosign)

echo "== building the payload: a static Go binary in an empty root"
mkdir -p "$work/app"
CGO_ENABLED=0 go build -trimpath -o "$work/app/hello" ./examples/hello

echo "== a signing key, and prod's policy (docs/policy.md): prod lives in another registry (docs/promotion.md)"
"$bin" keygen --out "$work"
cat >"$work/policy.yaml" <<YAML
environments:
  prod:
    place: $prod_registry/prod/{path}
    rules:
      - name: signed
        expr: signatures.size() > 0
      - name: provenance
        expr: has(provenance.buildDefinition) && provenance.runDetails.builder.id == "https://github.com/digestline/digestline/services/builder"
      - name: sbom
        expr: referrers.exists(r, r.artifactType == "application/spdx+json")
      - name: approved
        expr: approvals.size() >= 1
YAML
cat "$work/policy.yaml"

echo; echo "== starting prod's registry at $prod_registry (another registry: digestline registry)"
"$bin" registry --addr "$prod_registry" --data "$work/prod-registry" --log-level warn >"$work/prod-registry.log" 2>&1 &
prod_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$prod_registry/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

echo; echo "== starting digestline dev (embedded NATS, registry, four services, API), signing with that key"
DIGESTLINE_SIGNING_KEY="$work/digestline.key" "$bin" dev --data "$work/data" --nats-port "$nats_port" --registry-addr "$registry" \
  --api-addr "$api" --policy "$work/policy.yaml" --log-level warn >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
cat "$work/dev.log"

echo; echo "== ship (cold): build, sign and attest, push stage by stage, verify every byte and signature, promote"
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --sbom

echo; echo "== ship again (warm): same digest, nothing uploaded"
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --sbom

digest=$(curl -fsS "http://$api/v1/promotions" | sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p' | head -1)
echo; echo "== promote to prod before staging: the previous-environment gate refuses"
"$bin" promote "$registry/demo/hello@$digest" --to prod || true

echo; echo "== promote to staging: gates, tag move, re-verify, record, signed verification summary"
"$bin" promote "$registry/demo/hello@$digest" --to staging

echo; echo "== prod's policy, clause by clause (dry run: nothing is promoted)"
"$bin" promote "$registry/demo/hello@$digest" --to prod --dry-run || true

echo; echo "== promote to prod: the policy refuses it, naming the clause"
"$bin" promote "$registry/demo/hello@$digest" --to prod || true

echo; echo "== approve it for prod, then promote it: copied to $prod_registry with everything attached, proven there, then tagged"
"$bin" approve "$registry/demo/hello@$digest" --to prod
"$bin" promote "$registry/demo/hello@$digest" --to prod

echo; echo "== day two (docs/day-two.md): v2 reaches dev"
echo v2 >"$work/app/VERSION"
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --sbom
v2=$(curl -fsS "http://$api/v1/promotions/dev/$registry/demo/hello" | sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p' | head -1)

echo; echo "== staging is frozen for the holidays: a promotion is refused, naming the freeze and when it ends"
"$bin" freeze staging --until 72h --reason "holiday freeze"
"$bin" promote "$registry/demo/hello@$v2" --to staging || true
"$bin" unfreeze staging

echo; echo "== v2 fails in dev: roll dev back to the digest before it, which pins dev there"
"$bin" rollback dev "$registry/demo/hello" --reason "v2 fails its smoke test"

echo; echo "== the pin keeps the pipeline out of dev (v2 shipped again is refused) until someone unpins it"
"$bin" ship "$work/app" "$registry/demo/hello:lab" --entrypoint /hello --sbom || true
"$bin" unpin dev "$registry/demo/hello"

echo; echo "== records, and the history"
"$bin" records
"$bin" records --history

prod="$prod_registry/prod/demo/hello@$digest"
echo; echo "== standalone verify of prod's $prod: every byte, every signature and attestation"
"$bin" verify "$prod" --key "$work/digestline.pub"
"$bin" discover "$prod"

echo; echo "== cosign verify of the promoted digest (the ecosystem's tool; offline: no transparency log here)"
echo '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}' >"$work/trusted_root.json"
HOME=$work "$cosign" verify --key "$work/digestline.pub" --insecure-ignore-tlog=true --experimental-oci11 \
  --allow-http-registry --trusted-root "$work/trusted_root.json" "$prod" 2>&1 | grep -v '^\[{' || exit 1

echo
echo "== the pipeline ran end to end. Next, try:"
echo "   1. the page: every run, environment and digest, one click each — http://$api/ (DEMO_KEEP=1 make demo keeps it up)"
echo "   2. your own directory: digestline dev, then digestline ship DIR 127.0.0.1:5000/mine:1 (README: \"Ship your own directory\")"
echo "   3. a run's stages, failure and trace: digestline run show RUNID (docs/operations.md)"
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo
  echo "The stack keeps running: page http://$api/, registry $registry, prod's registry $prod_registry."
  echo "In another shell: export DIGESTLINE_CONTEXT=$DIGESTLINE_CONTEXT, then digestline records, run show, promote… Ctrl-C stops it."
  wait "$dev_pid"
fi
