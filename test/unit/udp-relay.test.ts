// The native UDP relay (native/addon/udp_relay.cc) behind the real stack and forwarder: a Stack over a
// TapEndpoint whose fd is a SOCK_SEQPACKET pair, so the test writes the sandbox's frames (any bytes it
// likes: spoofed addresses, fragments, bad checksums) into one end and reads the frames tapbox sends
// from it; the "internet" is UDP servers on loopback. Each case checks both what the host received and
// whether the datagrams took the native path (the TAP's relayedIn/relayedOut counters).
import dgram from 'node:dgram';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { realClock, Stack, TapEndpoint, type UdpOptions } from '../../netstack/index.js';
import { LivePolicy } from '../../src/egress/live-policy.js';
import { closeFd, recvMessage, sendMessage, socketpair, type ControlMessage } from '../../src/supervisor/control.js';
import { ethernet, GATEWAY_MAC, ipv4, parseIpv4Frame, parseIpv6Frame, SANDBOX4, SANDBOX6, SANDBOX_MAC, sumOk, udp, udp4Frame, udp6Frame, v4, v6 } from '../conformance/frames.js';
import { fakeEgress, FakeUdpRequest, flowId, type FakeUdpConn } from '../helpers/forwarder-fakes.js';

const receive = promisify(recvMessage) as (fd: number) => Promise<ControlMessage>;
const LOOP4 = v4('127.0.0.1');
const LOOP6 = v6('::1');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A UDP server on loopback that answers "echo:" + each datagram and records what it got. */
async function echoServer(family: 4 | 6) {
  const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  const received: { data: string; port: number }[] = [];
  s.on('message', (m, r) => {
    received.push({ data: m.toString(), port: r.port });
    s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address);
  });
  await new Promise<void>((r) => s.bind(0, family === 4 ? '127.0.0.1' : '::1', r));
  cleanups.push(() => s.close());
  return { port: s.address().port, received };
}

/** A port nothing listens on (bound, noted, closed). */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Sandbox {
  tap: TapEndpoint;
  egress: ReturnType<typeof fakeEgress>;
  /** Every frame tapbox sent to the sandbox so far. */
  frames: Buffer[];
  send(frame: Buffer): void;
}

/** With `vnetHdr`, `send` takes the virtio-net header in front of the frame and `frames` keep ours. */
function sandbox(rules: string, o: { maxFlows?: number; udp?: Partial<UdpOptions>; vnetHdr?: boolean } = {}): Sandbox {
  const [ours, peer] = socketpair();
  const tap = new TapEndpoint(ours, { mtu: 1500, vnetHdr: o.vnetHdr });
  const egress = fakeEgress(rules, { refuseHostInternal: false, maxFlows: o.maxFlows });
  // The sandbox's MAC is learned from its first frame, as on a real TAP.
  const stack = new Stack({ link: tap, clock: realClock, forwarder: egress.forwarder, udp: o.udp });
  const frames: Buffer[] = [];
  const reading = (async () => {
    for (;;) {
      const m = await receive(peer);
      if (m.data.length === 0) return;
      frames.push(o.vnetHdr ? m.data.subarray(10) : m.data);
    }
  })();
  cleanups.push(async () => {
    stack.close();
    tap.close();
    await reading;
    closeFd(peer);
  });
  return { tap, egress, frames, send: (frame) => sendMessage(peer, frame) };
}

interface UdpOut {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  data: string;
  ok: boolean;
}

/** The UDP datagrams among `frames`, with whether every header and checksum is right. */
function datagrams(frames: Buffer[]): UdpOut[] {
  const out: UdpOut[] = [];
  for (const f of frames) {
    const type = f.readUInt16BE(12);
    const ethOk = f.subarray(0, 6).equals(SANDBOX_MAC) && f.subarray(6, 12).equals(GATEWAY_MAC);
    if (type === 0x0800) {
      const ip = parseIpv4Frame(f);
      if (ip.protocol !== 17) continue;
      const u = ip.payload;
      const src = f.subarray(26, 30);
      const dst = f.subarray(30, 34);
      const sumOkay = sumOk(u, 0, u.length, pseudoHeaderChecksum(src, dst, 17, u.length));
      out.push({ src: ip.src, dst: ip.dst, srcPort: u.readUInt16BE(0), dstPort: u.readUInt16BE(2), data: u.subarray(8).toString(), ok: ethOk && ip.headerOk && ip.ttl === 64 && sumOkay && u.readUInt16BE(4) === u.length });
    } else if (type === 0x86dd) {
      const ip = parseIpv6Frame(f);
      if (ip.nextHeader !== 17) continue;
      const u = ip.payload;
      const sumOkay = sumOk(u, 0, u.length, pseudoHeaderChecksum(ip.src, ip.dst, 17, u.length));
      out.push({ src: ip.src.toString('hex'), dst: ip.dst.toString('hex'), srcPort: u.readUInt16BE(0), dstPort: u.readUInt16BE(2), data: u.subarray(8).toString(), ok: ethOk && ip.lengthOk && ip.hopLimit === 64 && sumOkay });
    }
  }
  return out;
}

