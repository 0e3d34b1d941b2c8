#!/usr/bin/env bash
# scripts/guest-image.sh OUT_DIR: builds OUT_DIR/guest.raw, a tiny disk that boots by itself
# through the BIOS, from Debian packages only. The whole disk is one FAT filesystem (no
# partition table) with syslinux in its boot sector, and on it Debian's kernel, an initramfs
# (busybox-static plus the virtio/FAT modules the kernel has as =m) and syslinux.cfg.
#
# The guest's /init mounts the disk (/dev/vda, virtio-blk), reads /token.txt if the caller put
# one there (e.g. `mcopy -i guest.raw token ::/token.txt`), writes /hello.txt with
# "hello from the guest: TOKEN", syncs, unmounts, prints "CAIRN-GUEST-DONE TOKEN" on the serial
# console and powers off. On any failure it prints "CAIRN-GUEST-FAILED why" and powers off.
#
# Cached: downloads go to ~/.cache/cairn-guest (CAIRN_GUEST_CACHE); if OUT_DIR/guest.raw was
# built from the same script and package versions (OUT_DIR/guest.stamp) nothing is done. Prints
# the image's path. Used by tests/clients/guest_boot.rs; by hand, for example:
#   scripts/guest-image.sh /tmp/g && qemu-system-x86_64 -accel tcg -m 256 -nographic \
#     -no-reboot -nic none -drive file=/tmp/g/guest.raw,format=raw,if=virtio
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
OUT_DIR=$1
HERE="$(cd "$(dirname "$0")" && pwd)"
SELF="$HERE/$(basename "$0")"
CACHE="${CAIRN_GUEST_CACHE:-$HOME/.cache/cairn-guest}"
DISK_MIB=32
export MTOOLS_SKIP_CHECK=1

# The tools this needs (the GUEST_APT_PACKAGES of packages.sh), installed if missing.
source "$HERE/packages.sh"
APT_PACKAGES=("${GUEST_APT_PACKAGES[@]}")
ensure_packages >&2

mkdir -p "$OUT_DIR" "$CACHE/debs"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
exec 9>"$OUT_DIR/.lock"
flock 9

# The kernel package the linux-image-amd64 metapackage currently depends on.
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}
KPKG="$(kernel_pkg)"
if [[ -z "$KPKG" ]]; then
  apt-get update -qq >&2
  KPKG="$(kernel_pkg)"
fi
[[ -n "$KPKG" ]] || { echo "no linux-image-*-amd64 behind linux-image-amd64" >&2; exit 1; }
KVER="${KPKG#linux-image-}"
KDEB_VER="$(apt-cache policy "$KPKG" | awk '$1 == "Candidate:" { print $2 }')"

pkg_version() { dpkg-query -W -f='${Version}' "$1"; }
STAMP="$(
  {
    sha256sum "$SELF" | cut -d' ' -f1
    echo "$KPKG $KDEB_VER"
    echo "busybox-static $(pkg_version busybox-static)"
    echo "syslinux $(pkg_version syslinux) $(pkg_version syslinux-common)"
    echo "disk $DISK_MIB"
  } | sha256sum | cut -d' ' -f1
)"
if [[ -f "$OUT_DIR/guest.raw" && "$(cat "$OUT_DIR/guest.stamp" 2>/dev/null)" == "$STAMP" ]]; then
  echo "$OUT_DIR/guest.raw"
  exit 0
fi

