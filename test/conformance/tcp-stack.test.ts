// TCP end to end through the Stack and an in-memory link: Ethernet and IP framing on both sides,
// then a bulk transfer over a link that drops, reorders, duplicates and corrupts frames.
import { describe, expect, it } from 'vitest';
import { ChannelEndpoint, ManualClock, Stack } from '../../netstack/index.js';
import { createTcp, type TcpConnection } from '../../netstack/transport/tcp/index.js';
import { GATEWAY_MAC, SANDBOX4, SANDBOX6, SANDBOX_MAC, TestForwarder, ethernet, icmp4, ipv4, ipv6, parseIpv4Frame, parseIpv6Frame, v4, v6 } from './frames.js';
import { ACK, FIN, PSH, SYN, bytes, decodeSegment, encode, settle, type SegmentSpec, type Sent } from './tcp-harness.js';

const REMOTE4 = v4('198.18.0.20');
const REMOTE6 = v6('2001:db8::20');

function build(mtu: number, faults: ConstructorParameters<typeof ChannelEndpoint>[0] = {}) {
  const clock = new ManualClock();
  const link = new ChannelEndpoint({ mtu, ...faults });
  const forwarder = new TestForwarder();
  const stack = new Stack({ link, clock, forwarder });
  const tcp = createTcp({ sender: stack, clock, forwarder });
  stack.registerTransport(tcp);
  return { clock, link, forwarder, stack, tcp };
}

function frame4(s: SegmentSpec): Buffer {
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 6, payload: encode(SANDBOX4, REMOTE4, s) }));
}

function frame6(s: SegmentSpec): Buffer {
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, REMOTE6, 6, encode(SANDBOX6, REMOTE6, s)));
}

function segments4(link: ChannelEndpoint, now: number): Sent[] {
  return link.drain().map((f) => {
    const p = parseIpv4Frame(f);
    expect(p.headerOk).toBe(true);
    expect(p.ethDst).toEqual(SANDBOX_MAC);
    expect(p.protocol).toBe(6);
    return decodeSegment(4, REMOTE4, SANDBOX4, Buffer.from(p.payload), now);
  });
}

