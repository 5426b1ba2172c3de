#!/usr/bin/env python3
"""Runs a command with some of its stdin, stdout and stderr on a fresh pseudo-terminal (the "outer"
terminal, 40x100, the command's controlling terminal) and the others on pipes, as when a person at a
terminal runs `echo x | cmd` or `cmd > file`. Prints the JSON
  {"code", "terminal": what the terminal showed, "stdout", "stderr": the pipes,
   "rows", "cols": the terminal's size afterwards, "pending": input still unread on it,
   "canonical": whether it is back in canonical (cooked) mode,
   "other": {"path", "output", "pending"}}
when the command exits. Environment:
  TTY_FDS        which of 0,1,2 are the terminal (default "0,1,2")
  TTY_TYPED      typed on the terminal before the command starts
  TTY_NOECHO     "1": the terminal does not echo (as at a password prompt)
  STDIN_DATA     the stdin pipe's content (when 0 is not the terminal)
  TTY_TYPE_ON    MARKER:N: once the terminal showed MARKER, types N bytes (lines of 99 x's) on it
  TTY_RESIZE_ON  once the terminal showed this text, it is resized to 50x120 (SIGWINCH to tapbox)
  OTHER_TERMINAL "1": also opens another terminal of the same user with echo off and a password typed
                 into it (OTHER_PASSWORD); its path and device number (MAJOR:MINOR) are passed to the command in
                 $OTHER_TERMINAL and $OTHER_TERMINAL_DEV.
Used to test that a sandbox can't reach the user's terminals."""
import fcntl, json, os, pty, select, struct, subprocess, sys, termios, time

fds = [int(f) for f in os.environ.get("TTY_FDS", "0,1,2").split(",") if f]
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))


def echo_off(fd):
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def drain(fd):
    """Everything readable from fd now, without waiting."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return data
        if not chunk:
            return data
        data += chunk


if os.environ.get("TTY_NOECHO") == "1":
    echo_off(slave)
env = dict(os.environ)
other = None
if os.environ.get("OTHER_TERMINAL") == "1":
    other_master, other_slave = pty.openpty()
    echo_off(other_slave)
    os.write(other_master, os.environ.get("OTHER_PASSWORD", "hunter2\n").encode())
    other = {"path": os.ttyname(other_slave)}
    env["OTHER_TERMINAL"] = other["path"]
    rdev = os.stat(other["path"]).st_rdev
    env["OTHER_TERMINAL_DEV"] = f"{os.major(rdev)}:{os.minor(rdev)}"
typed = os.environ.get("TTY_TYPED", "")
if typed:
    os.write(master, typed.encode())


def controlling_terminal():
    fcntl.ioctl(fds[0], termios.TIOCSCTTY, 0)


proc = subprocess.Popen(
    sys.argv[1:],
    stdin=slave if 0 in fds else subprocess.PIPE,
    stdout=slave if 1 in fds else subprocess.PIPE,
    stderr=slave if 2 in fds else subprocess.PIPE,
    start_new_session=True,
    preexec_fn=controlling_terminal if fds else None,
    env=env,
)
if proc.stdin:
    proc.stdin.write(os.environ.get("STDIN_DATA", "").encode())
    proc.stdin.close()
pipes = {p.fileno(): p for p in (proc.stdout, proc.stderr) if p}
out = {fd: b"" for fd in pipes}
terminal = b""
resize_on = os.environ.get("TTY_RESIZE_ON", "").encode()
type_marker, _, type_count = os.environ.get("TTY_TYPE_ON", "").partition(":")
type_marker = type_marker.encode()
to_type = (b"x" * 99 + b"\n") * (int(type_count or 0) // 100)
deadline = time.time() + 60
# The slave stays open here (to read the terminal's state afterwards), so the master never reads EOF:
# the command's end is its exit, after which all it wrote is already in the master's buffer.
typing = False
while (pipes or proc.poll() is None) and time.time() < deadline:
    # Typing never blocks: the terminal's output (the echo included) must keep being read meanwhile.
    if typing and to_type:
        os.set_blocking(master, False)
        try:
            to_type = to_type[os.write(master, to_type[:4096]):]
        except BlockingIOError:
            pass
    ready, _, _ = select.select([master, *pipes], [], [], 0.01 if typing and to_type else 0.05)
    for fd in ready:
        if fd == master:
            terminal += drain(master)
            if resize_on and resize_on in terminal:
                resize_on = b""
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
            if type_marker and type_marker in terminal:
                type_marker = b""
                typing = True
            continue
        chunk = os.read(fd, 65536)
        if chunk:
            out[fd] += chunk
        else:
            del pipes[fd]
if proc.poll() is None:
    proc.kill()
code = proc.wait()
terminal += drain(master)
rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8))
result = {
    "code": code,
    "terminal": terminal.decode("utf-8", "replace"),
    "stdout": out.get(proc.stdout.fileno(), b"").decode("utf-8", "replace") if proc.stdout else "",
    "stderr": out.get(proc.stderr.fileno(), b"").decode("utf-8", "replace") if proc.stderr else "",
    "rows": rows,
    "cols": cols,
    "pending": drain(slave).decode("utf-8", "replace"),
    "canonical": bool(termios.tcgetattr(slave)[3] & termios.ICANON),
}
if other:
    other["output"] = drain(other_master).decode("utf-8", "replace")
    other["pending"] = drain(other_slave).decode("utf-8", "replace")
    result["other"] = other
print(json.dumps(result))
