#!/usr/bin/env bash
# Builds the VM lane's initramfs for one unpacked kernel (see kernels.sh): busybox, the modules the
# lane needs (virtio, 9p, overlay, tun, veth) with their dependencies in load order, and init.
# Usage: initramfs.sh KERNEL_DIR OUT.cpio.gz
set -euo pipefail
kdir="$(cd "$1" && pwd)"
out="$2"
release="$(basename "$kdir")"
moddir="$kdir/lib/modules/$release"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work"/{bin,modules,proc,sys,dev,newroot}
cp /bin/busybox "$work/bin/busybox"
for applet in sh mount umount mkdir insmod switch_root sleep cat echo; do ln -s busybox "$work/bin/$applet"; done
cp "$here/init" "$work/init"
chmod 0755 "$work/init"

# Modules in dependency order (dependencies first), from modules.dep; built-in ones need nothing.
declare -A seen=()
order=()
add() {
  local path="$1" dep
  [ -n "${seen[$path]:-}" ] && return
  seen[$path]=1
  for dep in $(sed -n "s|^$path: *||p" "$moddir/modules.dep"); do add "$dep"; done
  order+=("$path")
}
for name in virtio_pci 9pnet_virtio 9p overlay tun veth; do
  path="$(grep -E "/$name\.ko(\.xz|\.zst)?:" "$moddir/modules.dep" | cut -d: -f1 || true)"
  if [ -z "$path" ]; then
    grep -qE "/$name\.ko" "$moddir/modules.builtin" || { echo "initramfs.sh: $release has no module $name" >&2; exit 1; }
    continue
  fi
  add "$path"
done
i=0
for path in "${order[@]}"; do
  name="$(printf '%02d-%s' "$i" "$(basename "${path%%.ko*}")").ko"
  case "$path" in
    *.xz) xz -dc "$moddir/$path" >"$work/modules/$name" ;;
    *.zst) zstd -qdc "$moddir/$path" >"$work/modules/$name" ;;
    *) cp "$moddir/$path" "$work/modules/$name" ;;
  esac
  i=$((i + 1))
done
(cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
