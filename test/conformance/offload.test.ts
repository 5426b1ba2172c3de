// What the link says the sandbox's kernel offloaded (the TAP with a virtio-net header: FrameOffload),
// through the Stack on the in-memory link: a TCP/UDP checksum left to us ("partial": the field holds
// only the pseudo-header sum) is not verified, but only when the link says so; a TCP super-segment
// (GSO) larger than the MTU is accepted and delivered intact, but only when the link says it is one.
import { describe, expect, it } from 'vitest';
import { fold, pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { ChannelEndpoint, ManualClock, Stack } from '../../netstack/index.js';
import { createTcp, type TcpConnection } from '../../netstack/transport/tcp/index.js';
import { GATEWAY_MAC, SANDBOX4, SANDBOX6, SANDBOX_MAC, TestForwarder, ethernet, ipv4, ipv6, parseIpv4Frame, parseIpv6Frame, udp, v4, v6 } from './frames.js';
import { ACK, PSH, SYN, bytes, decodeSegment, encode, settle, type SegmentSpec, type Sent } from './tcp-harness.js';

const REMOTE4 = v4('198.18.0.20');
const REMOTE6 = v6('2001:db8::20');
const MTU = 1500;
const PARTIAL = { checksumPartial: true, gsoSize: 0 };
const NOTHING_OFFLOADED = { checksumPartial: false, gsoSize: 0 };

type Family = 4 | 6;

function build() {
  const clock = new ManualClock();
  const link = new ChannelEndpoint({ mtu: MTU });
  const forwarder = new TestForwarder();
  const stack = new Stack({ link, clock, forwarder });
  const tcp = createTcp({ sender: stack, clock, forwarder });
  stack.registerTransport(tcp);
  return { clock, link, forwarder, stack, tcp };
}

function addresses(family: Family): { src: Buffer; dst: Buffer } {
  return family === 4 ? { src: SANDBOX4, dst: REMOTE4 } : { src: SANDBOX6, dst: REMOTE6 };
}

/** A TCP segment as the sandbox's kernel hands it over with the checksum left to us: only the pseudo-header sum. */
function partial(segment: Buffer, family: Family): Buffer {
  const { src, dst } = addresses(family);
  segment.writeUInt16BE(fold(pseudoHeaderChecksum(src, dst, 6, segment.length)), 16);
  return segment;
}

function frame(family: Family, segment: Buffer): Buffer {
  const { src, dst } = addresses(family);
  return family === 4
    ? ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src, dst, protocol: 6, payload: segment }))
    : ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(src, dst, 6, segment));
}

function sent(link: ChannelEndpoint, family: Family, now: number): Sent[] {
  const { src, dst } = addresses(family);
  return link.drain().map((f) => {
    const payload = family === 4 ? parseIpv4Frame(f).payload : parseIpv6Frame(f).payload;
    return decodeSegment(family, dst, src, Buffer.from(payload), now);
  });
}

/** An established connection from the sandbox (port 5555 to 80), with the pieces to talk on it. */
function established(family: Family) {
  const env = build();
  const { link, forwarder, clock } = env;
  const { src, dst } = addresses(family);
  const base = { srcPort: 5555, dstPort: 80 };
  link.inject(frame(family, encode(src, dst, { ...base, flags: SYN, seq: 100, mss: MTU - (family === 4 ? 40 : 60), windowShift: 7, sackPermitted: true })));
  const conn = forwarder.tcpRequests[0]!.accept() as TcpConnection;
  const synAck = sent(link, family, clock.now())[0]!;
  expect(synAck.flags).toBe(SYN | ACK);
  const ack = synAck.seq + 1;
  link.inject(frame(family, encode(src, dst, { ...base, flags: ACK, seq: 101, ack })));
  expect(conn.state).toBe('ESTABLISHED');
  const received: Buffer[] = [];
  conn.on('data', (d: Buffer) => received.push(d));
  /** A data segment at sequence number `seq`, with a correct checksum. */
  const segment = (seq: number, payload: Buffer, extra: Partial<SegmentSpec> = {}): Buffer =>
    encode(src, dst, { ...base, flags: ACK | PSH, seq, ack, payload, ...extra });
  return { ...env, conn, received, segment, synAck };
}

