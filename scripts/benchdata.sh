#!/usr/bin/env bash
# Makes the builder benchmark inputs from real files — the installed Go
# toolchain (binaries, archives, sources) — so compression behaves as it does
# on real layers, and the inputs are the same on any machine with the same Go.
#   DIR/big    ~1 GB: four tarballs of GOROOT (one large layer's worth of files)
#   DIR/small  ~200 MB: 20,000 files of 10 KiB cut from GOROOT's sources, in 40 directories
# Usage: scripts/benchdata.sh DIR   (skips what exists)
set -euo pipefail
dir=${1:?usage: benchdata.sh DIR}
goroot=$(go env GOROOT)
mkdir -p "$dir"
if [ ! -d "$dir/big" ]; then
  rm -rf "$dir/big.tmp" && mkdir -p "$dir/big.tmp"
  for i in 1 2 3 4; do tar cf "$dir/big.tmp/goroot-$i.tar" -C "$goroot" .; done
  mv "$dir/big.tmp" "$dir/big"
fi
if [ ! -d "$dir/small" ]; then
  rm -rf "$dir/small.tmp" && mkdir -p "$dir/small.tmp"
  stream="$dir/small.stream"
  find "$goroot/src" -type f -name '*.go' | sort | xargs cat >"$stream.1"
  : >"$stream"
  while [ "$(stat -c %s "$stream")" -lt $((20000 * 10240)) ]; do cat "$stream.1" >>"$stream"; done
  # 40 directories of 500 files: one split per directory, no per-file process.
  for d in $(seq 0 39); do
    mkdir "$dir/small.tmp/d$(printf %02d "$d")"
    dd if="$stream" bs=10240 skip=$((d * 500)) count=500 status=none |
      (cd "$dir/small.tmp/d$(printf %02d "$d")" && split -b 10240 -d -a 3 --additional-suffix=.go - f)
  done
  rm -f "$stream" "$stream.1"
  mv "$dir/small.tmp" "$dir/small"
fi