# Kernel: downloaded (not installed), and only the files needed taken out of the package.
KDIR="$CACHE/kernel/$KVER-$KDEB_VER"
if [[ ! -f "$KDIR/.done" ]]; then
  deb="$(ls "$CACHE/debs/${KPKG}_"*.deb 2>/dev/null | grep -F "_${KDEB_VER//:/%3a}_" || true)"
  if [[ -z "$deb" ]]; then
    echo "==> downloading $KPKG $KDEB_VER" >&2
    rm -f "$CACHE/debs/"linux-image-*.deb # an older kernel's
    (cd "$CACHE/debs" && apt-get download -q "$KPKG=$KDEB_VER" >&2)
    deb="$(ls "$CACHE/debs/${KPKG}_"*.deb)"
  fi
  rm -rf "$CACHE/kernel" # older kernels' files too
  mkdir -p "$KDIR"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$KDIR" --wildcards \
    "./boot/vmlinuz-$KVER" "./boot/config-$KVER" \
    "./lib/modules/$KVER/kernel/drivers/virtio/*" \
    "./lib/modules/$KVER/kernel/drivers/block/virtio_blk.ko" \
    "./lib/modules/$KVER/kernel/fs/fat/*" \
    "./lib/modules/$KVER/kernel/fs/nls/*"
  touch "$KDIR/.done"
fi

# Drivers the guest needs that this kernel builds as modules (=m), in load order with their
# dependencies (read from each module's .modinfo, no kmod needed) ahead of them.
MODS="$KDIR/lib/modules/$KVER/kernel"
config_of() { sed -n "s/^$1=//p" "$KDIR/boot/config-$KVER"; }
declare -A LOADED=()
ORDER=()
add_module() {
  local name=$1 file dep deps
  [[ -n "${LOADED[$name]:-}" ]] && return 0
  file="$(find "$MODS" -name "$name.ko" | head -n1)"
  [[ -n "$file" ]] || { echo "module $name not in $KPKG" >&2; exit 1; }
  LOADED[$name]=1
  deps="$(tr '\0' '\n' <"$file" | sed -n 's/^depends=//p' | head -n1)"
  for dep in ${deps//,/ }; do add_module "$dep"; done
  ORDER+=("$name")
}
want() { # want CONFIG_X module: the module if the option is =m; nothing if built in
  case "$(config_of "$1")" in
    m) add_module "$2" ;;
    y) ;;
    *) echo "$KPKG has no $1" >&2; exit 1 ;;
  esac
}
want CONFIG_VIRTIO virtio
want CONFIG_VIRTIO_PCI virtio_pci
want CONFIG_VIRTIO_BLK virtio_blk
want CONFIG_VFAT_FS vfat
want CONFIG_NLS_CODEPAGE_"$(config_of CONFIG_FAT_DEFAULT_CODEPAGE)" nls_cp"$(config_of CONFIG_FAT_DEFAULT_CODEPAGE)"
iocharset="$(config_of CONFIG_FAT_DEFAULT_IOCHARSET | tr -d '"')"
case "$iocharset" in
  utf8) want CONFIG_NLS_UTF8 nls_utf8 ;;
  ascii) want CONFIG_NLS_ASCII nls_ascii ;;
  iso8859-1) want CONFIG_NLS_ISO8859_1 nls_iso8859-1 ;;
  *) echo "unexpected FAT iocharset $iocharset" >&2; exit 1 ;;
esac

WORK="$(mktemp -d "$OUT_DIR/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# The initramfs: busybox, the modules, /init.
ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,dev,proc,sys,mnt,lib/modules}
cp /bin/busybox "$ROOT/bin/busybox"
for m in "${ORDER[@]}"; do
  cp "$(find "$MODS" -name "$m.ko" | head -n1)" "$ROOT/lib/modules/"
done
printf '%s\n' "${ORDER[@]}" >"$ROOT/lib/modules/load-order"
cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() {
  echo "CAIRN-GUEST-FAILED $*"
  sync
  poweroff -f
  sleep 5
}
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ "$i" -le 300 ] || fail "no /dev/vda after 30 s"
  sleep 0.1
done
mount -t vfat -o rw /dev/vda /mnt || fail "mount /dev/vda"
token=none
[ -f /mnt/token.txt ] && token="$(cat /mnt/token.txt)"
echo "hello from the guest: $token" >/mnt/hello.txt || fail "write /mnt/hello.txt"
sync
umount /mnt || fail "umount /mnt"
sync
echo "CAIRN-GUEST-DONE $token"
poweroff -f
sleep 5
EOF
chmod 755 "$ROOT/init"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) |
  gzip -9 >"$WORK/initrd.img"

cat >"$WORK/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT cairn
PROMPT 0
TIMEOUT 0
LABEL cairn
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200 panic=-1
EOF

# The disk: whole-disk FAT, syslinux in its boot sector (through mtools, no mount).
IMG="$WORK/guest.raw"
mkfs.fat -C -n CAIRNBOOT "$IMG" $((DISK_MIB * 1024)) >/dev/null
syslinux --install "$IMG"
mcopy -i "$IMG" "$KDIR/boot/vmlinuz-$KVER" ::/vmlinuz
mcopy -i "$IMG" "$WORK/initrd.img" ::/initrd.img
mcopy -i "$IMG" "$WORK/syslinux.cfg" ::/syslinux.cfg
rm -f "$OUT_DIR/guest.stamp"
mv "$IMG" "$OUT_DIR/guest.raw"
echo "$STAMP" >"$OUT_DIR/guest.stamp"
echo "$OUT_DIR/guest.raw"
