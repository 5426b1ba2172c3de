"""Runs inside a sandbox in ask mode: looks NAME up (getaddrinfo, A), and while that waits asks the same
question in other shapes straight to the resolver (another letter case with a trailing dot, TXT over
UDP, AAAA over TCP), prints "sent", then, with PORT, connects to the first address and echoes a
non-TLS, non-HTTP ping. Prints the outcome as one JSON line:
{"addrs": [...]} or {"lookup": error}, and {"echo": true} or {"connect": error}."""
import json, random, socket, struct, sys, threading

NAME = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def query(name, qtype):
    header = struct.pack(">HHHHHH", random.randint(0, 65535), 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split("."))
    return header + labels + b"\0" + struct.pack(">HH", qtype, 1)


result = {}


def lookup():
    try:
        result["addrs"] = sorted({a[4][0] for a in socket.getaddrinfo(NAME, PORT or 80, socket.AF_INET, socket.SOCK_STREAM)})
    except OSError as e:
        result["lookup"] = type(e).__name__


t = threading.Thread(target=lookup)
t.start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(query(NAME.upper() + ".", 1), ("10.0.2.3", 53))
u.sendto(query(NAME, 16), ("10.0.2.3", 53))
tcp = socket.create_connection(("10.0.2.3", 53))
m = query(NAME, 28)
tcp.sendall(struct.pack(">H", len(m)) + m)
print("sent", flush=True)
t.join()
if PORT and "addrs" in result:
    try:
        s = socket.create_connection((result["addrs"][0], PORT), timeout=20)
        s.sendall(b"\0ping")
        result["echo"] = s.recv(5) == b"\0ping"
    except OSError as e:
        result["connect"] = type(e).__name__
print(json.dumps(result), flush=True)
