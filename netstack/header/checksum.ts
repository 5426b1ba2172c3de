// Internet checksum (RFC 1071) in TypeScript: the reference implementation and the fallback when the
// native addon is not loaded. Sums are kept unfolded-then-folded 16-bit ones' complement values, not
// inverted: callers invert (`~sum & 0xffff`) when they write a header field.

/** Ones' complement sum of `len` bytes of `buf` from `off`, added to `initial`; folded to 16 bits. */
export function checksumTs(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return fold(sum);
}

/** Folds a 32-bit (or larger, < 2^53) running sum into 16 bits. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Adds two folded 16-bit sums. */
export function combine(a: number, b: number): number {
  return fold(a + b);
}

/**
 * RFC 1624 incremental update: the new header checksum field value after a 16-bit word changed from
 * `oldWord` to `newWord`. `field` is the checksum as stored in the header (already inverted).
 */
export function checksumUpdate(field: number, oldWord: number, newWord: number): number {
  // HC' = ~(~HC + ~m + m')
  return ~fold((~field & 0xffff) + (~oldWord & 0xffff) + newWord) & 0xffff;
}

/** Sum of the TCP/UDP/ICMPv6 pseudo-header for IPv4 (4-byte addresses) or IPv6 (16-byte addresses). */
export function pseudoHeaderChecksum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  let sum = protocol + (length & 0xffff) + Math.floor(length / 0x10000);
  for (let i = 0; i < src.length; i += 2) sum += (src[i]! << 8) | src[i + 1]!;
  for (let i = 0; i < dst.length; i += 2) sum += (dst[i]! << 8) | dst[i + 1]!;
  return fold(sum);
}

/**
 * The checksum entry point the stack uses. The native addon replaces `impl` at load time with its C
 * implementation (same contract); the TypeScript version stays as the reference and the fallback.
 */
export const checksumImpl = { checksum: checksumTs };

export function checksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return checksumImpl.checksum(buf, off, len, initial);
}
