#!/usr/bin/env python3
"""Runs a command with its stderr on a fresh pseudo-terminal (COLUMNS wide, default 100) and its stdout
on a pipe, stdin from /dev/null, as when a person watches a command whose output is redirected. Prints
{"code": N, "stdout": "...", "stderr": "..."} as JSON when it exits. Used to test --progress and the
summary table, which go to stderr only when it is a terminal."""
import fcntl, json, os, pty, select, struct, subprocess, sys, termios

master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, int(os.environ.get("COLUMNS", "100")), 0, 0))
# No output post-processing, so the bytes read are the bytes written (\r and \n as they are).
attrs = termios.tcgetattr(slave)
attrs[1] &= ~termios.OPOST
termios.tcsetattr(slave, termios.TCSANOW, attrs)
proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
os.close(slave)
out, err = b"", b""
open_fds = {proc.stdout.fileno(), master}
while open_fds:
    ready, _, _ = select.select(list(open_fds), [], [], 60)
    if not ready:
        break
    for fd in ready:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            open_fds.discard(fd)
        elif fd == master:
            err += chunk
        else:
            out += chunk
code = proc.wait()
print(json.dumps({"code": code, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace")}))
