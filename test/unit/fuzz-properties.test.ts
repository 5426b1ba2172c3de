// Property tests (fast-check) for every parser on the sandbox's side of the wire: random frames,
// real frames (test/corpus/frames/, cut from a pcap of tap0) mutated byte by byte with their checksums
// fixed up so the mutations reach past the checksum checks, truncated and oversized length fields,
// TCP option loops, IPv6 extension chains, overlapping IP fragments, DNS messages, and the native
// checksum binding's range checks. The contract: nothing the sandbox sends makes a parser throw (an
// exception escaping the stack would kill the supervisor), malformed input is dropped and counted,
// and memory stays within its caps. The libFuzzer harnesses (native/fuzz/) cover the C side.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checksumTs, pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { parseTcpOptions, TcpOptions } from '../../netstack/header/tcp.js';
import { Ipv6Walk, walkIpv6Extensions } from '../../netstack/header/ipv6.js';
import { native } from '../../native/addon/index.js';
import type { Forwarder, TcpForwarderRequest, UdpForwarderRequest } from '../../netstack/index.js';
import { createTcp } from '../../netstack/transport/tcp/index.js';
import { DnsProxy } from '../../src/egress/dns/proxy.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';
import { ethernet, GATEWAY_MAC, ipv4, ipv6, SANDBOX4, SANDBOX6, SANDBOX_MAC, setup, udp, v4, v6 } from '../conformance/frames.js';
import { repoRoot } from '../helpers/tapbox.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const corpusDir = join(repoRoot, 'test', 'corpus', 'frames');
const corpus = readdirSync(corpusDir).map((f) => readFileSync(join(corpusDir, f)));

/** Accepts every flow and reads whatever comes, so mutated segments reach established connections too. */
class AcceptingForwarder implements Forwarder {
  readonly udpPayloads: Buffer[] = [];
  tcp(req: TcpForwarderRequest): void {
    const conn = req.accept();
    conn.on('error', () => {});
    conn.on('data', () => {});
  }
  udp(req: UdpForwarderRequest): void {
    this.udpPayloads.push(req.firstPayload);
    const conn = req.accept();
    conn.onMessage = () => {};
  }
}

function stackUnderTest() {
  const forwarder = new AcceptingForwarder();
  const env = setup({ forwarder, reassembly4: { maxBytes: 64 << 10 }, reassembly6: { maxBytes: 64 << 10 } }, 9000);
  const tcp = createTcp({ sender: env.stack, clock: env.clock, forwarder });
  env.stack.registerTransport(tcp);
  return { ...env, forwarder, tcp };
}

/** Frames addressed to us (the gateway MAC), whichever way they went in the capture. */
const seeds = corpus.map((f) => {
  const frame = Buffer.from(f);
  GATEWAY_MAC.copy(frame, 0);
  SANDBOX_MAC.copy(frame, 6);
  return frame;
});

