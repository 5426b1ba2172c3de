#!/usr/bin/env python3
"""Test-only stand-in for the supervisor's side of the launcher's control socket.

Usage: launcher-driver.py [--no-go] [--pty] LAUNCHER [LAUNCHER-ARGS...]

Creates the SOCK_SEQPACKET socketpair, spawns LAUNCHER with one end on fd 3 and its stdout/stderr
in files (or, with --pty, all three on the slave of a new pseudo-terminal, as the supervisor does
for interactive use, with its output reported as stdout), then plays the supervisor: keeps the TAP fd it receives open (the device lives as long as
that fd), replies "GO" (or, with --no-go, closes the socket instead), and records every message.
Prints one JSON line {"event": "spawned", ...} at once, and one JSON result line when the launcher
has exited.
"""
import fcntl
import json
import os
import socket
import struct
import sys
import tempfile
import threading


TUNGETIFF = 0x800454D2


def describe_tap(fd: int) -> dict:
    """The TUN/TAP interface the fd is attached to: its name and flags."""
    ifreq = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    name, flags = struct.unpack("16sH", ifreq[:18])
    return {"name": name.rstrip(b"\0").decode(), "flags": flags}


def copy_terminal(master: int, out) -> None:
    """Copies the terminal's output until every holder of the slave is gone (EIO)."""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return
        if not chunk:
            return
        out.write(chunk)


def send_go_once(sock: socket.socket) -> None:
    # As the supervisor does: a launcher that already exited (a usage error) leaves EPIPE; its exit
    # status and queued messages tell why.
    try:
        sock.send(b"GO")
    except (BrokenPipeError, ConnectionResetError):
        pass


def main() -> None:
    args = sys.argv[1:]
    flags = set()
    while args and args[0] in ("--no-go", "--pty"):
        flags.add(args.pop(0))
    send_go = "--no-go" not in flags

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    if "--pty" in flags:
        master, slave = os.openpty()
        stdio = [(os.POSIX_SPAWN_DUP2, slave, fd) for fd in (0, 1, 2)]
        terminal_reader = threading.Thread(target=copy_terminal, args=(master, out))
        terminal_reader.start()
    else:
        stdio = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
    pid = os.posix_spawn(args[0], args, os.environ,
                         file_actions=stdio + [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)])
    theirs.close()
    if "--pty" in flags:
        os.close(slave)
    print(json.dumps({"event": "spawned", "driverPid": os.getpid(), "launcherPid": pid}), flush=True)

    expects_tap = "--net" not in args or args[args.index("--net") + 1] == "tap"
    if not send_go:
        ours.close()
    elif not expects_tap:
        send_go_once(ours)

    messages = []
    tap = None
    while send_go:
        try:
            data, fds, _flags, _addr = socket.recv_fds(ours, 4096, 4)
        except ConnectionResetError:
            continue  # the launcher exited leaving our GO unread; its messages are still queued
        if not data and not fds:
            break  # every holder of the launcher's end is gone
        messages.append(data.decode(errors="replace"))
        for fd in fds:
            tap = describe_tap(fd)
        if data == b"TAP":
            send_go_once(ours)

    _, status = os.waitpid(pid, 0)
    if "--pty" in flags:
        terminal_reader.join()
    out.seek(0)
    err.seek(0)
    print(json.dumps({
        "event": "exited",
        "exitCode": os.waitstatus_to_exitcode(status),
        "messages": messages,
        "tap": tap,
        "stdout": out.read().decode(errors="replace"),
        "stderr": err.read().decode(errors="replace"),
    }), flush=True)


main()
