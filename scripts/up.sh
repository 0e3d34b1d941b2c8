#!/usr/bin/env bash
# Cairn's run command: builds the `cairn` binary and runs `cairn up`, the all-in-one local
# cluster (three storage nodes, the control plane and the S3/Swift gateway in one process,
# data in ./cairn-data unless --data-dir). It prints the S3 and Swift endpoints and
# credentials and writes them to <data-dir>/endpoints.json; Ctrl-C stops it; running it again
# reuses the data. Extra arguments go to `cairn up` (e.g. --s3-port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
ensure_packages
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-gateway
exec "$CARGO_TARGET_DIR/release/cairn" up "$@"
