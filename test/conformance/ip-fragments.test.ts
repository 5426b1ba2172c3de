import { describe, expect, it } from 'vitest';
import type { UdpForwarderRequest } from '../../netstack/index.js';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { ethernet, GATEWAY4, GATEWAY_MAC, icmp4, icmp6, ipv4, ipv6, parseIpv6Frame, SANDBOX4, SANDBOX6, SANDBOX_MAC, setup, sumOk, udp, v4, v6 } from './frames.js';

const REMOTE4 = v4('198.18.0.1');
const REMOTE6 = v6('2001:db8::1');

/** Splits an IPv4 payload into fragments of `size` bytes (a multiple of 8) as frames. */
function fragments4(payload: Buffer, size: number, id: number, protocol = 17, dst = REMOTE4): Buffer[] {
  const frames: Buffer[] = [];
  for (let off = 0; off < payload.length; off += size) {
    const part = payload.subarray(off, off + size);
    const more = off + size < payload.length;
    frames.push(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst, protocol, id, payload: part, fragmentOffset: off, moreFragments: more })));
  }
  return frames;
}

function fragment6(offset: number, more: boolean, id: number, part: Buffer, nextHeader = 17, dst = REMOTE6): Buffer {
  const header = Buffer.alloc(8);
  header[0] = nextHeader;
  header.writeUInt16BE(offset | (more ? 1 : 0), 2);
  header.writeUInt32BE(id, 4);
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, dst, 44, Buffer.concat([header, part])));
}

function fragments6(payload: Buffer, size: number, id: number, nextHeader = 17, dst = REMOTE6): Buffer[] {
  const frames: Buffer[] = [];
  for (let off = 0; off < payload.length; off += size) {
    frames.push(fragment6(off, off + size < payload.length, id, payload.subarray(off, off + size), nextHeader, dst));
  }
  return frames;
}

/** A stack whose forwarder accepts every UDP flow and records what each delivers. */
function receiving(config: Parameters<typeof setup>[0] = {}) {
  const env = setup(config);
  const received: Buffer[] = [];
  env.forwarder.onUdp = (req: UdpForwarderRequest) => {
    const conn = req.accept();
    conn.onMessage = (payload) => received.push(payload);
  };
  return { ...env, received };
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 0xff));

describe('IPv4 fragment reassembly', () => {
  it('reassembles fragments that arrive in order', async () => {
    const { link, received, stack } = receiving();
    for (const f of fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 1024, 7)) link.inject(f);
    await flush();
    expect(received).toEqual([data]);
    expect(stack.ipv4.reassembler.bytesInUse).toBe(0);
  });

  it('reassembles fragments that arrive out of order', async () => {
    const { link, received } = receiving();
    const frames = fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 512, 8);
    for (const f of [...frames].reverse()) link.inject(f);
    await flush();
    expect(received).toEqual([data]);
  });

  it('answers a fragmented ping', () => {
    const { link } = setup();
    const ping = icmp4(8, 0, (5 << 16) | 6, data);
    for (const f of fragments4(ping, 1480, 9, 1, GATEWAY4)) link.inject(f);
    const replies = link.drain().map((f) => f.subarray(14));
    expect(replies.length).toBeGreaterThan(1);
    // The 3008-byte reply exceeds the 1500-byte MTU: it comes back as fragments of one datagram.
    for (const ip of replies) {
      expect(ip.length).toBeLessThanOrEqual(1500);
      expect(sumOk(ip, 0, 20)).toBe(true);
      expect(ip.readUInt16BE(4)).toBe(replies[0]!.readUInt16BE(4));
    }
    const reply = Buffer.concat(replies.map((ip) => ip.subarray(20)));
    expect(replies.map((ip) => (ip.readUInt16BE(6) & 0x1fff) * 8)).toEqual(replies.map((_, i) => replies.slice(0, i).reduce((n, r) => n + r.length - 20, 0)));
    expect(replies.map((ip) => (ip[6]! & 0x20) !== 0)).toEqual(replies.map((_, i) => i < replies.length - 1));
    expect(reply[0]).toBe(0);
    expect(sumOk(reply, 0, reply.length)).toBe(true);
    expect(reply.subarray(8)).toEqual(data);
  });

  it('drops a datagram with overlapping fragments, including its later fragments', async () => {
    const { link, received, stack } = receiving();
    const datagram = udp(SANDBOX4, REMOTE4, 4000, 9, data.subarray(0, 2000));
    const frame = (off: number, len: number, more: boolean) =>
      ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, id: 10, payload: datagram.subarray(off, off + len), fragmentOffset: off, moreFragments: more }));
    link.inject(frame(0, 1024, true));
    link.inject(frame(1016, 512, true)); // overlaps the first by 8 bytes
    link.inject(frame(1528, datagram.length - 1528, false));
    link.inject(frame(1024, 504, true)); // would have completed it
    await flush();
    expect(received).toHaveLength(0);
    expect(stack.counters.drops['fragment-overlap']).toBe(1);
    expect(stack.counters.drops['fragment-of-dropped-datagram']).toBe(2);
  });

  it('ignores an exact duplicate fragment', async () => {
    const { link, received } = receiving();
    const [first, second] = fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data.subarray(0, 1500)), 1024, 11);
    link.inject(first!);
    link.inject(first!);
    link.inject(second!);
    await flush();
    expect(received).toEqual([data.subarray(0, 1500)]);
  });

  it('frees an incomplete datagram when the reassembly timeout expires', async () => {
    const { link, clock, stack, received } = receiving();
    const [first, second] = fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 1024, 12);
    link.inject(first!);
    expect(stack.ipv4.reassembler.bytesInUse).toBeGreaterThan(1024);
    clock.advance(30_000);
    expect(stack.ipv4.reassembler.bytesInUse).toBe(0);
    expect(stack.ipv4.reassembler.pendingCount).toBe(0);
    expect(stack.counters.drops['reassembly-timeout']).toBe(1);
    link.inject(second!);
    await flush();
    expect(received).toHaveLength(0);
  });

  it('keeps reassembly memory under its cap by evicting the oldest datagrams', async () => {
    const { link, stack, received } = receiving({ reassembly4: { maxBytes: 16 * 1024 } });
    for (let id = 0; id < 100; id++) link.inject(fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 1024, id)[0]!);
    expect(stack.ipv4.reassembler.bytesInUse).toBeLessThanOrEqual(16 * 1024);
    expect(stack.counters.drops['reassembly-evicted']).toBeGreaterThan(80);
    // The newest datagram survived and still completes.
    for (const f of fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 1024, 99).slice(1)) link.inject(f);
    await flush();
    expect(received).toEqual([data]);
  });

  it('refuses a datagram whose fragments would exceed 65535 bytes', () => {
    const { link, stack } = setup();
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, id: 3, payload: Buffer.alloc(200), fragmentOffset: 65528, moreFragments: false })));
    expect(stack.counters.drops['fragment-too-big']).toBe(1);
    expect(stack.ipv4.reassembler.bytesInUse).toBe(0);
  });
});

