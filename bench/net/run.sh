#!/usr/bin/env bash
# QUIC vs TCP+TLS on loopback, in one run. Extra arguments go to the benchmark
# (--gib N, --rpcs N, --threads N). Results go to stdout; copy them into RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target-net}"
cargo build --release -p cairn-net --example netbench
echo "kernel: $(uname -r); cpus: $(nproc); rmem_max: $(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo ?); wmem_max: $(cat /proc/sys/net/core/wmem_max 2>/dev/null || echo ?)"
"$CARGO_TARGET_DIR/release/examples/netbench" "$@"
