#!/bin/sh
# Runs "$@" (after the MTU) in a new rootless user+network namespace whose network is slirp4netns,
# configured like tapbox's (10.0.2.100/24, gateway 10.0.2.2) at the given MTU.
set -eu
mtu=$1; shift
dir=$(mktemp -d)
trap 'kill $sleeper $slirp 2>/dev/null; rm -rf "$dir"' EXIT
unshare --user --map-root-user --net sh -c "echo \$\$ > $dir/pid; exec sleep 1000000" &
sleeper=$!
while [ ! -s "$dir/pid" ]; do sleep 0.05; done
pid=$(cat "$dir/pid")
slirp4netns --configure --mtu="$mtu" --disable-host-loopback --ready-fd=3 "$pid" tap0 3>"$dir/ready" >/dev/null 2>&1 &
slirp=$!
while [ ! -s "$dir/ready" ]; do sleep 0.05; done
nsenter --preserve-credentials --user --net --target "$pid" "$@"
