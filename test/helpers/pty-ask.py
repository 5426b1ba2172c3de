#!/usr/bin/env python3
"""Runs a command under a fresh pseudo-terminal and answers its questions as a person would. $PTY_STEPS
is a JSON list of [REGEX, KEYS]: for each, it reads the output until REGEX matches (after the previous
match), prints {"step": N} on stderr, waits for a line on its stdin (the test's go-ahead), then types
KEYS (nothing when empty). At the end it prints {"code": N, "output": "..."} on stdout."""
import json, os, pty, re, select, sys, time

argv = sys.argv[1:]
steps = json.loads(os.environ.get("PTY_STEPS", "[]"))
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)

out = b""
deadline = time.time() + 90


def read_some(timeout):
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


pos = 0
alive = True
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