describe('TCP through the Stack', () => {
  it('opens, exchanges data both ways and closes over IPv4 frames', async () => {
    const { clock, link, forwarder } = build(1500);
    link.inject(frame4({ flags: SYN, seq: 100, srcPort: 5555, dstPort: 80, mss: 1460, windowShift: 7, sackPermitted: true, ts: { val: 1, ecr: 0 } }));
    expect(forwarder.tcpRequests).toHaveLength(1);
    expect(forwarder.tcpRequests[0]!.id).toEqual({ family: 4, srcAddr: '10.0.2.100', srcPort: 5555, dstAddr: '198.18.0.20', dstPort: 80 });
    const conn = forwarder.tcpRequests[0]!.accept() as TcpConnection;
    const [synAck] = segments4(link, clock.now());
    expect(synAck!.flags).toBe(SYN | ACK);
    expect(synAck!.mss).toBe(1460); // MTU 1500
    const iss = synAck!.seq;
    const ts = { val: 2, ecr: synAck!.ts!.val };
    link.inject(frame4({ flags: ACK, seq: 101, ack: iss + 1, srcPort: 5555, dstPort: 80, ts }));
    expect(conn.state).toBe('ESTABLISHED');

    const received: Buffer[] = [];
    conn.on('data', (d: Buffer) => received.push(d));
    link.inject(frame4({ flags: ACK | PSH, seq: 101, ack: iss + 1, srcPort: 5555, dstPort: 80, ts, payload: Buffer.from('GET / HTTP/1.0\r\n\r\n') }));
    await settle();
    expect(Buffer.concat(received).toString()).toBe('GET / HTTP/1.0\r\n\r\n');

    conn.end('HTTP/1.0 200 OK\r\n\r\n');
    await settle();
    const out = segments4(link, clock.now());
    const reply = out.find((s) => s.payload.length > 0)!;
    expect(reply.payload.toString()).toBe('HTTP/1.0 200 OK\r\n\r\n');
    expect(reply.flags & FIN).toBe(FIN);
    expect(reply.ack).toBe(119);
    link.inject(frame4({ flags: ACK | FIN, seq: 119, ack: iss + 1 + 19 + 1, srcPort: 5555, dstPort: 80, ts }));
    expect(conn.state).toBe('TIME-WAIT');
    expect(segments4(link, clock.now()).at(-1)!.ack).toBe(120);
  });

  it('completes a handshake over IPv6 frames', () => {
    const { link, forwarder } = build(1500);
    link.inject(frame6({ flags: SYN, seq: 7, srcPort: 5556, dstPort: 443, mss: 1440 }));
    expect(forwarder.tcpRequests[0]!.id.dstAddr).toBe('2001:db8::20');
    forwarder.tcpRequests[0]!.accept();
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const p = parseIpv6Frame(frames[0]!);
    expect(p.lengthOk).toBe(true);
    const synAck = decodeSegment(6, REMOTE6, SANDBOX6, Buffer.from(p.payload), 0);
    expect(synAck.flags).toBe(SYN | ACK);
    expect(synAck.mss).toBe(1440);
    expect(synAck.ack).toBe(8);
  });

  it('resegments after an ICMP fragmentation-needed from the sandbox', async () => {
    const { clock, link, forwarder } = build(9000);
    link.inject(frame4({ flags: SYN, seq: 100, srcPort: 5557, dstPort: 80, mss: 8960 }));
    const conn = forwarder.tcpRequests[0]!.accept() as TcpConnection;
    const [synAck] = segments4(link, clock.now());
    link.inject(frame4({ flags: ACK, seq: 101, ack: synAck!.seq + 1, srcPort: 5557, dstPort: 80 }));
    conn.write(bytes(8000));
    await settle();
    const [frame] = link.drain();
    expect(parseIpv4Frame(frame!).payload.length).toBe(20 + 8000);
    // The sandbox's path (say a nested tunnel) takes 1400 bytes: ICMP type 3 code 4 quoting our packet.
    const quoted = frame!.subarray(14, 14 + 28);
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 1, payload: icmp4(3, 4, 1400, quoted) })));
    await settle(); // the short last segment goes at the end of the turn
    const resent = segments4(link, clock.now());
    expect(resent.map((s) => s.payload.length)).toEqual([1360, 1360, 1360, 1360, 1360, 1200]);
    expect(Buffer.concat(resent.map((s) => s.payload))).toEqual(bytes(8000));
  });

  it('delivers 2 MB intact over a lossy, reordering, duplicating, corrupting link', async () => {
    const { clock, link, forwarder, tcp } = build(1500, {
      inbound: { drop: 0.03, reorder: 0.03, duplicate: 0.02, corrupt: 0.01 },
      outbound: { drop: 0.03, reorder: 0.03, duplicate: 0.02, corrupt: 0.01 },
      seed: 7,
    });
    const isn = 5000;
    const syn = { flags: SYN, seq: isn, srcPort: 6000, dstPort: 80, mss: 1460, windowShift: 7, sackPermitted: true };
    // Retransmit the SYN until the stack answers (the link may eat frames).
    let conn: TcpConnection | undefined;
    let iss = -1;
    for (let i = 0; i < 50 && iss < 0; i++) {
      link.inject(frame4(syn));
      if (!conn && forwarder.tcpRequests.length > 0) conn = forwarder.tcpRequests[0]!.accept() as TcpConnection;
      clock.advance(1000);
      link.release();
      for (const s of safeSegments(link)) if (s.flags === (SYN | ACK)) iss = s.seq;
    }
    expect(iss).toBeGreaterThanOrEqual(0);
    const data = bytes(2 << 20, 3);
    conn!.end(data);
    conn!.on('error', (err) => expect.unreachable(String(err)));

    // The sandbox: a receiver with an out-of-order store that reports SACK blocks.
    const base = (iss + 1) >>> 0;
    let rcvNxt = 0;
    const store = new Map<number, Buffer>();
    const chunks: Buffer[] = [];
    let finished = false;
    const ackNow = (): void => {
      const sack = [...store.entries()]
        .sort((a, b) => a[0] - b[0])
        .slice(0, 3)
        .map(([off, b]) => [(base + off) >>> 0, (base + off + b.length) >>> 0] as [number, number]);
      link.inject(frame4({ flags: ACK, seq: isn + 1, ack: (base + rcvNxt + (finished ? 1 : 0)) >>> 0, srcPort: 6000, dstPort: 80, window: 4096, sack }));
    };
    ackNow();
    for (let round = 0; round < 20_000 && !finished; round++) {
      await settle();
      for (const s of safeSegments(link)) {
        if (s.flags & SYN) {
          ackNow(); // our handshake ACK may have been lost: the SYN-ACK came again
          continue;
        }
        const off = (s.seq - base) >>> 0;
        if (s.payload.length > 0 && off >= rcvNxt && !store.has(off)) store.set(off, Buffer.from(s.payload));
        for (let next = store.get(rcvNxt); next; next = store.get(rcvNxt)) {
          store.delete(rcvNxt);
          chunks.push(next);
          rcvNxt += next.length;
        }
        if (s.flags & FIN && ((s.seq + s.payload.length - base) >>> 0) === rcvNxt) finished = true;
        ackNow();
      }
      clock.advance(5);
      link.release();
    }
    expect(finished).toBe(true);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    expect(tcp.stats.retransmits).toBeGreaterThan(0);
    expect(tcp.stats.badChecksum).toBeGreaterThan(0);
  });

  it('receives 1 MB intact from a sandbox sending over a lossy, reordering link', async () => {
    const { clock, link, forwarder, tcp } = build(1500, {
      inbound: { drop: 0.05, reorder: 0.05, duplicate: 0.02, corrupt: 0.01 },
      outbound: { drop: 0.05, corrupt: 0.01 },
      seed: 11,
    });
    const isn = 0xfffff000; // wraps during the transfer
    let conn: TcpConnection | undefined;
    let iss = -1;
    let synAckWindow = 0;
    for (let i = 0; i < 50 && iss < 0; i++) {
      link.inject(frame4({ flags: SYN, seq: isn, srcPort: 6001, dstPort: 80, mss: 1460, windowShift: 7, sackPermitted: true }));
      if (!conn && forwarder.tcpRequests.length > 0) conn = forwarder.tcpRequests[0]!.accept() as TcpConnection;
      clock.advance(1000);
      link.release();
      for (const s of safeSegments(link)) if (s.flags === (SYN | ACK)) [iss, synAckWindow] = [s.seq, s.window];
    }
    const received: Buffer[] = [];
    let ended = false;
    conn!.on('data', (d: Buffer) => received.push(d));
    conn!.on('end', () => (ended = true));

    // The sandbox: sends what our window allows, goes back to the last ACK when progress stalls.
    const data = bytes(1 << 20, 9);
    const base = (isn + 1) >>> 0;
    let acked = 0;
    let next = 0;
    let window = synAckWindow; // a SYN-ACK's window is never scaled (RFC 7323 §2.2)
    let stalled = 0;
    const send = (off: number): void => {
      const len = Math.min(1460, data.length - off);
      const fin = off + len === data.length;
      link.inject(frame4({ flags: ACK | (fin ? FIN : 0), seq: (base + off) >>> 0, ack: (iss + 1) >>> 0, srcPort: 6001, dstPort: 80, payload: data.subarray(off, off + len) }));
    };
    link.inject(frame4({ flags: ACK, seq: base, ack: (iss + 1) >>> 0, srcPort: 6001, dstPort: 80 }));
    for (let round = 0; round < 20_000 && !ended; round++) {
      for (const s of safeSegments(link)) {
        const a = (s.ack - base) >>> 0;
        if (a <= data.length + 1 && a > acked) {
          acked = a;
          stalled = 0;
        }
        window = s.window * 128; // scaled by the shift (7) our SYN-ACK announced
      }
      if (++stalled > 20) {
        next = Math.min(acked, data.length - 1);
        stalled = 0;
      }
      while (next < data.length && next - acked < window) {
        send(next);
        next += Math.min(1460, data.length - next);
      }
      await settle();
      clock.advance(5);
      link.release();
    }
    expect(ended).toBe(true);
    expect(Buffer.concat(received).equals(data)).toBe(true);
    expect(tcp.stats.badChecksum).toBeGreaterThan(0);
  });
});

/** Outbound segments, skipping frames the link corrupted (their checksums no longer match). */
function safeSegments(link: ChannelEndpoint): Sent[] {
  const out: Sent[] = [];
  for (const f of link.drain()) {
    const p = parseIpv4Frame(f);
    if (!p.headerOk || p.protocol !== 6) continue;
    try {
      out.push(decodeSegment(4, REMOTE4, SANDBOX4, Buffer.from(p.payload), 0));
    } catch {
      // A corrupted frame: the sandbox's kernel would drop it too.
    }
  }
  return out;
}
