import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateArp } from '../../netstack/header/arp.js';
import { checksumTs } from '../../netstack/header/checksum.js';
import { validateEthernet } from '../../netstack/header/ethernet.js';
import { findLinkLayerOption, validateIcmpv6 } from '../../netstack/header/icmpv6.js';
import { validateIcmpv4 } from '../../netstack/header/icmpv4.js';
import { Ipv4View, validateIpv4 } from '../../netstack/header/ipv4.js';
import { formatIpv6, Ipv6Walk, parseIpv6, validateIpv6, walkIpv6Extensions } from '../../netstack/header/ipv6.js';
import { validateUdp } from '../../netstack/header/udp.js';
import { ChannelEndpoint, ManualClock, Stack } from '../../netstack/index.js';
import { ethernet, GATEWAY_MAC, icmp4, icmp6, ipv4, ipv6, SANDBOX4, SANDBOX6, SANDBOX_MAC, TestForwarder, udp, v4, v6 } from '../conformance/frames.js';

const REMOTE4 = v4('198.18.0.1');
const REMOTE6 = v6('2001:db8::1');

describe('Ethernet and ARP validation', () => {
  it('rejects frames shorter than the Ethernet header', () => {
    expect(validateEthernet(Buffer.alloc(13))).toBe('short-frame');
    expect(validateEthernet(Buffer.alloc(14))).toBeNull();
  });

  it('rejects short and non-Ethernet/IPv4 ARP packets', () => {
    const arp = Buffer.from('0001080006040001' + '00'.repeat(20), 'hex');
    expect(validateArp(arp, 0, 28)).toBeNull();
    expect(validateArp(arp, 0, 27)).toBe('short-arp');
    expect(validateArp(arp.subarray(0, 20), 0, 28)).toBe('short-arp');
    const tokenRing = Buffer.from(arp);
    tokenRing.writeUInt16BE(6, 0);
    expect(validateArp(tokenRing, 0, 28)).toBe('arp-not-ethernet-ipv4');
    const badOp = Buffer.from(arp);
    badOp.writeUInt16BE(9, 6);
    expect(validateArp(badOp, 0, 28)).toBe('arp-bad-op');
  });
});

describe('IPv4 validation', () => {
  const good = ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload: Buffer.alloc(12) });

  it('accepts a well-formed packet, with options and with link padding after it', () => {
    expect(validateIpv4(good, 0, good.length)).toBeNull();
    const withOptions = ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload: Buffer.alloc(4), options: Buffer.from([1, 1, 1, 0]) });
    expect(validateIpv4(withOptions, 0, withOptions.length)).toBeNull();
    expect(new Ipv4View().of(withOptions).payloadLength).toBe(4);
    const padded = Buffer.concat([good, Buffer.alloc(10)]);
    expect(validateIpv4(padded, 0, padded.length)).toBeNull();
  });

  it('rejects short packets, a wrong version, a bad IHL, bad lengths and a bad checksum', () => {
    expect(validateIpv4(good.subarray(0, 19), 0, 19)).toBe('ipv4-short');
    const v6 = Buffer.from(good);
    v6[0] = 0x65;
    expect(validateIpv4(v6, 0, v6.length)).toBe('ipv4-bad-version');
    const ihl4 = Buffer.from(good);
    ihl4[0] = 0x44;
    expect(validateIpv4(ihl4, 0, ihl4.length)).toBe('ipv4-bad-ihl');
    const ihlPastTotal = Buffer.from(good);
    ihlPastTotal[0] = 0x4f; // 60-byte header in a 32-byte packet
    expect(validateIpv4(ihlPastTotal, 0, ihlPastTotal.length)).toBe('ipv4-bad-length');
    const longTotal = Buffer.from(good);
    longTotal.writeUInt16BE(good.length + 1, 2);
    expect(validateIpv4(longTotal, 0, longTotal.length)).toBe('ipv4-bad-length');
    expect(validateIpv4(good.subarray(0, good.length - 1), 0, good.length - 1)).toBe('ipv4-bad-length');
    const badSum = Buffer.from(good);
    badSum[8] = 1; // TTL changed, checksum not
    expect(validateIpv4(badSum, 0, badSum.length)).toBe('ipv4-bad-checksum');
  });

  it('never reads past the bytes it is given', () => {
    // A length argument larger than the buffer must not make it read beyond the buffer.
    expect(validateIpv4(good.subarray(0, 10), 0, 100)).toBe('ipv4-short');
    expect(validateIpv4(good.subarray(0, 25), 0, 100)).toBe('ipv4-bad-length');
  });
});

