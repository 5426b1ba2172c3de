// The TCP header view and option codec (netstack/header/tcp.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TcpHeader, TcpOptions, TcpRepr, parseTcpOptions, tcpOptionsLength } from '../../netstack/header/tcp.js';

/** A TcpRepr with these options set (the rest absent). */
function reprWith(set: (o: TcpOptions) => void): TcpRepr {
  const r = new TcpRepr();
  set(r.options);
  return r;
}

describe('TCP header codec', () => {
  it('reads back every field it writes', () => {
    const buf = Buffer.alloc(40);
    const r = Object.assign(new TcpRepr(), { srcPort: 443, dstPort: 40000, seq: 0xfffffffe, ack: 12345, flags: 0x18, window: 5000 });
    r.options.hasTimestamp = true; // 12 bytes of options: a 32-byte header
    const h = new TcpHeader(buf, 4);
    expect(r.emit(h)).toBe(32);
    expect([h.srcPort, h.dstPort, h.seq, h.ack, h.dataOffset, h.flags, h.window, h.checksum, h.urgent]).toEqual([443, 40000, 0xfffffffe, 12345, 32, 0x18, 5000, 0, 0]);
    h.window = 7;
    h.seq = 1;
    expect(buf.readUInt16BE(4 + 14)).toBe(7);
    expect(buf.readUInt32BE(4 + 4)).toBe(1);
    const back = new TcpRepr();
    back.parse(h);
    expect([back.srcPort, back.dstPort, back.seq, back.ack, back.flags, back.window, back.options.hasTimestamp]).toEqual([443, 40000, 1, 12345, 0x18, 7, true]);
  });

  it('round-trips SYN options, with and without timestamps and SACK', () => {
    for (const o of [
      { mss: 65480, windowShift: 7, sackPermitted: true, timestamp: { val: 0xdeadbeef, ecr: 42 } },
      { mss: 1460, windowShift: -1, sackPermitted: false },
      { mss: 536, windowShift: 14, sackPermitted: true },
      { mss: 1220, windowShift: -1, sackPermitted: false, timestamp: { val: 1, ecr: 2 } },
    ]) {
      const buf = Buffer.alloc(60);
      const r = reprWith((opts) => {
        opts.mss = o.mss;
        opts.windowShift = o.windowShift;
        opts.sackPermitted = o.sackPermitted;
        if (o.timestamp) Object.assign(opts, { hasTimestamp: true, tsVal: o.timestamp.val, tsEcr: o.timestamp.ecr });
      });
      const n = r.emit(new TcpHeader(buf, 0)) - 20;
      expect(n).toBe(tcpOptionsLength(r.options));
      expect(n % 4).toBe(0);
      const out = new TcpOptions();
      parseTcpOptions(buf, 20, 20 + n, out);
      expect(out.mss).toBe(o.mss);
      expect(out.windowShift).toBe(o.windowShift);
      expect(out.sackPermitted).toBe(o.sackPermitted);
      expect(out.hasTimestamp).toBe(o.timestamp !== undefined);
      if (o.timestamp) expect([out.tsVal, out.tsEcr]).toEqual([o.timestamp.val, o.timestamp.ecr]);
    }
  });

  it('round-trips timestamps with SACK blocks and clamps a window shift above 14', () => {
    const buf = Buffer.alloc(60);
    const r = reprWith((o) => {
      Object.assign(o, { hasTimestamp: true, tsVal: 7, tsEcr: 8, sackBlockCount: 3 });
      [1, 2, 3, 4, 0xffffff00, 5].forEach((v, i) => (o.sackBlocks[i] = v));
    });
    const n = r.emit(new TcpHeader(buf, 0)) - 20;
    expect(n).toBe(12 + 4 + 3 * 8);
    const out = new TcpOptions();
    parseTcpOptions(buf, 20, 20 + n, out);
    expect(out.sackBlocks.slice(0, out.sackBlockCount * 2)).toEqual([1, 2, 3, 4, 0xffffff00, 5]);
    expect([out.tsVal, out.tsEcr]).toEqual([7, 8]);
    parseTcpOptions(Buffer.from([3, 3, 30, 0]), 0, 4, out);
    expect(out.windowShift).toBe(14);
  });

  it('terminates on any bytes and never reads past the options', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const buf = Buffer.concat([Buffer.from(bytes), Buffer.alloc(8, 0xff)]);
        const out = new TcpOptions();
        parseTcpOptions(buf, 0, bytes.length, out);
        // Whatever it found lies within the option bytes: 0xff padding after them is never taken.
        expect(out.mss === 0xffff && bytes.length < 4).toBe(false);
        expect(out.sackBlockCount).toBeLessThanOrEqual(4);
      }),
      { seed: 1, numRuns: 2000 },
    );
  });
});
