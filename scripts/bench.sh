#!/usr/bin/env bash
# Runs digestline's benchmarks and writes their results table into
# docs/benchmarks.md. Usage: scripts/bench.sh  (or make bench)
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/benchmarks.md
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

run() { go test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-20x}" -count 1 "$@" 2>/dev/null | grep '^Benchmark' >>"$raw"; }
run ./pkg/oci/ ./pkg/registry/ ./cmd/digestline/

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores${cpu:+, $cpu}, $(go version | cut -d' ' -f3)."
  echo "Each row is \`go test -bench\` with \`-benchtime ${BENCHTIME:-20x}\`; rerun the command to reproduce."
  echo
  echo "| benchmark | what it measures | time/op | MB/s | extra | B/op | allocs/op |"
  echo "|---|---|---|---|---|---|---|"
  awk '
    BEGIN {
      what["BenchmarkBuildImage"]  = "build a 64 MiB tree (16 incompressible files) into one gzip layer"
      what["BenchmarkPush/cold"]   = "push a small image to an empty in-memory registry over HTTP"
      what["BenchmarkPush/warm"]   = "push it again: the tag already points at it (3 auth requests, then 1 HEAD)"
      what["BenchmarkShip"]        = "one whole run of a tiny image, build.requested → promoted, in-process"
    }
    {
      name = $1; sub(/-[0-9]+$/, "", name)
      t = ""; mbs = "–"; extra = "–"; bop = "–"; allocs = "–"
      for (i = 3; i < NF; i += 2) {
        v = $i; u = $(i+1)
        if (u == "ns/op") { t = (v >= 1e6) ? sprintf("%.1f ms", v/1e6) : sprintf("%.0f µs", v/1e3) }
        else if (u == "MB/s") mbs = v
        else if (u == "B/op") bop = v
        else if (u == "allocs/op") allocs = v
        else extra = v " " u
      }
      printf "| `%s` | %s | %s | %s | %s | %s | %s |\n", name, what[name], t, mbs, extra, bop, allocs
    }' "$raw"
  echo
  echo "Peer comparisons (crane, regctl, skopeo, oras on the same registry and image) are added by the builder,"
  echo "pusher and verifier issues; until then this table measures digestline alone."
} >"$out"
cat "$out"