describe('checksums the link says were left to us', () => {
  for (const family of [4, 6] as const) {
    it(`IPv${family}: a TCP segment with only the pseudo-header sum is dropped, then accepted once the link says so`, async () => {
      const { link, tcp, clock, received, segment } = established(family);
      const data = Buffer.from('partial checksum, left to the supervisor');
      const f = frame(family, partial(segment(101, data), family));
      link.inject(f);
      link.inject(f, NOTHING_OFFLOADED);
      await settle();
      expect(tcp.stats.badChecksum).toBe(2);
      expect(received).toHaveLength(0);
      expect(link.drain()).toHaveLength(0);

      link.inject(f, PARTIAL);
      await settle();
      expect(tcp.stats.badChecksum).toBe(2);
      expect(Buffer.concat(received)).toEqual(data);
      clock.advance(500); // the delayed ACK
      expect(sent(link, family, clock.now()).at(-1)!.ack).toBe(101 + data.length);
    });
  }

  it('a wrong checksum is still dropped when the link vouches for nothing, whatever else it says', async () => {
    const { link, tcp, received, segment } = established(4);
    const f = frame(4, segment(101, Buffer.from('corrupted'), { badChecksum: true }));
    link.inject(f);
    link.inject(f, NOTHING_OFFLOADED);
    link.inject(f, { checksumPartial: false, gsoSize: 1448 });
    await settle();
    expect(tcp.stats.badChecksum).toBe(3);
    expect(received).toHaveLength(0);
  });

  for (const family of [4, 6] as const) {
    it(`IPv${family}: a UDP datagram with only the pseudo-header sum is dropped, then accepted once the link says so`, () => {
      const { link, forwarder, stack } = build();
      const { src, dst } = addresses(family);
      const datagram = udp(src, dst, 5353, 53, Buffer.from('query'));
      datagram.writeUInt16BE(fold(pseudoHeaderChecksum(src, dst, 17, datagram.length)), 6);
      const f = family === 4
        ? ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src, dst, protocol: 17, payload: datagram }))
        : ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(src, dst, 17, datagram));
      link.inject(f);
      expect(stack.counters.drops['udp-bad-checksum']).toBe(1);
      expect(forwarder.udpRequests).toHaveLength(0);
      link.inject(f, PARTIAL);
      expect(stack.counters.drops['udp-bad-checksum']).toBe(1);
      expect(forwarder.udpRequests).toHaveLength(1);
      expect(forwarder.udpRequests[0]!.id.dstPort).toBe(53);
    });
  }

  it('a datagram reassembled from fragments is verified even if the last fragment came with the word', () => {
    const { link, forwarder, stack } = build();
    const datagram = udp(SANDBOX4, REMOTE4, 5353, 9999, bytes(2000));
    datagram.writeUInt16BE(fold(pseudoHeaderChecksum(SANDBOX4, REMOTE4, 17, datagram.length)), 6);
    const fragment = (off: number, end: number, more: boolean) =>
      ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, id: 77, fragmentOffset: off, moreFragments: more, payload: datagram.subarray(off, end) }));
    link.inject(fragment(0, 1400, true), PARTIAL);
    link.inject(fragment(1400, datagram.length, false), PARTIAL);
    expect(stack.counters.drops['udp-bad-checksum']).toBe(1);
    expect(forwarder.udpRequests).toHaveLength(0);
  });
});

describe('TCP super-segments (GSO) larger than the MTU', () => {
  for (const family of [4, 6] as const) {
    it(`IPv${family}: a 60000-byte super-segment at MTU ${MTU} is accepted and delivered intact`, async () => {
      const { link, tcp, stack, clock, received, segment } = established(family);
      const data = bytes(60000, family);
      const f = frame(family, partial(segment(101, data), family));
      expect(f.length - 14).toBeGreaterThan(MTU);
      link.inject(f, { checksumPartial: true, gsoSize: MTU - (family === 4 ? 52 : 72) });
      await settle();
      expect(Buffer.concat(received)).toEqual(data);
      expect(stack.counters.drops['frame-too-long']).toBeUndefined();
      expect(tcp.stats.badChecksum).toBe(0);
      clock.advance(500);
      const acks = sent(link, family, clock.now());
      expect(acks.at(-1)!.ack).toBe(101 + data.length);

      // The next one, fully checksummed by its sender, is just as welcome.
      const more = bytes(30000, 9);
      link.inject(frame(family, segment(101 + data.length, more)), { checksumPartial: false, gsoSize: 1448 });
      await settle();
      expect(Buffer.concat(received)).toEqual(Buffer.concat([data, more]));
    });
  }

  for (const family of [4, 6] as const) {
    it(`IPv${family}: a packet larger than the MTU that the link does not call a super-segment is dropped`, async () => {
      const { link, tcp, stack, received, segment } = established(family);
      const f = frame(family, segment(101, bytes(3000)));
      link.inject(f);
      link.inject(f, NOTHING_OFFLOADED);
      link.inject(f, PARTIAL);
      await settle();
      expect(stack.counters.drops['frame-too-long']).toBe(3);
      expect(tcp.stats.segmentsReceived).toBe(2); // the handshake's SYN and ACK
      expect(received).toHaveLength(0);
      expect(link.drain()).toHaveLength(0);

      // One byte less than the MTU allows would have been fine: the limit is the MTU, not less.
      const fits = bytes(MTU - (family === 4 ? 40 : 60), 3);
      link.inject(frame(family, segment(101, fits)));
      await settle();
      expect(Buffer.concat(received)).toEqual(fits);
    });
  }

  it('an oversize UDP datagram is dropped without the word, as before the offloads', () => {
    const { link, forwarder, stack } = build();
    const f = ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload: udp(SANDBOX4, REMOTE4, 5353, 9999, bytes(3000)) }));
    link.inject(f);
    expect(stack.counters.drops['frame-too-long']).toBe(1);
    expect(forwarder.udpRequests).toHaveLength(0);
  });
});