describe('IPv6 validation and extension header walk', () => {
  const walk = new Ipv6Walk();
  const packet = (nextHeader: number, payload: Buffer) => ipv6(SANDBOX6, REMOTE6, nextHeader, payload);
  const ext = (next: number, body: Buffer) => Buffer.concat([Buffer.from([next, (body.length + 2) / 8 - 1]), body]);

  it('rejects short packets, a wrong version, a payload length past the end and jumbograms', () => {
    const p = packet(17, Buffer.alloc(8));
    expect(validateIpv6(p, 0, p.length)).toBeNull();
    expect(validateIpv6(p.subarray(0, 39), 0, 39)).toBe('ipv6-short');
    const v4 = Buffer.from(p);
    v4[0] = 0x45;
    expect(validateIpv6(v4, 0, v4.length)).toBe('ipv6-bad-version');
    expect(validateIpv6(p.subarray(0, 47), 0, 47)).toBe('ipv6-bad-length');
    const jumbo = packet(0, Buffer.alloc(8));
    jumbo.writeUInt16BE(0, 4);
    expect(validateIpv6(jumbo, 0, jumbo.length)).toBe('ipv6-jumbogram');
  });

  it('walks hop-by-hop, routing (no segments left) and destination options to the upper layer', () => {
    const hop = ext(43, Buffer.from([1, 4, 0, 0, 0, 0])); // PadN
    const routing = ext(60, Buffer.from([0, 0, 0, 0, 0, 0]));
    const dest = ext(17, Buffer.from([0, 0, 0, 0, 0, 0])); // six Pad1
    const p = packet(0, Buffer.concat([hop, routing, dest, Buffer.alloc(8)]));
    const w = walkIpv6Extensions(p, 0, p.length, walk);
    expect(w.reason).toBeNull();
    expect(w.protocol).toBe(17);
    expect(w.payloadOffset).toBe(64);
  });

  it('rejects truncated headers and options, misplaced hop-by-hop, unknown discard options, source routes', () => {
    const reason = (p: Buffer) => walkIpv6Extensions(p, 0, p.length, walk).reason;
    expect(reason(packet(60, Buffer.from([17, 0, 0, 0])))).toBe('ipv6-truncated-extension-header');
    expect(reason(packet(60, Buffer.from([17, 1, 0, 0, 0, 0, 0, 0])))).toBe('ipv6-truncated-extension-header');
    expect(reason(packet(60, ext(17, Buffer.from([1, 9, 0, 0, 0, 0]))))).toBe('ipv6-truncated-option');
    expect(reason(packet(60, ext(0, Buffer.alloc(6))))).toBe('ipv6-misplaced-hop-by-hop');
    expect(reason(packet(60, ext(17, Buffer.from([0x80, 4, 0, 0, 0, 0]))))).toBe('ipv6-unknown-option');
    expect(reason(packet(0, ext(17, Buffer.from([0x05, 4, 0, 0, 0, 0]))))).toBeNull(); // "skip if unknown"
    expect(reason(packet(43, ext(17, Buffer.from([0, 1, 0, 0, 0, 0]))))).toBe('ipv6-routing-header');
    expect(reason(packet(44, Buffer.from([17, 0, 0, 0])))).toBe('ipv6-truncated-extension-header');
  });

  it('stops a long chain of extension headers', () => {
    const chain = Buffer.concat(Array.from({ length: 40 }, () => ext(60, Buffer.alloc(6))));
    const p = packet(60, chain);
    expect(walkIpv6Extensions(p, 0, p.length, walk).reason).toBe('ipv6-too-many-extension-headers');
  });

  it('reports a real fragment and walks through an atomic one', () => {
    const frag = (offsetFlags: number) => Buffer.from([17, 0, offsetFlags >> 8, offsetFlags & 0xff, 0, 0, 0, 42]);
    const first = packet(44, Buffer.concat([frag(1), Buffer.alloc(8)]));
    const w = walkIpv6Extensions(first, 0, first.length, walk);
    expect([w.fragmentHeaderOffset, w.fragmentOffset, w.moreFragments, w.fragmentId, w.protocol]).toEqual([40, 0, true, 42, 17]);
    const atomic = packet(44, Buffer.concat([frag(0), Buffer.alloc(8)]));
    const a = walkIpv6Extensions(atomic, 0, atomic.length, walk);
    expect([a.fragmentHeaderOffset, a.protocol, a.payloadOffset]).toEqual([-1, 17, 48]);
  });

  it('formats and parses addresses (RFC 5952) as inverses', () => {
    expect(formatIpv6(parseIpv6('fd00::100'))).toBe('fd00::100');
    expect(formatIpv6(parseIpv6('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(parseIpv6('::'))).toBe('::');
    expect(() => parseIpv6('1::2::3')).toThrow();
    expect(() => parseIpv6('12345::')).toThrow();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        expect(parseIpv6(formatIpv6(bytes))).toEqual(bytes);
      }),
    );
  });
});

