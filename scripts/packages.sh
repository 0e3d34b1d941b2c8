# Sourced by scripts/test.sh and scripts/up.sh: installs the Debian packages Cairn builds and
# runs with, if missing. Needs root (or passwordless apt) on a fresh machine.
#
# gcc: C code in zstd and ring; librocksdb-dev: Debian's RocksDB, linked instead of building it
# from source (~17 min here; see .cargo/config.toml); libclang-dev: the rocksdb crate's bindgen;
# util-linux: mount/umount for the full-disk fault test's tmpfs; curl: scripts reading /metrics;
# etcd-server: the real etcd the control-plane tests start; protobuf-compiler: protoc for the
# etcd-client crate's build script. The clients the gateway tests drive, unchanged: awscli,
# s3cmd, rclone, python3-swiftclient (the `swift` CLI), python3-boto3 (Debian's older boto3)
# and python3-venv for a current boto3 from PyPI (ensure_client_venv).
APT_PACKAGES=(gcc librocksdb-dev libclang-dev util-linux curl etcd-server protobuf-compiler
  awscli s3cmd rclone python3-swiftclient python3-boto3 python3-venv
  qemu-utils libnbd-bin nbdkit fio)
# The QEMU guest boot test (tests/clients/guest_boot.rs): qemu-system-x86 runs the guest (TCG);
# busybox-static, cpio, syslinux(-common), mtools, dosfstools build its boot disk (guest-image.sh).
GUEST_APT_PACKAGES=(qemu-system-x86 busybox-static cpio syslinux syslinux-common mtools dosfstools)
APT_PACKAGES+=("${GUEST_APT_PACKAGES[@]}")

# A current boto3 (>= 1.36 sends aws-chunked bodies with checksum trailers by default), in a
# venv outside the clone; the gateway tests use it next to Debian's boto3.
CAIRN_VENV="${CAIRN_VENV:-$HOME/.cache/cairn-venv}"
ensure_client_venv() {
  if ! "$CAIRN_VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    echo "==> creating $CAIRN_VENV with a current boto3 from PyPI"
    /usr/bin/python3 -m venv "$CAIRN_VENV"
    "$CAIRN_VENV/bin/pip" install -q --upgrade 'boto3>=1.36'
  fi
}

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
