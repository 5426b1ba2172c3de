#!/usr/bin/env python3
"""Runs a command under a fresh pseudo-terminal, as a person at a terminal would: types each line of
the JSON list given in $PTY_INPUT after the previous output settled, and prints
{"code": N, "output": "..."} as JSON when the command exits. Used to test interactive use."""
import json, os, pty, select, sys, time

argv = sys.argv[1:]
lines = json.loads(os.environ.get("PTY_INPUT", "[]"))
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out = b""
deadline = time.time() + 60


def read_for(seconds):
    global out
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            out += chunk
    return True


read_for(1.5)
for line in lines:
    os.write(fd, line.encode())
    if not read_for(0.7):
        break
while time.time() < deadline and read_for(0.2):
    pass
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"code": code, "output": out.decode("utf-8", "replace")}))
