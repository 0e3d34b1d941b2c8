# Sourced by scripts/test.sh and scripts/run.sh: installs the Debian packages Cairn builds and
# runs with, if missing. Needs root (or passwordless apt) on a fresh machine.
#
# gcc: C code in zstd and ring; librocksdb-dev: Debian's RocksDB, linked instead of building it
# from source (~17 min here; see .cargo/config.toml); libclang-dev: the rocksdb crate's bindgen;
# util-linux: mount/umount for the full-disk fault test's tmpfs; curl: scripts reading /metrics;
# etcd-server: the real etcd the control-plane tests start; protobuf-compiler: protoc for the
# etcd-client crate's build script.
APT_PACKAGES=(gcc librocksdb-dev libclang-dev util-linux curl etcd-server protobuf-compiler)

ensure_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}