/** ICMPv4 destination-unreachable codes among `frames` (3 port, 13 administratively prohibited). */
function unreachable(frames: Buffer[]): number[] {
  return frames.filter((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 1 && f[34] === 3).map((f) => f[35]!);
}

describe('native UDP relay', () => {
  it('carries an admitted IPv4 flow in C after its first datagram, both ways, with the frames the stack would write', async () => {
    const echo = await echoServer(4);
    const sb = sandbox('127.0.0.1\n');
    sb.send(udp4Frame(LOOP4, 40000, echo.port, Buffer.from('one')));
    await expect.poll(() => datagrams(sb.frames).length).toBe(1);
    sb.send(udp4Frame(LOOP4, 40000, echo.port, Buffer.from('two')));
    sb.send(udp4Frame(LOOP4, 40000, echo.port, Buffer.from('three')));
    await expect.poll(() => datagrams(sb.frames).length).toBe(3);
    expect(datagrams(sb.frames)).toEqual(
      ['one', 'two', 'three'].map((d) => ({ src: '127.0.0.1', dst: '10.0.2.100', srcPort: echo.port, dstPort: 40000, data: `echo:${d}`, ok: true })),
    );
    expect(echo.received.map((r) => r.data)).toEqual(['one', 'two', 'three']);
    expect(new Set(echo.received.map((r) => r.port)).size).toBe(1); // one host socket
    expect(sb.tap.stats).toMatchObject({ relayedIn: 2, relayedOut: 3 });
  });

  it('carries an admitted IPv6 flow the same way', async () => {
    const echo = await echoServer(6);
    const sb = sandbox('::1\n');
    for (const d of ['a', 'b', 'c']) {
      sb.send(udp6Frame(LOOP6, 40001, echo.port, Buffer.from(d)));
      await expect.poll(() => echo.received.length).toBeGreaterThan(['a', 'b', 'c'].indexOf(d));
    }
    await expect.poll(() => datagrams(sb.frames).length).toBe(3);
    const loop6 = LOOP6.toString('hex');
    const sandbox6 = SANDBOX6.toString('hex');
    expect(datagrams(sb.frames)).toEqual(['a', 'b', 'c'].map((d) => ({ src: loop6, dst: sandbox6, srcPort: echo.port, dstPort: 40001, data: `echo:${d}`, ok: true })));
    expect(sb.tap.stats).toMatchObject({ relayedIn: 2, relayedOut: 3 });
  });

  it('reports the bytes each way, including the first datagram, when the flow ends', async () => {
    const echo = await echoServer(4);
    const sb = sandbox('127.0.0.1\n');
    for (const d of ['12345', '678', '9']) sb.send(udp4Frame(LOOP4, 40002, echo.port, Buffer.from(d)));
    await expect.poll(() => datagrams(sb.frames).length).toBe(3);
    const [{ cut }] = sb.egress.forwarder.relayedFlows();
    cut!('test over');
    expect(sb.egress.ends).toEqual([expect.objectContaining({ proto: 'udp', dst: '127.0.0.1', port: echo.port, bytesUp: 9, bytesDown: 9 + 3 * 5 })]);
  });

  it('sends a datagram that arrives as IPv4 fragments (left to the stack) on the same socket, counted', async () => {
    const echo = await echoServer(4);
    const sb = sandbox('127.0.0.1\n');
    sb.send(udp4Frame(LOOP4, 40003, echo.port, Buffer.from('first')));
    await expect.poll(() => echo.received.length).toBe(1);
    const whole = udp(SANDBOX4, LOOP4, 40003, echo.port, Buffer.from('fragmented datagram!'));
    sb.send(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: LOOP4, protocol: 17, id: 77, moreFragments: true, payload: whole.subarray(0, 16) })));
    sb.send(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: LOOP4, protocol: 17, id: 77, fragmentOffset: 16, payload: whole.subarray(16) })));
    await expect.poll(() => echo.received.map((r) => r.data)).toEqual(['first', 'fragmented datagram!']);
    expect(echo.received[1]!.port).toBe(echo.received[0]!.port);
    expect(sb.tap.stats.relayedIn).toBe(0);
    await expect.poll(() => datagrams(sb.frames).length).toBe(2);
    sb.egress.forwarder.relayedFlows()[0]!.cut('test over');
    expect(sb.egress.ends[0]).toMatchObject({ bytesUp: 5 + 20 });
  });

  it('sends a host datagram too big for one frame as IP fragments through the stack', async () => {
    const server = dgram.createSocket('udp4');
    server.on('message', (_m, r) => server.send(Buffer.alloc(4000, 0x62), r.port, r.address));
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const sb = sandbox('127.0.0.1\n');
    sb.send(udp4Frame(LOOP4, 40004, server.address().port, Buffer.from('big?')));
    // 4008 bytes of UDP in 1480-byte fragments: three frames, the first with the UDP header.
    await expect.poll(() => sb.frames.filter((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 17).length).toBe(3);
    const fragments = sb.frames.map(parseIpv4Frame).filter((f) => f.protocol === 17);
    expect(fragments.every((f) => f.headerOk)).toBe(true);
    expect(fragments.reduce((n, f) => n + f.payload.length, 0)).toBe(4008);
    expect(sb.tap.stats.relayedOut).toBe(0);
  });

  it('passes the host\'s port unreachable back as ICMP, quoting the sandbox\'s datagram', async () => {
    const sb = sandbox('127.0.0.1\n');
    const port = await closedPort();
    sb.send(udp4Frame(LOOP4, 40005, port, Buffer.from('anyone?')));
    await expect.poll(() => unreachable(sb.frames)).toContain(3);
    const icmp = sb.frames.find((f) => f[23] === 1)!;
    // The quoted packet: the sandbox's own IPv4 header and UDP ports.
    expect(icmp.subarray(42 + 12, 42 + 20)).toEqual(Buffer.concat([SANDBOX4, LOOP4]));
    expect(icmp.readUInt16BE(42 + 20)).toBe(40005);
    expect(icmp.readUInt16BE(42 + 22)).toBe(port);
  });

  it('expires an idle flow and reports it, but not while datagrams pass in C only', async () => {
    const echo = await echoServer(4);
    const sb = sandbox('127.0.0.1\n', { udp: { idleMs: 400 } });
    sb.send(udp4Frame(LOOP4, 40006, echo.port, Buffer.from('0')));
    await expect.poll(() => echo.received.length).toBe(1);
    // Traffic in C alone keeps the session: the stack's idle timer asks the relay when it was last active.
    for (let i = 1; i <= 8; i++) {
      await new Promise((r) => setTimeout(r, 150));
      sb.send(udp4Frame(LOOP4, 40006, echo.port, Buffer.from(String(i))));
    }
    await expect.poll(() => echo.received.length).toBe(9);
    expect(sb.egress.ends).toEqual([]);
    expect(sb.tap.stats.relayedIn).toBe(8);
    await expect.poll(() => sb.egress.ends.length, { timeout: 5000 }).toBe(1);
    expect(sb.egress.ends[0]).toMatchObject({ bytesUp: 9, bytesDown: 9 * 6 });
    expect(sb.egress.forwarder.relayedFlows()).toEqual([]);
  });

  it('with the virtio-net header, relays a datagram whose checksum the sandbox\'s kernel left to us, and only that one', async () => {
    const echo = await echoServer(4);
    const sb = sandbox('127.0.0.1\n', { vnetHdr: true });
    const NEEDS_CSUM = Buffer.from([1, 0, 0, 0, 0, 0, 34, 0, 6, 0]); // csum_start 34, csum_offset 6
    const NONE = Buffer.alloc(10);
    /** A datagram whose checksum field holds only the pseudo-header sum, as an offloading kernel sends it. */
    const partial = (data: string) => {
      const frame = Buffer.from(udp4Frame(LOOP4, 40009, echo.port, Buffer.from(data)));
      frame.writeUInt16BE(pseudoHeaderChecksum(SANDBOX4, LOOP4, 17, 8 + data.length), 40);
      return frame;
    };
    sb.send(Buffer.concat([NEEDS_CSUM, partial('first')]));
    await expect.poll(() => echo.received.length).toBe(1);
    sb.send(Buffer.concat([NEEDS_CSUM, partial('relayed')]));
    sb.send(Buffer.concat([NONE, partial('a checksum nobody offloaded')]));
    sb.send(Buffer.concat([NONE, udp4Frame(LOOP4, 40009, echo.port, Buffer.from('full checksum'))]));
    await expect.poll(() => echo.received.length).toBe(3);
    expect(echo.received.map((r) => r.data)).toEqual(['first', 'relayed', 'full checksum']);
    expect(sb.tap.stats.relayedIn).toBe(2);
    await expect.poll(() => datagrams(sb.frames).length).toBe(3);
    expect(datagrams(sb.frames).every((d) => d.ok)).toBe(true);
  });

  it('holds the flow limit: a second flow is refused while the first is relayed', async () => {
    const echo = await echoServer(4);
    const sb = sandbox('127.0.0.1\n', { maxFlows: 1 });
    sb.send(udp4Frame(LOOP4, 40007, echo.port, Buffer.from('in')));
    await expect.poll(() => echo.received.length).toBe(1);
    sb.send(udp4Frame(LOOP4, 40008, echo.port, Buffer.from('over the limit')));
    await expect.poll(() => unreachable(sb.frames)).toEqual([13]);
    expect(echo.received.map((r) => r.data)).toEqual(['in']);
  });
});

