#!/usr/bin/env bash
# Fetches the kernels the VM lane boots: Debian's own packages, unpacked (never installed) into
# $TAPBOX_VM_DIR (default /var/cache/tapbox-vm), one directory per kernel release with its modules
# and a modules.dep. Debian 12's linux-image-amd64 is 6.1; linux-image-6.12-amd64 is the 6.12 that
# Debian 12 ships too. Run as root (apt); CI runs it from .ci/run.
set -euo pipefail
dir="${TAPBOX_VM_DIR:-/var/cache/tapbox-vm}"
mkdir -p "$dir"
cd "$dir"
for meta in linux-image-amd64 linux-image-6.12-amd64; do
  # The meta package depends on exactly one versioned image package: that is the kernel.
  pkg="$(apt-cache show "$meta" | sed -n 's/^Depends: \([^ ,]*\).*/\1/p' | head -n1)"
  [ -n "$pkg" ] || { echo "kernels.sh: apt knows no $meta; run apt-get update" >&2; exit 1; }
  release="${pkg#linux-image-}"
  if [ ! -f "$release/lib/modules/$release/modules.dep" ]; then
    rm -rf "$release" "$pkg"_*.deb
    apt-get download -qq "$pkg" 2>/dev/null
    dpkg-deb -x "$pkg"_*.deb "$release"
    rm -f "$pkg"_*.deb
    depmod -b "$PWD/$release" "$release"
  fi
  echo "$dir/$release"
done
