#!/usr/bin/env bash
# Boots one kernel of the VM lane and runs a command in it (as root in the guest; the guest's setup
# is guest.sh's), printing the guest's console. Exits with the command's exit code, or 125 when the
# guest never reported one. Usage: run.sh KERNEL_DIR 'COMMAND'
# Environment: TAPBOX_VM_MEMORY (MiB, default 3072), TAPBOX_VM_TIMEOUT (seconds, default 2400).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kdir="$(cd "$1" && pwd)"
release="$(basename "$kdir")"
exchange="$(mktemp -d)"
trap 'rm -rf "$exchange"' EXIT
chmod 0755 "$exchange"
cp "$here/guest.sh" "$exchange/guest.sh"
printf '%s\n' "$2" >"$exchange/command"
bash "$here/initramfs.sh" "$kdir" "$exchange/initramfs.gz"
# TCG, not KVM: nested KVM hangs on the machines the lane runs on (../shared/vm-notes.md).
timeout "${TAPBOX_VM_TIMEOUT:-2400}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "${TAPBOX_VM_MEMORY:-3072}" \
  -kernel "$kdir/boot/vmlinuz-$release" -initrd "$exchange/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$exchange,mount_tag=exchange,security_model=none" \
  -nographic -no-reboot -nic none </dev/null || true
[ -f "$exchange/status" ] || { echo "run.sh: the guest ($release) reported no exit code" >&2; exit 125; }
exit "$(cat "$exchange/status")"
