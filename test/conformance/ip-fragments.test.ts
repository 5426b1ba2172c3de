import { describe, expect, it } from 'vitest';
import type { Forwarder, UdpForwarderRequest } from '../../netstack/index.js';
import { ethernet, GATEWAY4, GATEWAY_MAC, icmp4, icmp6, ipv4, ipv6, parseIpv4Frame, parseIpv6Frame, SANDBOX4, SANDBOX6, SANDBOX_MAC, setup, udp, v4, v6 } from './frames.js';

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
function receiving() {
  const env = setup();
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
    const replies = link.drain();
    expect(replies).toHaveLength(1);
    expect(parseIpv4Frame(replies[0]!).payload.subarray(8)).toEqual(data);
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
    const { link, stack } = setup({ reassembly4: { maxBytes: 16 * 1024 } });
    for (let id = 0; id < 100; id++) link.inject(fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 1024, id)[0]!);
    expect(stack.ipv4.reassembler.bytesInUse).toBeLessThanOrEqual(16 * 1024);
    expect(stack.counters.drops['reassembly-evicted']).toBeGreaterThan(80);
    // The newest datagram survived and can still complete.
    const received: Buffer[] = [];
    const acceptAll: Forwarder['udp'] = (req) => {
      const conn = req.accept();
      conn.onMessage = (p) => received.push(p);
    };
    stack.udp; // eslint-friendly no-op avoided below
    const rest = fragments4(udp(SANDBOX4, REMOTE4, 4000, 9, data), 1024, 99).slice(1);
    (setupForwarder(stack, acceptAll));
    for (const f of rest) link.inject(f);
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
