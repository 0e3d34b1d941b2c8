#!/usr/bin/env bash
# Object PUT/GET benchmark, everything side by side in one run: RocksEngine vs the filesystem,
# a 3-node Cairn cluster, and OpenStack Swift (started here with /work/shared/peers/swift/setup.sh
# and stopped again on exit). Extra arguments go to the benchmark binary (see --help), e.g.
#   bench/objects/run.sh --small-ops 1000 --large-ops 100
# Environment:
#   RUNS=N            run the benchmark N times in a row (default 1; the VM drifts ±25%)
#   SWIFT=0           no Swift rows (do not start Swift)
#   SWIFT_STORAGE     dir (default: plain directories on the same filesystem as Cairn's data)
#                     or xfs (a loopback XFS image, as Swift's SAIO)
#   BENCH_DIR         where data goes (default ${TMPDIR:-/tmp})
# The report (markdown) goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target-bench}"
RUNS="${RUNS:-1}"
BENCH_DIR="${BENCH_DIR:-${TMPDIR:-/tmp}}"
SWIFT_DIR="$(dirname "$0")/../../../shared/peers/swift"

cargo build --release -p cairn-gateway -p cairn-bench-objects >&2
BIN="$CARGO_TARGET_DIR/release"

swift_args=()
if [ "${SWIFT:-1}" != 0 ]; then
  # A private pointer dir and non-default ports, so another engineer's Swift anchor is untouched.
  export TMPDIR="$BENCH_DIR/cairn-bench-objects-swift"
  mkdir -p "$TMPDIR"
  export SWIFT_PROXY_PORT="${SWIFT_PROXY_PORT:-18080}" SWIFT_PORT_BASE="${SWIFT_PORT_BASE:-16200}"
  export MEMCACHE_PORT="${MEMCACHE_PORT:-11311}" SWIFT_LOG_LEVEL="${SWIFT_LOG_LEVEL:-WARNING}"
  export SWIFT_STORAGE="${SWIFT_STORAGE:-dir}"
  trap 'bash "$SWIFT_DIR/stop.sh" >&2 || true' EXIT
  if bash "$SWIFT_DIR/setup.sh" >&2; then
    swift_args=(--swift-url "http://127.0.0.1:$SWIFT_PROXY_PORT")
    echo "swift: python3-swift $(dpkg-query -W -f='${Version}' python3-swift), storage=$SWIFT_STORAGE, proxy workers ${SWIFT_PROXY_WORKERS:-2}, 1 worker per storage server"
  else
    echo "swift: setup.sh failed (see stderr); no Swift rows" >&2
  fi
fi

echo "command: bench/objects/run.sh $*  (RUNS=$RUNS)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); filesystem of $BENCH_DIR: $(stat -f -c %T "$BENCH_DIR") on $(df --output=source "$BENCH_DIR" | tail -1)"
for run in $(seq 1 "$RUNS"); do
  echo
  echo "## Run $run of $RUNS"
  echo
  "$BIN/objbench" --dir "$BENCH_DIR" --cairn-bin "$BIN/cairn" "${swift_args[@]}" "$@"
done
