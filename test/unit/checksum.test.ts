// The native checksums (native/addon/checksum.cc) against the TypeScript reference, and the dispatching
// entry points the stack calls.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checksum, checksumTs, checksumUpdate, copyChecksum, copyChecksumTs } from '../../netstack/header/checksum.js';
import { requireNative } from '../../native/addon/index.js';

const addon = requireNative();

/** A buffer with an (offset, length) range inside it, lengths biased to the edges that matter. */
const bufferRange = fc
  .tuple(
    fc.oneof(fc.constantFrom(0, 1, 2, 3, 7, 15, 16, 17, 63, 64, 65, 65535), fc.integer({ min: 0, max: 3000 })),
    fc.integer({ min: 0, max: 40 }),
    fc.integer({ min: 0, max: 40 }),
  )
  .chain(([len, before, after]) =>
    fc.record({
      buf: fc.uint8Array({ minLength: before + len + after, maxLength: before + len + after }),
      off: fc.constant(before),
      len: fc.constant(len),
    }),
  );
const folded = fc.integer({ min: 0, max: 0xffff });

describe('native checksum', () => {
  it('equals the TypeScript sum for any buffer, offset, length and initial sum', () => {
    fc.assert(
      fc.property(bufferRange, folded, ({ buf, off, len }, initial) => {
        expect(addon.checksum(buf, off, len, initial)).toBe(checksumTs(buf, off, len, initial));
      }),
      { numRuns: 500 },
    );
  });

  it('sums a 64 KiB block of 0xff to 0xffff and an all-zero block to the initial value', () => {
    expect(addon.checksum(new Uint8Array(65536).fill(0xff), 0, 65536, 0)).toBe(0xffff);
    expect(addon.checksum(new Uint8Array(65535), 0, 65535, 0x1234)).toBe(0x1234);
  });

  it('verifies a real IPv4 header (RFC 1071 example: sum of a header with its checksum is 0xffff)', () => {
    const header = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    const field = ~addon.checksum(header, 0, 20, 0) & 0xffff;
    expect(field).toBe(0xb861);
    header.writeUInt16BE(field, 10);
    expect(addon.checksum(header, 0, 20, 0)).toBe(0xffff);
  });

  it('rejects ranges outside the buffer instead of reading past it', () => {
    const buf = new Uint8Array(10);
    expect(() => addon.checksum(buf, 8, 3, 0)).toThrow(RangeError);
    expect(() => addon.checksum(buf, 11, 0, 0)).toThrow(RangeError);
    expect(() => addon.checksum(buf, 0, 10, 0x10000)).toThrow(RangeError);
    expect(() => addon.checksum(new Uint16Array(4) as unknown as Uint8Array, 0, 2, 0)).toThrow(TypeError);
  });

  it('checksum() dispatches to native or TypeScript with the same result on both sides of the threshold', () => {
    fc.assert(
      fc.property(bufferRange, folded, ({ buf, off, len }, initial) => {
        expect(checksum(buf, off, len, initial)).toBe(checksumTs(buf, off, len, initial));
      }),
      { numRuns: 300 },
    );
  });
});

describe('native copy+checksum', () => {
  it('copies exactly the range, leaves the rest of the destination alone, and returns its sum', () => {
    fc.assert(
      fc.property(bufferRange, fc.integer({ min: 0, max: 33 }), folded, ({ buf, off, len }, dstOff, initial) => {
        const dst = new Uint8Array(dstOff + len + 5).fill(0xa5);
        const sum = addon.copyChecksum(dst, dstOff, buf, off, len, initial);
        expect(sum).toBe(checksumTs(buf, off, len, initial));
        expect(Buffer.from(dst.subarray(dstOff, dstOff + len)).equals(Buffer.from(buf.subarray(off, off + len)))).toBe(true);
        expect(dst.subarray(0, dstOff).every((b) => b === 0xa5)).toBe(true);
        expect(dst.subarray(dstOff + len).every((b) => b === 0xa5)).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('copyChecksum() (dispatching) and copyChecksumTs agree', () => {
    fc.assert(
      fc.property(bufferRange, ({ buf, off, len }) => {
        const a = new Uint8Array(len + 3);
        const b = new Uint8Array(len + 3);
        expect(copyChecksum(a, 3, buf, off, len)).toBe(copyChecksumTs(b, 3, buf, off, len));
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses a copy that does not fit the destination', () => {
    expect(() => addon.copyChecksum(new Uint8Array(4), 1, new Uint8Array(8), 0, 4, 0)).toThrow(RangeError);
  });
});

describe('RFC 1624 incremental update', () => {
  // A header-like block whose checksum field (bytes 10-11) covers the block, as in IPv4.
  const headerAndChange = fc.record({
    header: fc.uint8Array({ minLength: 20, maxLength: 60 }).map((h) => h.subarray(0, h.length & ~1)),
    word: fc.integer({ min: 0, max: 0xffff }),
    at: fc.nat(),
  });

  it('native and TypeScript give a field that still verifies after a 16-bit word changed', () => {
    fc.assert(
      fc.property(headerAndChange, ({ header, word, at }) => {
        const index = (at % (header.length / 2)) * 2;
        fc.pre(index !== 10);
        const buf = Buffer.from(header);
        buf.writeUInt16BE(0, 10);
        buf.writeUInt16BE(~checksumTs(buf, 0, buf.length) & 0xffff, 10);
        const field = buf.readUInt16BE(10);
        const oldWord = buf.readUInt16BE(index);
        buf.writeUInt16BE(word, index);
        const updated = addon.checksumUpdate(field, oldWord, word);
        expect(updated).toBe(checksumUpdate(field, oldWord, word));
        buf.writeUInt16BE(updated, 10);
        expect(checksumTs(buf, 0, buf.length)).toBe(0xffff);
      }),
      { numRuns: 500 },
    );
  });
});