describe('native UDP relay, attacked from the sandbox', () => {
  /** An admitted flow from 10.0.2.100:41000 to the allowed echo server; a second server no rule allows. */
  async function admitted() {
    const allowed = await echoServer(4);
    const other = await echoServer(4);
    const sb = sandbox(`udp:127.0.0.1:${allowed.port}\n`);
    sb.send(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('hello')));
    await expect.poll(() => datagrams(sb.frames).length).toBe(1);
    sb.send(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('relayed')));
    await expect.poll(() => allowed.received.length).toBe(2);
    expect(sb.tap.stats.relayedIn).toBe(1);
    return { sb, allowed, other };
  }

  it('a changed destination port goes to the policy, which refuses it; nothing reaches the other port', async () => {
    const { sb, other } = await admitted();
    sb.send(udp4Frame(LOOP4, 41000, other.port, Buffer.from('sneak')));
    await expect.poll(() => unreachable(sb.frames)).toEqual([13]);
    expect(other.received).toEqual([]);
    expect(sb.tap.stats.relayedIn).toBe(1);
    expect(sb.egress.flows.map((f) => f.verdict)).toEqual(['allow', 'deny']);
  });

  it('a spoofed source address or port is not the admitted flow: a new flow, decided and audited on its own', async () => {
    const { sb, allowed } = await admitted();
    sb.send(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('spoofed address'), v4('10.0.2.101')));
    sb.send(udp4Frame(LOOP4, 41001, allowed.port, Buffer.from('spoofed port')));
    await expect.poll(() => allowed.received.length).toBe(4);
    expect(sb.tap.stats.relayedIn).toBe(1);
    expect(sb.egress.flows.map((f) => [f.verdict, f.src, f.srcPort])).toEqual([
      ['allow', '10.0.2.100', 41000],
      ['allow', '10.0.2.101', 41000],
      ['allow', '10.0.2.100', 41001],
    ]);
    // Each went out on a host socket of its own, not the admitted flow's.
    expect(new Set(allowed.received.map((r) => r.port)).size).toBe(3);
  });

  it('a frame with a bad UDP checksum, or to another MAC, is not relayed and reaches nobody', async () => {
    const { sb, allowed } = await admitted();
    const bad = Buffer.from(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('corrupt')));
    bad[bad.length - 1] ^= 0xff;
    sb.send(bad);
    const elsewhere = Buffer.from(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('not for us')));
    elsewhere[5] ^= 0x01;
    sb.send(elsewhere);
    sb.send(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('after')));
    await expect.poll(() => allowed.received.length).toBe(3);
    expect(allowed.received.map((r) => r.data)).toEqual(['hello', 'relayed', 'after']);
    expect(sb.tap.stats.relayedIn).toBe(2);
  });

  it('fragments to a port no rule allows are reassembled by the stack and refused, never relayed', async () => {
    const { sb, other } = await admitted();
    const whole = udp(SANDBOX4, LOOP4, 41000, other.port, Buffer.from('split to slip past the relay'));
    sb.send(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: LOOP4, protocol: 17, id: 9, moreFragments: true, payload: whole.subarray(0, 16) })));
    sb.send(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: LOOP4, protocol: 17, id: 9, fragmentOffset: 16, payload: whole.subarray(16) })));
    await expect.poll(() => unreachable(sb.frames)).toEqual([13]);
    expect(other.received).toEqual([]);
  });

  it('a flow revoked by a live deny rule stops at once: its next datagram is decided again and refused', async () => {
    const { sb, allowed } = await admitted();
    const live = new LivePolicy(sb.egress.policy, sb.egress.forwarder, sb.egress.auditor);
    live.deny(`udp:127.0.0.1:${allowed.port}`, { resetFlows: true });
    await expect.poll(() => unreachable(sb.frames)).toEqual([13]);
    expect(sb.egress.ends).toEqual([expect.objectContaining({ bytesUp: 5 + 7, error: expect.stringContaining('refused: denied by rule') })]);
    sb.send(udp4Frame(LOOP4, 41000, allowed.port, Buffer.from('still there?')));
    await expect.poll(() => unreachable(sb.frames)).toEqual([13, 13]);
    expect(allowed.received.map((r) => r.data)).toEqual(['hello', 'relayed']);
    expect(sb.tap.stats.relayedIn).toBe(1);
  });
});