describe('IPv6 fragment reassembly', () => {
  it('reassembles fragments in order and out of order', async () => {
    const { link, received } = receiving();
    const datagram = udp(SANDBOX6, REMOTE6, 4000, 9, data);
    for (const f of fragments6(datagram, 1232, 1)) link.inject(f);
    for (const f of fragments6(datagram, 1000, 2).reverse()) link.inject(f);
    await flush();
    expect(received).toEqual([data, data]);
  });

  it('answers a fragmented ping to fd00::2', () => {
    const { link } = setup();
    const gateway = v6('fd00::2');
    const ping = icmp6(SANDBOX6, gateway, 128, 0, (1 << 16) | 2, data);
    for (const f of fragments6(ping, 1232, 3, 58, gateway)) link.inject(f);
    const replies = link.drain().map((f) => parseIpv6Frame(f));
    expect(replies.length).toBeGreaterThan(1);
    for (const ip of replies) {
      expect(ip.lengthOk).toBe(true);
      expect(ip.nextHeader).toBe(44);
      expect(ip.payload[0]).toBe(58);
    }
    const offsets = replies.map((ip) => ip.payload.readUInt16BE(2) & 0xfff8);
    expect(offsets).toEqual(replies.map((_, i) => replies.slice(0, i).reduce((n, r) => n + r.payload.length - 8, 0)));
    const reply = Buffer.concat(replies.map((ip) => ip.payload.subarray(8)));
    expect(reply[0]).toBe(129);
    expect(sumOk(reply, 0, reply.length, pseudoHeaderChecksum(gateway, SANDBOX6, 58, reply.length))).toBe(true);
    expect(reply.subarray(8)).toEqual(data);
  });

  it('delivers an atomic fragment (offset 0, no more fragments) at once', async () => {
    const { link, received, stack } = receiving();
    link.inject(fragment6(0, false, 4, udp(SANDBOX6, REMOTE6, 4000, 9, Buffer.from('atomic'))));
    await flush();
    expect(received).toEqual([Buffer.from('atomic')]);
    expect(stack.ipv6.reassembler.pendingCount).toBe(0);
  });

  it('drops overlapping fragments and frees memory on timeout', async () => {
    const { link, received, stack, clock } = receiving();
    const datagram = udp(SANDBOX6, REMOTE6, 4000, 9, data.subarray(0, 2000));
    link.inject(fragment6(0, true, 5, datagram.subarray(0, 1024)));
    link.inject(fragment6(1000, false, 5, datagram.subarray(1000)));
    await flush();
    expect(received).toHaveLength(0);
    expect(stack.counters.drops['fragment-overlap']).toBe(1);
    link.inject(fragment6(0, true, 6, datagram.subarray(0, 1024)));
    expect(stack.ipv6.reassembler.bytesInUse).toBeGreaterThan(1024);
    clock.advance(60_000);
    expect(stack.ipv6.reassembler.bytesInUse).toBe(0);
    expect(stack.ipv6.reassembler.pendingCount).toBe(0);
  });

  it('refuses a non-final fragment whose length is not a multiple of 8', () => {
    const { link, stack } = setup();
    link.inject(fragment6(0, true, 7, Buffer.alloc(100)));
    expect(stack.counters.drops['fragment-bad-length']).toBe(1);
  });
});
