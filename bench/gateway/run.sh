#!/usr/bin/env bash
# S3 gateway benchmark, side by side in one run: Cairn's all-in-one cluster (`cairn up`: 3
# storage nodes, 3 replicas, S3 gateway, one process) against OpenStack Swift with s3api
# (3 replicas, 4 devices in 4 zones, /work/shared/peers/swift/setup.sh), both driven by the same
# load generator: by default the native one (bench/gateway/s3load, Rust, one keep-alive
# connection per concurrent client), or with LOADGEN=boto3 bench/gateway/loadgen.py (boto3, one
# process per concurrent client). Both take the same flags and write the same JSON.
#
#   bench/gateway/run.sh                  # build, start both, measure, print, stop both
#
# For every size and concurrency: a PUT phase (COUNT new objects), then a GET phase reading
# back what was written; each phase stops issuing requests after MAX_SECONDS. The report
# (markdown) goes to stdout, progress and the systems' logs to stderr / $OUT.
# Environment:
#   SIZES        SIZE:COUNT,...            default 4KiB:1500,1MiB:300,64MiB:32
#   CONCURRENCY  comma list                default 1,16
#   MAX_SECONDS  bound on each phase       default 15
#   BENCH_DIR    where data and logs go    default ${TMPDIR:-/tmp}
#   SWIFT_STORAGE dir (default: plain directories on the same filesystem as Cairn's data) | xfs
#   SWIFT_PROXY_PORT / SWIFT_PORT_BASE / MEMCACHE_PORT   default 18480 / 16400 / 11411
#   LOADGEN      native | boto3            default native (bench/gateway/s3load, built here)
#   CAIRN_UP_ARGS extra `cairn up` flags, e.g. --no-local-calls (node calls over TCP+TLS)
#   PYTHON       interpreter (compare.py; with boto3 for LOADGEN=boto3)  default python3
#   KEEP=1       keep $OUT (Cairn's data dir, logs, JSON) after the run, and Swift's work dir
#                (stop.sh reads KEEP too)
# The whole run is bounded: each loadgen invocation is killed after LOADGEN_TIMEOUT seconds
# (default 600), `cairn up` must be ready within 120 s, and everything started here is stopped
# on exit (Cairn by its PID, Swift with the peer's stop.sh, only if this script started it).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
HERE="$ROOT/bench/gateway"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target-bench}"
SIZES="${SIZES:-4KiB:1500,1MiB:300,64MiB:32}"
CONCURRENCY="${CONCURRENCY:-1,16}"
MAX_SECONDS="${MAX_SECONDS:-15}"
LOADGEN_TIMEOUT="${LOADGEN_TIMEOUT:-600}"
PY="${PYTHON:-python3}"
LOADGEN="${LOADGEN:-native}"
case "$LOADGEN" in
  native|boto3) ;;
  *) printf '[gateway-bench] LOADGEN must be native or boto3, not %s\n' "$LOADGEN" >&2; exit 2 ;;
esac
BENCH_DIR="${BENCH_DIR:-${TMPDIR:-/tmp}}"
SWIFT_DIR="$(cd "$ROOT/../shared/peers/swift" && pwd)"
OUT="$(mktemp -d "$BENCH_DIR/cairn-bench-gateway.XXXXXX")"
log() { printf '[gateway-bench] %s\n' "$*" >&2; }

CAIRN_PID=""
SWIFT_STARTED=0
# A private pointer dir and non-default ports, so another engineer's Swift anchor is untouched.
SWIFT_TMP="$BENCH_DIR/cairn-bench-gateway-swift"
mkdir -p "$SWIFT_TMP"
export SWIFT_PROXY_PORT="${SWIFT_PROXY_PORT:-18480}" SWIFT_PORT_BASE="${SWIFT_PORT_BASE:-16400}"
export MEMCACHE_PORT="${MEMCACHE_PORT:-11411}" SWIFT_LOG_LEVEL="${SWIFT_LOG_LEVEL:-WARNING}"
export SWIFT_STORAGE="${SWIFT_STORAGE:-dir}"

