// The TCP header view and option codec (netstack/header/tcp.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TcpHeader, TcpOptions, emitSackOption, emitSynOptions, emitTimestampOption, parseTcpOptions, synOptionsLength, writeTcpHeader } from '../../netstack/header/tcp.js';

describe('TCP header codec', () => {
  it('reads back every field it writes', () => {
    const buf = Buffer.alloc(40);
    writeTcpHeader(buf, 4, 443, 40000, 0xfffffffe, 12345, 32, 0x18, 5000);
    const h = new TcpHeader(buf, 4);
    expect([h.srcPort, h.dstPort, h.seq, h.ack, h.dataOffset, h.flags, h.window, h.checksum, h.urgent]).toEqual([443, 40000, 0xfffffffe, 12345, 32, 0x18, 5000, 0, 0]);
    h.window = 7;
    h.seq = 1;
    expect(buf.readUInt16BE(4 + 14)).toBe(7);
    expect(buf.readUInt32BE(4 + 4)).toBe(1);
  });

  it('round-trips SYN options, with and without timestamps and SACK', () => {
    for (const o of [
      { mss: 65480, windowShift: 7, sackPermitted: true, timestamp: { val: 0xdeadbeef, ecr: 42 } },
      { mss: 1460, windowShift: -1, sackPermitted: false },
      { mss: 536, windowShift: 14, sackPermitted: true },
      { mss: 1220, windowShift: -1, sackPermitted: false, timestamp: { val: 1, ecr: 2 } },
    ]) {
      const buf = Buffer.alloc(40);
      const n = emitSynOptions(buf, 0, o);
      expect(n).toBe(synOptionsLength(o));
      expect(n % 4).toBe(0);
      const out = new TcpOptions();
      parseTcpOptions(buf, 0, n, out);
      expect(out.mss).toBe(o.mss);
      expect(out.windowShift).toBe(o.windowShift);
      expect(out.sackPermitted).toBe(o.sackPermitted);
      expect(out.hasTimestamp).toBe(o.timestamp !== undefined);
      if (o.timestamp) expect([out.tsVal, out.tsEcr]).toEqual([o.timestamp.val, o.timestamp.ecr]);
    }
  });

  it('round-trips timestamps with SACK blocks and clamps a window shift above 14', () => {
    const buf = Buffer.alloc(40);
    let n = emitTimestampOption(buf, 0, 7, 8);
    n += emitSackOption(buf, n, [1, 2, 3, 4, 0xffffff00, 5], 3);
    const out = new TcpOptions();
    parseTcpOptions(buf, 0, n, out);
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