describe('TapEndpoint.udpRelay', () => {
  const flow = { family: 4 as const, sandboxAddr: SANDBOX4, sandboxPort: 42000, remoteAddr: LOOP4, remotePort: 9, hostAddr: LOOP4, hostPort: 9 };
  const events = { refused() {}, oversize() {} };

  it('keeps a removed flow\'s last figures, and refuses a flow once the device is closed with an errno error', async () => {
    const [ours, peer] = socketpair();
    const tap = new TapEndpoint(ours, { mtu: 1500 });
    tap.udpRelay.enable(GATEWAY_MAC, SANDBOX_MAC, 1500);
    const relayed = tap.udpRelay.add(flow, events);
    relayed.send(Buffer.from('12345'));
    expect(relayed.figures()).toMatchObject({ bytesUp: 5, datagramsUp: 1, bytesDown: 0 });
    expect(() => tap.udpRelay.add(flow, events)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(relayed.remove()).toMatchObject({ bytesUp: 5, datagramsUp: 1 });
    relayed.send(Buffer.from('gone'));
    expect(relayed.remove()).toMatchObject({ bytesUp: 5 });
    tap.close();
    expect(() => tap.udpRelay.add(flow, events)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'udp relay socket' }));
    closeFd(peer);
  });
});

describe('the UDP forwarder and a relay that fails', () => {
  /** A session whose link relay throws `error` when handed the flow. */
  class FailingRelay extends FakeUdpRequest {
    constructor(private readonly error: Error) {
      super(flowId('198.18.0.1', 9), Buffer.from('x'));
    }
    override accept() {
      const conn = super.accept() as FakeUdpConn;
      conn.relay = () => {
        throw this.error;
      };
      return conn;
    }
  }

  it('answers host unreachable and frees the flow\'s slot when the relay\'s socket cannot open', () => {
    const { forwarder, ends } = fakeEgress('198.18.0.0/15\n', { maxFlows: 1 });
    for (let i = 0; i < 2; i++) {
      const req = new FailingRelay(Object.assign(new Error('udp relay socket: Network is unreachable'), { code: 'ENETUNREACH', syscall: 'udp relay socket' }));
      forwarder.udp(req);
      expect(req.rejected).toBeNull(); // accepted (the slot was free again), then refused with ICMP
      expect(req.conn).toMatchObject({ icmp: ['host-unreachable'], closed: true });
    }
    expect(ends).toEqual([]);
  });

  it('lets a bug in the relay surface instead of refusing the flow as if the host were unreachable', () => {
    const { forwarder } = fakeEgress('198.18.0.0/15\n');
    expect(() => forwarder.udp(new FailingRelay(new TypeError('conn.relay is not a function')))).toThrow(TypeError);
  });
});
