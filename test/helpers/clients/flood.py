#!/usr/bin/env python3
"""Floods from inside a sandbox (uid 0 in its user namespace has CAP_NET_RAW there). One JSON line out.

  flood.py syn HOST PORT COUNT        COUNT SYNs from distinct source ports, no handshake completed: on a
                                      raw socket where the sandbox allows one (the sandbox's kernel then
                                      resets our SYN-ACKs), else as COUNT non-blocking connect()s left
                                      half-open (the kernel sends, and retransmits, the SYNs) -> {sent, via}
  flood.py udp HOST COUNT             COUNT datagrams, each to a new port (a new UDP session each) -> {sent}
  flood.py dns SERVER COUNT NAME...   COUNT A queries at once (names cycled) on one socket, then collects
                                      answers until none came for 6 s -> {sent, answered: {RCODE: n}, missing, lostInSandbox}
"""
import json
import random
import resource
import select
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(host, port, count):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    except PermissionError:
        # tapbox runs the command in a user namespace nested in the one that owns the network
        # namespace, so even root inside has no CAP_NET_RAW over tap0: flood through the kernel.
        return syn_by_connect(host, port, count)
    src = socket.inet_aton("10.0.2.100")
    dst = socket.inet_aton(host)
    sent = 0
    for i in range(count):
        sport = 20000 + (i % 40000)
        seq = random.getrandbits(32)
        header = struct.pack("!HHIIBBHHH", sport, port, seq, 0, 5 << 4, 0x02, 65535, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
        header = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
        while True:
            try:
                s.sendto(header, (host, 0))
                break
            except (BlockingIOError, OSError):
                time.sleep(0.001)  # the TAP queue is full: let the supervisor drain it
        sent += 1
    return {"sent": sent, "via": "raw"}


def syn_by_connect(host, port, count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for i in range(min(count, hard - 64)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        held.append(s)
        if i % 500 == 499:
            time.sleep(0.01)
    time.sleep(1)  # let the SYNs (and a retransmission) go out before the sockets close
    for s in held:
        s.close()
    return {"sent": len(held), "via": "connect"}


def udp(host, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for i in range(count):
        while True:
            try:
                s.sendto(b"flood %d" % i, (host, 1024 + (i % 60000)))
                break
            except (BlockingIOError, OSError):
                time.sleep(0.001)
        sent += 1
        if i % 100 == 99:
            time.sleep(0.01)  # a TAP drops what its queue cannot hold: pace so the floods reach the stack
    return {"sent": sent}


RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def dns(server, count, names):
    lost_before = lost_in_sandbox()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect((server, 53))
    # One query first, its answer awaited: the neighbour entry of the resolver address is then resolved
    # (the kernel holds only a few packets while it asks ARP, and drops the rest uncounted).
    s.send(struct.pack("!HHHHHH", 0xFFFF, 0x0100, 0, 0, 0, 0))
    select.select([s], [], [], 5)
    try:
        s.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass
    pending = set()
    answered = {}

    def collect(wait):
        # Read while sending too: a socket buffer holds only a few hundred answers.
        r, _, _ = select.select([s], [], [], wait)
        while r:
            reply = s.recv(4096)
            qid, flags = struct.unpack("!HH", reply[:4])
            if qid in pending:
                pending.discard(qid)
                rcode = RCODES.get(flags & 15, str(flags & 15))
                answered[rcode] = answered.get(rcode, 0) + 1
            r, _, _ = select.select([s], [], [], 0)

    for i in range(count):
        qid = i & 0xFFFF
        name = names[i % len(names)]
        q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
        q += struct.pack("!HH", 1, 1)
        while True:
            try:
                s.send(q)
                break
            except (BlockingIOError, OSError):
                time.sleep(0.001)
        pending.add(qid)
        if i % 100 == 99:
            collect(0.01)
    # Until every query is answered, or nothing came for 6 s (past the proxy's 2 x 2 s upstream timeout).
    last = time.time()
    while pending and time.time() - last < 6:
        waiting = len(pending)
        collect(0.5)
        if len(pending) < waiting:
            last = time.time()
    # What the sandbox's own kernel dropped (queries at tap0's full transmit queue while the supervisor
    # read behind, answers at its receive side or socket buffer) is counted apart from the ones the
    # proxy left unanswered.
    return {"sent": count, "answered": answered, "missing": len(pending), "lostInSandbox": lost_in_sandbox() - lost_before}


def udp_rcvbuf_errors():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def lost_in_sandbox():
    """tap0's transmit and receive drops plus UDP receive-buffer overflows, in this network namespace
    (/proc/net/dev is the namespace's own view; the sandbox's /sys may not be)."""
    lost = udp_rcvbuf_errors()
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, counters = line.partition(":")
            if name.strip() == "tap0":
                c = counters.split()
                lost += int(c[3]) + int(c[11])
    return lost


def main():
    mode = sys.argv[1]
    if mode == "syn":
        out = syn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "udp":
        out = udp(sys.argv[2], int(sys.argv[3]))
    elif mode == "dns":
        out = dns(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit("flood.py: unknown mode %s" % mode)
    print(json.dumps(out), flush=True)


main()