/** Recomputes the IPv4 header checksum and the TCP/UDP/ICMP checksum where the lengths allow, so a mutation gets past them. */
function fixChecksums(frame: Buffer): void {
  if (frame.length < 14) return;
  const type = frame.readUInt16BE(12);
  let l4 = -1;
  let proto = -1;
  let src: Buffer | null = null;
  let dst: Buffer | null = null;
  let end = frame.length;
  if (type === 0x0800 && frame.length >= 34) {
    const ihl = (frame[14]! & 15) * 4;
    if (ihl < 20 || 14 + ihl > frame.length) return;
    frame.writeUInt16BE(0, 24);
    frame.writeUInt16BE(~checksumTs(frame, 14, ihl) & 0xffff, 24);
    end = Math.min(frame.length, 14 + frame.readUInt16BE(16));
    if ((frame.readUInt16BE(20) & 0x3fff) !== 0) return; // a fragment: the checksum covers the whole datagram
    l4 = 14 + ihl;
    proto = frame[23]!;
    src = frame.subarray(26, 30);
    dst = frame.subarray(30, 34);
  } else if (type === 0x86dd && frame.length >= 54) {
    end = Math.min(frame.length, 54 + frame.readUInt16BE(18));
    l4 = 54;
    proto = frame[20]!;
    src = frame.subarray(22, 38);
    dst = frame.subarray(38, 54);
  }
  if (l4 < 0 || !src || !dst || end <= l4) return;
  const len = end - l4;
  const at = proto === 6 ? 16 : proto === 17 ? 6 : proto === 1 || proto === 58 ? 2 : -1;
  if (at < 0 || len < at + 2) return;
  frame.writeUInt16BE(0, l4 + at);
  const pseudo = proto === 1 ? 0 : pseudoHeaderChecksum(src, dst, proto, len);
  frame.writeUInt16BE(~checksumTs(frame, l4, len, pseudo) & 0xffff, l4 + at);
}

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
  // Length fields: IPv4 total length / IHL, IPv6 payload length, UDP length, TCP data offset.
  fc.record({ kind: fc.constant('length' as const), which: fc.constantFrom(16, 14, 18, 38, 46, 58, 66), value: fc.integer({ min: 0, max: 0xffff }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(seed: Buffer, mutations: Mutation[], fix: boolean): Buffer {
  let f = Buffer.from(seed);
  for (const m of mutations) {
    if (m.kind === 'set' && f.length) f[m.at % f.length] = m.value;
    if (m.kind === 'flip' && f.length) f[m.at % f.length]! ^= 1 << m.bit;
    if (m.kind === 'truncate') f = f.subarray(0, m.at % (f.length + 1));
    if (m.kind === 'extend') f = Buffer.concat([f, m.bytes]);
    if (m.kind === 'length' && m.which + 2 <= f.length) {
      if (m.which === 14) f[14] = (f[14]! & 0xf0) | (m.value & 15);
      else f.writeUInt16BE(m.value, m.which);
    }
  }
  if (fix) fixChecksums(f);
  return f;
}

describe('the stack never throws on what the sandbox sends', () => {
  it('random bytes', () => {
    const s = stackUnderTest();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1600 }), (bytes) => {
        s.link.inject(Buffer.from(bytes));
      }),
      { numRuns: RUNS },
    );
    expect(s.stack.counters.framesIn).toBe(RUNS);
  });

  it('random payloads behind a valid Ethernet header (ARP, IPv4, IPv6)', () => {
    const s = stackUnderTest();
    fc.assert(
      fc.property(fc.constantFrom(0x0806, 0x0800, 0x86dd), fc.uint8Array({ maxLength: 1600 }), (type, payload) => {
        const frame = ethernet(GATEWAY_MAC, SANDBOX_MAC, type, Buffer.from(payload));
        fixChecksums(frame);
        s.link.inject(frame);
      }),
      { numRuns: RUNS },
    );
  });

  it('real frames from a tap0 capture, mutated, with and without their checksums fixed', () => {
    expect(seeds.length).toBeGreaterThan(10);
    const s = stackUnderTest();
    let delivered = 0;
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.boolean(), (seed, mutations, fix) => {
        s.link.inject(mutate(seed, mutations, fix));
        delivered++;
      }),
      { numRuns: RUNS * 3 },
    );
    expect(delivered).toBe(RUNS * 3);
    // Whatever the stack kept, it kept under its caps.
    expect(s.stack.ipv4.reassembler.bytesInUse).toBeLessThanOrEqual(64 << 10);
    expect(s.stack.ipv6.reassembler.bytesInUse).toBeLessThanOrEqual(64 << 10);
  });

  it('the unmutated seeds are accepted (the corpus is real traffic, not noise)', () => {
    const s = stackUnderTest();
    for (const f of seeds) s.link.inject(f);
    const dropped = Object.values(s.stack.counters.drops).reduce((a, b) => a + b, 0);
    expect(dropped).toBeLessThan(seeds.length / 2);
  });
});

