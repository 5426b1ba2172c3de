// UDP (RFC 768): a view over the 8-byte header (parse), validation (checksum with pseudo-header) and
// UdpRepr (emit).
import { checksum, pseudoHeaderChecksum } from './checksum.js';

export const UDP_HEADER_LENGTH = 8;
export const UDP_PROTOCOL = 17;

export class UdpView {
  buf: Buffer = Buffer.alloc(0);
  off = 0;

  of(buf: Buffer, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get srcPort(): number {
    return this.buf.readUInt16BE(this.off);
  }
  get dstPort(): number {
    return this.buf.readUInt16BE(this.off + 2);
  }
  get length(): number {
    return this.buf.readUInt16BE(this.off + 4);
  }
  get checksum(): number {
    return this.buf.readUInt16BE(this.off + 6);
  }
  get payloadOffset(): number {
    return this.off + UDP_HEADER_LENGTH;
  }
}

/**
 * Why `len` bytes at `off` are not a valid UDP datagram between `src` and `dst` (4 or 16 bytes), or
 * null. A zero checksum means "none" for IPv4 and is invalid for IPv6 (RFC 8200 section 8.1).
 * `checksumTrusted`: the link says the sender left the checksum to us; it is not checked.
 */
export function validateUdp(buf: Buffer, off: number, len: number, src: Uint8Array, dst: Uint8Array, checksumTrusted = false): string | null {
  if (len < UDP_HEADER_LENGTH || off + len > buf.length) return 'udp-short';
  const length = buf.readUInt16BE(off + 4);
  if (length < UDP_HEADER_LENGTH || length > len) return 'udp-bad-length';
  if (checksumTrusted) return null; // the field holds only the pseudo-header sum
  const stored = buf.readUInt16BE(off + 6);
  if (stored === 0) return src.length === 4 ? null : 'udp-zero-checksum';
  if (checksum(buf, off, length, pseudoHeaderChecksum(src, dst, UDP_PROTOCOL, length)) !== 0xffff) return 'udp-bad-checksum';
  return null;
}

/** The fields of a UDP header we send; `emit` writes them. */
export class UdpRepr {
  srcPort = 0;
  dstPort = 0;
  /** Bytes after the header. */
  payloadLength = 0;

  /**
   * Writes the header at `off` in front of the payload already in place, with the checksum over the
   * pseudo-header from `src` to `dst` (4 or 16 bytes each).
   */
  emit(buf: Buffer, off: number, src: Uint8Array, dst: Uint8Array): void {
    const length = UDP_HEADER_LENGTH + this.payloadLength;
    buf.writeUInt16BE(this.srcPort, off);
    buf.writeUInt16BE(this.dstPort, off + 2);
    buf.writeUInt16BE(length, off + 4);
    buf[off + 6] = 0;
    buf[off + 7] = 0;
    const sum = ~checksum(buf, off, length, pseudoHeaderChecksum(src, dst, UDP_PROTOCOL, length)) & 0xffff;
    // A computed zero is sent as all ones: zero means "no checksum" (RFC 768).
    buf.writeUInt16BE(sum === 0 ? 0xffff : sum, off + 6);
  }
}