describe('ICMP, NDP option and UDP validation', () => {
  it('rejects short ICMP messages and bad checksums', () => {
    const m = icmp4(8, 0, 1, Buffer.from('abc'));
    expect(validateIcmpv4(m, 0, m.length)).toBeNull();
    expect(validateIcmpv4(m, 0, 7)).toBe('icmp-short');
    m[9]! ^= 1;
    expect(validateIcmpv4(m, 0, m.length)).toBe('icmp-bad-checksum');
    const m6 = icmp6(SANDBOX6, REMOTE6, 128, 0, 1, Buffer.from('abc'));
    expect(validateIcmpv6(m6, 0, m6.length, SANDBOX6, REMOTE6)).toBeNull();
    expect(validateIcmpv6(m6, 0, m6.length, SANDBOX6, SANDBOX6)).toBe('icmpv6-bad-checksum');
    expect(validateIcmpv6(m6, 0, 4, SANDBOX6, REMOTE6)).toBe('icmpv6-short');
  });

  it('finds a link-layer option and refuses zero-length or truncated options', () => {
    const opts = Buffer.from([9, 1, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 0]);
    expect(findLinkLayerOption(opts, 0, opts.length, 1)).toBe(10);
    expect(findLinkLayerOption(opts, 0, opts.length, 2)).toBe(-1);
    expect(findLinkLayerOption(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), 0, 8, 1)).toBe('ndp-zero-length-option');
    expect(findLinkLayerOption(Buffer.from([1, 2, 0, 0, 0, 0, 0, 0]), 0, 8, 1)).toBe('ndp-truncated-option');
    expect(findLinkLayerOption(Buffer.from([1]), 0, 1, 1)).toBe('ndp-truncated-option');
  });

  it('rejects short datagrams, bad lengths and bad checksums; zero checksum only over IPv4', () => {
    const d = udp(SANDBOX4, REMOTE4, 1, 2, Buffer.from('data'));
    expect(validateUdp(d, 0, d.length, SANDBOX4, REMOTE4)).toBeNull();
    expect(validateUdp(d, 0, 7, SANDBOX4, REMOTE4)).toBe('udp-short');
    const tiny = Buffer.from(d);
    tiny.writeUInt16BE(7, 4);
    expect(validateUdp(tiny, 0, tiny.length, SANDBOX4, REMOTE4)).toBe('udp-bad-length');
    expect(validateUdp(d, 0, d.length - 1, SANDBOX4, REMOTE4)).toBe('udp-bad-length');
    expect(validateUdp(d, 0, d.length, SANDBOX4, v4('198.18.0.2'))).toBe('udp-bad-checksum');
    const none = Buffer.from(d);
    none.writeUInt16BE(0, 6);
    expect(validateUdp(none, 0, none.length, SANDBOX4, REMOTE4)).toBeNull();
    const none6 = udp(SANDBOX6, REMOTE6, 1, 2, Buffer.from('data'), 0);
    expect(validateUdp(none6, 0, none6.length, SANDBOX6, REMOTE6)).toBe('udp-zero-checksum');
  });
});

describe('the stack on hostile input', () => {
  function fuzzStack() {
    const link = new ChannelEndpoint({ mtu: 1500 });
    const forwarder = new TestForwarder();
    forwarder.onUdp = (req) => req.accept();
    const stack = new Stack({ link, clock: new ManualClock(), forwarder });
    return { link, stack };
  }

  const seeds = [
    ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload: udp(SANDBOX4, REMOTE4, 1, 2, Buffer.from('x')) })),
    ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: v4('10.0.2.2'), protocol: 1, payload: icmp4(3, 3, 0, ipv4({ src: REMOTE4, dst: SANDBOX4, protocol: 17, payload: Buffer.alloc(8) })) })),
    ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, id: 5, moreFragments: true, payload: Buffer.alloc(16) })),
    ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, REMOTE6, 0, Buffer.concat([Buffer.from([44, 0, 1, 4, 0, 0]), Buffer.from([17, 0, 0, 1, 0, 0, 0, 9]), Buffer.alloc(16)]))),
    ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, v6('fd00::2'), 58, icmp6(SANDBOX6, v6('fd00::2'), 135, 0, 0, Buffer.concat([v6('fd00::2'), Buffer.from([1, 1, 2, 0, 0, 0, 1, 0])])), 255)),
    ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0806, Buffer.from('0001080006040001' + '00'.repeat(20), 'hex')),
  ];

  it('never throws on random bytes', () => {
    const { link, stack } = fuzzStack();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        link.inject(bytes);
        link.drain();
      }),
      { numRuns: 2000 },
    );
    expect(stack.counters.framesIn).toBeGreaterThan(0);
  });

  it('never throws on mutations and truncations of valid frames', () => {
    const { link } = fuzzStack();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: seeds.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat(),
        (which, edits, cut) => {
          const frame = Buffer.from(seeds[which]!);
          for (const [pos, value] of edits) frame[14 + (pos % (frame.length - 14))] = value;
          // Repair the IPv4 header checksum so the mutations reach the layers behind it.
          if (frame.readUInt16BE(12) === 0x0800) {
            frame.writeUInt16BE(0, 24);
            frame.writeUInt16BE(~checksumTs(frame, 14, 20) & 0xffff, 24);
          }
          link.inject(frame.subarray(0, 14 + (cut % (frame.length - 13))));
          link.drain();
        },
      ),
      { numRuns: 5000 },
    );
  });
});