describe('TCP options', () => {
  it('any option bytes parse to values in range, and the parse always ends', () => {
    const out = new TcpOptions();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const buf = Buffer.concat([Buffer.alloc(20), bytes]);
        parseTcpOptions(buf, 20, buf.length, out);
        expect(out.mss).toBeGreaterThanOrEqual(0);
        expect(out.mss).toBeLessThanOrEqual(0xffff);
        expect(out.windowShift).toBeGreaterThanOrEqual(-1);
        expect(out.windowShift).toBeLessThanOrEqual(14);
        expect(out.sackBlockCount).toBeLessThanOrEqual(4);
      }),
      { numRuns: RUNS * 5 },
    );
  });

  it('option loops: zero and one lengths, lengths past the header end stop the parse', () => {
    const out = new TcpOptions();
    // kind 2 (MSS) with length 0 and 1: a parser that advanced by the length would never end.
    for (const bytes of [[2, 0, 0, 0], [2, 1, 5, 180], [3, 0], [8, 255, 0, 0], [1, 1, 1, 2]]) {
      parseTcpOptions(Buffer.from(bytes), 0, bytes.length, out);
      expect(out.mss).toBe(0);
    }
  });

  it('SYNs with random options are answered (SYN-ACK or RST) without a throw', () => {
    const s = stackUnderTest();
    let port = 1024;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (opts) => {
        const optLen = Math.ceil(opts.length / 4) * 4;
        const seg = Buffer.alloc(20 + optLen);
        seg.writeUInt16BE(port++, 0);
        seg.writeUInt16BE(443, 2);
        seg.writeUInt32BE(1000, 4);
        seg[12] = ((20 + optLen) / 4) << 4;
        seg[13] = 0x02;
        seg.writeUInt16BE(65535, 14);
        Buffer.from(opts).copy(seg, 20);
        const dst = v4('198.18.0.9');
        seg.writeUInt16BE(~checksumTs(seg, 0, seg.length, pseudoHeaderChecksum(SANDBOX4, dst, 6, seg.length)) & 0xffff, 16);
        s.link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst, protocol: 6, payload: seg })));
        const out = s.link.drain();
        expect(out.length).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('IPv6 extension headers', () => {
  const ext = fc.record({
    type: fc.constantFrom(0, 43, 44, 60, 51, 50, 135, 59, 6, 17, 58),
    len: fc.integer({ min: 0, max: 255 }),
    body: fc.uint8Array({ maxLength: 64 }),
  });
  it('any chain is walked inside the packet, or rejected with a reason', () => {
    const walk = new Ipv6Walk();
    fc.assert(
      fc.property(fc.array(ext, { maxLength: 20 }), fc.integer({ min: 0, max: 40 }), (chain, cut) => {
        const parts = [Buffer.alloc(40)];
        parts[0]![0] = 0x60;
        parts[0]![6] = chain[0]?.type ?? 59;
        chain.forEach((e, i) => {
          const h = Buffer.alloc(2 + e.body.length);
          h[0] = chain[i + 1]?.type ?? 59;
          h[1] = e.len;
          Buffer.from(e.body).copy(h, 2);
          parts.push(h);
        });
        let packet = Buffer.concat(parts);
        packet = packet.subarray(0, Math.max(40, packet.length - cut));
        walkIpv6Extensions(packet, 0, packet.length, walk);
        if (walk.reason === null) expect(walk.payloadOffset).toBeLessThanOrEqual(packet.length);
      }),
      { numRuns: RUNS * 3 },
    );
  });
});

