#!/usr/bin/env bash
# Erasure-coding benchmarks, side by side in one run:
#  1. codec: encode / decode GiB/s per core for 4+2 and 8+3, both codec crates (ecbench);
#  2. cluster: PUT/GET MiB/s of 64 MiB objects on an EC 4+2 container vs a 3-replica
#     container of the same 6-node local cluster, and bytes stored per byte written
#     (ecclusterbench).
# Arguments before `--` go to ecbench, after it to ecclusterbench, e.g.
#   bench/ec/run.sh --rounds 3 -- --objects 8 --concurrency 4
# The report (markdown) goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target-bench}"
cargo build --release -p cairn-bench-ec -p cairn-gateway >&2
codec_args=()
cluster_args=()
seen_sep=0
for a in "$@"; do
  if [ "$a" = "--" ]; then seen_sep=1; continue; fi
  if [ "$seen_sep" = 1 ]; then cluster_args+=("$a"); else codec_args+=("$a"); fi
done
echo "command: bench/ec/run.sh $*"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; rustc $(rustc --version | cut -d' ' -f2)"
echo
echo "## Codecs"
"$CARGO_TARGET_DIR/release/ecbench" "${codec_args[@]}"
echo
echo "## Cluster: EC 4+2 vs 3 replicas (6 node processes, TCP+TLS, one device each)"
"$CARGO_TARGET_DIR/release/ecclusterbench" --cairn-bin "$CARGO_TARGET_DIR/release/cairn" "${cluster_args[@]}"
