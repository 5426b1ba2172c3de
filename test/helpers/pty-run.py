#!/usr/bin/env python3
"""Runs a command under a fresh pseudo-terminal, as a person at a terminal would, and at the end prints
{"code": N, "output": "..."} as JSON on stdout. What it types comes from one of:
  $PTY_INPUT  a JSON list of lines: each is typed once the previous output settled;
  $PTY_STEPS  a JSON list of [REGEX, KEYS]: for each, the output is read until REGEX matches (after the
              previous match), {"step": N} is printed on stderr, a line is awaited on stdin (the test's
              go-ahead), then KEYS are typed (nothing when empty)."""
import json, os, pty, re, select, sys, time

argv = sys.argv[1:]
lines = json.loads(os.environ.get("PTY_INPUT", "[]"))
steps = json.loads(os.environ.get("PTY_STEPS", "[]"))
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out = b""
deadline = time.time() + 90


def read_some(timeout):
    """Reads what comes within `timeout` s; False once the command closed the terminal."""
    global out
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return True
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        return False
    if not chunk:
        return False
    out += chunk
    return True


def read_for(seconds):
    """Reads for `seconds`; False once the command closed the terminal."""
    end = time.time() + seconds
    while time.time() < end:
        if not read_some(0.05):
            return False
    return True


alive = read_for(1.5) if lines else True
for line in lines:
    os.write(fd, line.encode())
    alive = read_for(0.7)
    if not alive:
        break
pos = 0
for i, (pattern, keys) in enumerate(steps):
    regex = re.compile(pattern.encode())
    while alive and time.time() < deadline:
        m = regex.search(out, pos)
        if m:
            pos = m.end()
            break
        alive = read_some(0.1)
    sys.stderr.write(json.dumps({"step": i}) + "\n")
    sys.stderr.flush()
    sys.stdin.readline()
    if keys and alive:
        os.write(fd, keys.encode())
while alive and time.time() < deadline:
    alive = read_some(0.2)
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "output": out.decode("utf-8", "replace")}))
