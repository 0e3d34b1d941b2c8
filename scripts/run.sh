#!/usr/bin/env bash
# Cairn's run command. The all-in-one cluster (`cairn up`) does not exist yet; until it does,
# this builds ring-tool and walks through the life of a ring in ./data/ring-demo: create it,
# add devices with swift-ring-builder's syntax, rebalance, look a name up, grow it, and
# simulate a 1,000-device ring at part power 20.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p ring-tool
rt="$CARGO_TARGET_DIR/release/ring-tool"
dir="${1:-data/ring-demo}"
mkdir -p "$dir"
b="$dir/object.builder"

step() { printf '\n$ %s\n' "$*"; "$@" || [ $? -eq 1 ]; }   # exit 1 is ring-tool's "warning"
step "$rt" "$b" create 10 3 1 --force
devices=()
for z in 1 2 3; do for n in 1 2; do for d in sda sdb; do
  devices+=("r1z$z-127.0.$z.$n:6200/$d" 100)
done; done; done
step "$rt" "$b" add "${devices[@]}"
step "$rt" "$b" rebalance
step "$rt" "$b" show
step "$rt" "$dir/object.ring" lookup /AUTH_demo/photos/cat.jpg --hash-prefix demo-prefix --hash-suffix demo-suffix
step "$rt" "$b" add r1z1-127.0.1.3:6200/sda 100 r1z2-127.0.2.3:6200/sda 100 r1z3-127.0.3.3:6200/sda 100
step "$rt" "$b" pretend_min_part_hours_passed
step "$rt" "$b" rebalance
step "$rt" "$b" dispersion
step "$rt" simulate --regions 2 --zones 5 --nodes 25 --devices 4 --part-power 20 --grow 10 --lookups 1000000
printf '\nBuilder and ring are in %s.\n' "$dir"
