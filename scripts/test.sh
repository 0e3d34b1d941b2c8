#!/usr/bin/env bash
# Cairn's whole test suite, from a fresh Debian bookworm machine: installs what the suite needs,
# then checks formatting and lints and runs every test. Exit status is the suite's.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds go outside the clone so repeated runs (and CI's fresh clones) are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# System packages the suite needs: a C compiler for the zstd crate, which builds libzstd from
# source. Later crates add theirs here (librocksdb-dev, qemu, ...).
APT_PACKAGES=(gcc)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast
