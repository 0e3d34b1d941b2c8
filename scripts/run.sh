#!/usr/bin/env bash
# Cairn's run command. Until the all-in-one `cairn up` exists (S3/Swift gateway issue), this
# starts a local three-node storage cluster in ./data/cluster (or $1): a cluster CA, node
# certificates, a ring built with ring-tool, and three `cairn node` processes on 127.0.0.1.
# It prints the endpoints and how to store and fetch objects; Ctrl-C stops the nodes. Running
# it again reuses the same data, so objects survive a restart.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
ensure_packages
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo build --release --locked -p cairn-gateway -p ring-tool
bin="$CARGO_TARGET_DIR/release"
dir="${1:-data/cluster}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

if [ ! -f "$dir/object.ring" ]; then
  "$bin/ring-tool" "$dir/object.builder" create 10 3 1
  "$bin/ring-tool" "$dir/object.builder" add \
    r1z1-127.0.0.1:6201/d1 100 r1z2-127.0.0.1:6202/d1 100 r1z3-127.0.0.1:6203/d1 100
  "$bin/ring-tool" "$dir/object.builder" rebalance || [ $? -eq 1 ]
fi
[ -f "$dir/ca/ca.pem" ] || "$bin/cairn" ca init --dir "$dir/ca"
if [ ! -f "$dir/hash-secret" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/hash-secret")
fi
secret="$(cat "$dir/hash-secret")"

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait; }
trap stop EXIT INT TERM
for n in 1 2 3; do
  nd="$dir/node$n"
  [ -f "$nd/node-$n.pem" ] || "$bin/cairn" ca issue --ca-dir "$dir/ca" --name "node-$n" --ip 127.0.0.1 --out "$nd"
  cat > "$nd/node.toml" <<TOML
node_id = $n
listen = "127.0.0.1:620$n"
metrics_listen = "127.0.0.1:910$n"
[cluster]
hash_prefix = "$secret"
hash_suffix = "cairn"
object_ring = "../object.ring"
[tls]
ca_cert = "../ca/ca.pem"
cert = "node-$n.pem"
key = "node-$n.key"
[[device]]
name = "d1"
path = "d1"
TOML
  "$bin/cairn" node --config "$nd/node.toml" 2>>"$nd/node.log" &
  pids+=($!)
done
for n in 1 2 3; do
  for _ in $(seq 100); do grep -q "cairn-node ready" "$dir/node$n/node.log" 2>/dev/null && break; sleep 0.1; done
done

cat <<TXT

Cairn storage cluster (3 nodes, 3 replicas) in $dir
  node RPC (TCP+TLS, cluster certificates only): 127.0.0.1:6201 127.0.0.1:6202 127.0.0.1:6203
  metrics: http://127.0.0.1:9101/metrics http://127.0.0.1:9102/metrics http://127.0.0.1:9103/metrics
  logs:    $dir/node{1,2,3}/node.log

Try:
  c="$bin/cairn object --config $dir/node1/node.toml"
  \$c put AUTH_demo/photos/cat.jpg /etc/os-release
  \$c ls AUTH_demo/photos
  \$c get AUTH_demo/photos/cat.jpg

Ctrl-C stops the nodes.
TXT
wait