describe('IP fragments', () => {
  const plan = fc.record({
    data: fc.uint8Array({ minLength: 16, maxLength: 3000 }),
    cuts: fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 12 }),
    order: fc.array(fc.nat(), { maxLength: 40 }),
    overlap: fc.option(fc.record({ at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) })),
  });

  it.each([4, 6] as const)('IPv%i: in any order they reassemble exactly; any overlap drops the datagram (RFC 5722)', (family) => {
    let id = 1;
    fc.assert(
      fc.property(plan, ({ data, cuts, order, overlap }) => {
        const s = stackUnderTest();
        const src = family === 4 ? SANDBOX4 : SANDBOX6;
        const dst = family === 4 ? v4('198.18.0.9') : v6('2001:db8::9');
        const datagram = udp(src, dst, 4000, 9, Buffer.from(data));
        // Fragment boundaries at multiples of 8.
        const bounds = [0];
        for (const c of cuts) {
          const next = bounds[bounds.length - 1]! + c * 8;
          if (next >= datagram.length) break;
          bounds.push(next);
        }
        bounds.push(datagram.length);
        const frags: { off: number; bytes: Buffer; more: boolean }[] = [];
        for (let i = 0; i + 1 < bounds.length; i++) frags.push({ off: bounds[i]!, bytes: datagram.subarray(bounds[i]!, bounds[i + 1]!), more: i + 2 < bounds.length });
        let overlapping = false;
        if (overlap && frags.length > 1) {
          // A fragment whose range crosses another one's but is not an exact duplicate.
          const off = (overlap.at % Math.max(1, Math.floor(datagram.length / 8))) * 8;
          const len = Math.min(overlap.len * 8, datagram.length - off);
          const exact = frags.some((f) => f.off === off && f.bytes.length === len);
          const whole = off === 0 && len === datagram.length; // offset 0 without MF is no fragment at all
          if (len > 0 && !exact && !whole && (len % 8 === 0 || off + len === datagram.length)) {
            frags.push({ off, bytes: Buffer.alloc(len, 0xee), more: off + len < datagram.length });
            overlapping = true;
          }
        }
        for (let i = frags.length - 1; i > 0; i--) {
          const j = (order[i] ?? i) % (i + 1);
          [frags[i], frags[j]] = [frags[j]!, frags[i]!];
        }
        const ipId = id++ & 0xffff;
        for (const f of frags) {
          if (family === 4) {
            s.link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src, dst, protocol: 17, id: ipId, fragmentOffset: f.off, moreFragments: f.more, payload: f.bytes })));
          } else {
            const header = Buffer.alloc(8);
            header[0] = 17;
            header.writeUInt16BE(f.off | (f.more ? 1 : 0), 2);
            header.writeUInt32BE(ipId, 4);
            s.link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(src, dst, 44, Buffer.concat([header, f.bytes]))));
          }
        }
        const got = s.forwarder.udpPayloads;
        if (overlapping) {
          // Before the datagram is whole, the overlap poisons it: nothing is delivered. After, it only
          // starts a new datagram that never completes.
          const overlapAt = frags.findIndex((f) => f.bytes.length > 0 && f.bytes.every((b) => b === 0xee) && !datagram.subarray(f.off, f.off + f.bytes.length).equals(f.bytes));
          const lastOriginalAt = Math.max(...frags.map((f, i) => (i === overlapAt ? -1 : i)));
          expect(got).toEqual(overlapAt > lastOriginalAt ? [Buffer.from(data)] : []);
        } else {
          expect(got).toEqual([Buffer.from(data)]);
        }
        expect(s.stack.ipv4.reassembler.bytesInUse + s.stack.ipv6.reassembler.bytesInUse).toBeLessThanOrEqual(64 << 10);
      }),
      { numRuns: Math.max(200, RUNS / 4) },
    );
  });
});

describe('DNS proxy', () => {
  const policy = Policy.fromAllowlists([parse('*.example.com\n', 'test.allow')], {});
  const upstream = {
    resolve: async (q: { name: string; type: string }) =>
      ({ flags: 0, answers: q.type === 'A' ? [{ type: 'A', name: q.name, ttl: 60, data: '198.18.0.1' }] : [] }) as never,
  };
  const proxy = new DnsProxy({ policy, upstream, hostAddrs: new Set() });
  const check = async (msg: Buffer) => {
    const reply = await proxy.answer(msg, 'udp');
    if (reply === null) return;
    const decoded = dnsPacket.decode(reply);
    expect(decoded.type).toBe('response');
    expect(decoded.id).toBe(msg.readUInt16BE(0));
  };

  it('random messages: an answer with the same id, or none, never an exception', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), (bytes) => check(Buffer.from(bytes))), { numRuns: RUNS });
  });

  it('real queries, mutated (names, counts, compression pointers, lengths)', async () => {
    const queries = ['a.example.com', 'x.y.example.com', 'evil.test'].flatMap((name) =>
      ['A', 'AAAA', 'TXT', 'ANY'].map((type) => dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name }] })),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...queries), fc.array(mutation, { minLength: 1, maxLength: 4 }), (q, mutations) => {
        const m = mutate(q, mutations.filter((x) => x.kind !== 'length'), false);
        return m.length >= 2 ? check(m) : Promise.resolve();
      }),
      { numRuns: RUNS },
    );
  });
});

describe.runIf(native !== null)('native checksum binding', () => {
  it('any offset and length: the TypeScript sum, or a RangeError, never a read out of bounds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.integer({ min: -4, max: 600 }), fc.integer({ min: -4, max: 600 }), fc.integer({ min: 0, max: 0xffff }), (bytes, off, len, initial) => {
        const buf = Buffer.from(bytes);
        const inRange = off >= 0 && len >= 0 && off + len <= buf.length;
        if (inRange) expect(native!.checksum(buf, off, len, initial)).toBe(checksumTs(buf, off, len, initial));
        else expect(() => native!.checksum(buf, off, len, initial)).toThrow(RangeError);
      }),
      { numRuns: RUNS * 2 },
    );
  });
});
