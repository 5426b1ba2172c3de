#!/bin/bash
# PID 1 of a VM lane guest, on the host's root (read-only, 9p) with tmpfs on the writable paths:
# sets the guest up as a user's machine is set up (cgroup v2 mounted and a subtree delegated to the
# test user as systemd does, /dev/net/tun 0666, loopback up), runs /run/vm/command, writes its exit
# code to /run/vm/status and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
user="${TAPBOX_TEST_USER:-tapboxtest}"
uid="$(id -u "$user")"

mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts 2>/dev/null || { mkdir -p /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts; }
ln -sf pts/ptmx /dev/ptmx
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd
chmod 0666 /dev/net/tun
ip link set lo up
hostname vm-lane

# Delegation as systemd's user@.service does it: controllers enabled down to the user's service
# cgroup, which the user owns. The tests start each command of the test user in a leaf of it of its
# own (TAPBOX_TEST_CGROUP, test/helpers/tapbox.ts), as a login session's processes are.
for controller in cpu memory pids; do echo "+$controller" >/sys/fs/cgroup/cgroup.subtree_control; done
service=/sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service
mkdir -p "$service"
for dir in /sys/fs/cgroup/user.slice /sys/fs/cgroup/user.slice/user-$uid.slice "$service"; do
  echo "+cpu +memory +pids" >"$dir/cgroup.subtree_control"
done
chown -R "$user" "$service"
export TAPBOX_TEST_CGROUP="$service"

mkdir -p "/home/$user" && chown "$user:" "/home/$user"
echo "vm-lane: $(uname -r), $(nproc) CPUs, cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd /run/vm
bash /run/vm/command
echo $? >/run/vm/status
sync
echo o >/proc/sysrq-trigger
sleep 10
