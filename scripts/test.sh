#!/usr/bin/env bash
# Cairn's whole test suite, from a fresh Debian bookworm machine: installs what the suite needs,
# then checks formatting and lints and runs every test. Exit status is the suite's.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds go outside the clone so repeated runs (and CI's fresh clones) are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

source scripts/packages.sh
ensure_packages
ensure_client_venv
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

echo "==> cargo fmt --check"
cargo fmt --all -- --check
# --all-features compiles the engine's crash-window failpoints in, so its crash test runs.
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The multi-process tests start the `cairn` binary, which test builds do not produce.
echo "==> cargo build --bins"
cargo build --workspace --bins --all-features --locked
# The suite itself peaks at ~3 GiB under $TMPDIR (clusters with 3 replicas, 1 GiB nbdcopy
# images); on a fuller disk tests fail with ENOSPC / "disk full", so say why up front.
tmp_free_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}')
if ((tmp_free_kib < 6 * 1024 * 1024)); then
  echo "WARNING: only $((tmp_free_kib / 1024)) MiB free under ${TMPDIR:-/tmp}; the tests need ~4 GiB and will fail with 'disk full' below that" >&2
fi
echo "==> cargo nextest"
cargo nextest run --workspace --all-features --locked --no-fail-fast