stop_cairn() {
  [ -n "$CAIRN_PID" ] || return 0
  if kill -0 "$CAIRN_PID" 2>/dev/null; then
    log "stopping cairn up (pid $CAIRN_PID)"
    kill -TERM "$CAIRN_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$CAIRN_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$CAIRN_PID" 2>/dev/null; then
      log "cairn up did not stop in 30 s; KILL $CAIRN_PID"
      kill -KILL "$CAIRN_PID" 2>/dev/null || true
    fi
  fi
  wait "$CAIRN_PID" 2>/dev/null || true
  CAIRN_PID=""
}
stop_swift() {
  [ "$SWIFT_STARTED" = 1 ] || return 0
  log "stopping Swift"
  TMPDIR="$SWIFT_TMP" bash "$SWIFT_DIR/stop.sh" >&2 || true
  SWIFT_STARTED=0
}
cleanup() {
  stop_cairn
  stop_swift
  if [ "${KEEP:-0}" = 1 ]; then log "kept $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build
log "building cairn (release)"
cargo build --release -p cairn-gateway >&2
CAIRN="$CARGO_TARGET_DIR/release/cairn"
if [ "$LOADGEN" = native ]; then
  log "building the native load generator cairn-s3load (release)"
  cargo build --release -p cairn-s3load >&2
  S3LOAD="$CARGO_TARGET_DIR/release/s3load"
fi

# ------------------------------------------------------------------ Swift
swift_env=""
if [ -f "$SWIFT_TMP/swift-anchor.current" ]; then
  w="$(cat "$SWIFT_TMP/swift-anchor.current")"
  if [ -f "$w/env.sh" ] && curl -fsS -m 2 "$(. "$w/env.sh"; echo "$S3_ENDPOINT")/healthcheck" >/dev/null 2>&1; then
    swift_env="$w/env.sh"
    log "Swift already up ($w); using it and leaving it running"
  fi
fi
if [ -z "$swift_env" ]; then
  log "starting Swift (peer setup.sh, storage=$SWIFT_STORAGE, proxy port $SWIFT_PROXY_PORT)"
  SWIFT_STARTED=1
  TMPDIR="$SWIFT_TMP" bash "$SWIFT_DIR/setup.sh" >&2
  swift_env="$(cat "$SWIFT_TMP/swift-anchor.current")/env.sh"
fi
# shellcheck disable=SC1090
SWIFT_ENDPOINT="$(. "$swift_env"; echo "$S3_ENDPOINT")"
SWIFT_AK="$(. "$swift_env"; echo "$S3_MAIN_ACCESS_KEY")"
SWIFT_SK="$(. "$swift_env"; echo "$S3_MAIN_SECRET_KEY")"
SWIFT_REGION="$(. "$swift_env"; echo "$S3_REGION")"
SWIFT_PIDS="$(. "$swift_env"; echo "$SWIFT_ANCHOR_DIR")/pids"

# ------------------------------------------------------------------ Cairn
log "starting cairn up in $OUT/cairn-data"
# shellcheck disable=SC2086 # CAIRN_UP_ARGS is a list of flags
"$CAIRN" up --data-dir "$OUT/cairn-data" --s3-port 0 --nbd-port 0 ${CAIRN_UP_ARGS:-} >"$OUT/cairn-up.out" 2>"$OUT/cairn-up.log" </dev/null &
CAIRN_PID=$!
for _ in $(seq 1 240); do
  grep -q '^cairn-up ready' "$OUT/cairn-up.log" 2>/dev/null && break
  kill -0 "$CAIRN_PID" 2>/dev/null || { cat "$OUT/cairn-up.log" >&2; log "cairn up exited"; exit 1; }
  sleep 0.5
done
grep -q '^cairn-up ready' "$OUT/cairn-up.log" || { tail -20 "$OUT/cairn-up.log" >&2; log "cairn up not ready in 120 s"; exit 1; }
read -r CAIRN_ENDPOINT CAIRN_REGION CAIRN_AK CAIRN_SK < <("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))["s3"]
print(s["endpoint"], s["region"], s["access_key"], s["secret_key"])' "$OUT/cairn-data/endpoints.json")
log "cairn up ready at $CAIRN_ENDPOINT (pid $CAIRN_PID)"

# ------------------------------------------------------------------ header
echo "command: bench/gateway/run.sh  (LOADGEN=$LOADGEN SIZES=$SIZES CONCURRENCY=$CONCURRENCY MAX_SECONDS=$MAX_SECONDS)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $BENCH_DIR on $(stat -f -c %T "$BENCH_DIR") ($(df --output=source "$BENCH_DIR" | tail -1)); Swift storage=$SWIFT_STORAGE"
echo "cairn: $("$CAIRN" --version), \`cairn up ${CAIRN_UP_ARGS:-}\` (3 nodes, 3 replicas, gateway in one process), $CAIRN_ENDPOINT"
echo "swift: python3-swift $(dpkg-query -W -f='${Version}' python3-swift 2>/dev/null), s3api+tempauth, proxy workers ${SWIFT_PROXY_WORKERS:-2}, 1 worker per storage server, 4 devices, 3 replicas, $SWIFT_ENDPOINT"
if [ "$LOADGEN" = native ]; then
  echo "client: native (LOADGEN=native): $S3LOAD (cairn-s3load, Rust, hyper HTTP/1.1, tokio with 2 worker threads, one keep-alive connection per concurrent client)"
else
  echo "client: boto3 (LOADGEN=boto3): $HERE/loadgen.py with $("$PY" -c 'import sys, boto3; print("Python %d.%d.%d" % sys.version_info[:3], "boto3", boto3.__version__)'), one process per concurrent client"
fi
echo

run_loadgen() {  # label endpoint region ak sk cpu-pids json
  local rc=0 cmd
  if [ "$LOADGEN" = native ]; then cmd=("$S3LOAD"); else cmd=("$PY" "$HERE/loadgen.py"); fi
  timeout -k 10 "$LOADGEN_TIMEOUT" "${cmd[@]}" --label "$1" --endpoint "$2" --region "$3" \
    --access-key "$4" --secret-key "$5" --cpu-pids "$6" --json-out "$7" \
    --sizes "$SIZES" --concurrency "$CONCURRENCY" --max-seconds "$MAX_SECONDS" >&2 || rc=$?
  [ "$rc" = 0 ] || log "loadgen ($LOADGEN) against $1 exited with $rc (1 = some requests failed; s3load: 2 = could not start)"
}

# Cairn first, then stop it so its background work (replicator, auditor) does not take CPU
# from Swift's run; Swift runs no background daemons here (no replicator/updater/auditor).
log "loadgen against Cairn"
t0=$SECONDS
run_loadgen cairn "$CAIRN_ENDPOINT" "$CAIRN_REGION" "$CAIRN_AK" "$CAIRN_SK" "$CAIRN_PID" "$OUT/cairn.json"
echo "Cairn loadgen: $((SECONDS - t0)) s"
if grep -Eiq ' (ERROR|WARN) ' "$OUT/cairn-up.log"; then
  echo "cairn up logged $(grep -Eic ' (ERROR|WARN) ' "$OUT/cairn-up.log") warning/error line(s); first ones:"
  { grep -Ei ' (ERROR|WARN) ' "$OUT/cairn-up.log" || true; } | sed -n '1,5s/^/    /p'
  echo "  by kind:"
  { grep -Ei ' (ERROR|WARN) ' "$OUT/cairn-up.log" || true; } \
    | sed -E 's/^[^ ]+ +//; s/addr=[0-9.:]+ //' | sort | uniq -c | sort -rn | sed -n '1,8s/^/    /p'
fi
stop_cairn

log "loadgen against Swift"
t0=$SECONDS
run_loadgen swift "$SWIFT_ENDPOINT" "$SWIFT_REGION" "$SWIFT_AK" "$SWIFT_SK" "$SWIFT_PIDS" "$OUT/swift.json"
echo "Swift loadgen: $((SECONDS - t0)) s"
stop_swift
echo

if [ -f "$OUT/cairn.json" ] && [ -f "$OUT/swift.json" ]; then
  "$PY" "$HERE/compare.py" "$OUT/cairn.json" "$OUT/swift.json"
else
  log "a loadgen run left no JSON; no table"
  exit 1
fi
