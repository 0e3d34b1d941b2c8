#!/usr/bin/env bash
# Erasure-coding codec benchmark: encode / decode GiB/s per core for 4+2 and 8+3, both codecs
# side by side. Extra arguments go to the binary (see --help), e.g.
#   bench/ec/run.sh --rounds 3 --cell-ms 200
# The report (markdown) goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target-bench}"
cargo build --release -p cairn-bench-ec >&2
echo "command: bench/ec/run.sh $*"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; rustc $(rustc --version | cut -d' ' -f2)"
echo
"$CARGO_TARGET_DIR/release/ecbench" "$@"
