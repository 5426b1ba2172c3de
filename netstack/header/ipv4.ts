// IPv4 (RFC 791): a view over the header (parse), validation with a reason, and Ipv4Repr (emit).
import { checksum } from './checksum.js';

export const IPV4_MIN_HEADER_LENGTH = 20;
export const IPV4_MAX_PACKET_LENGTH = 65535;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;

export class Ipv4View {
  buf: Buffer = Buffer.alloc(0);
  off = 0;

  of(buf: Buffer, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get version(): number {
    return this.buf[this.off]! >>> 4;
  }
  get headerLength(): number {
    return (this.buf[this.off]! & 0x0f) * 4;
  }
  get tos(): number {
    return this.buf[this.off + 1]!;
  }
  get totalLength(): number {
    return this.buf.readUInt16BE(this.off + 2);
  }
  get id(): number {
    return this.buf.readUInt16BE(this.off + 4);
  }
  get moreFragments(): boolean {
    return (this.buf[this.off + 6]! & 0x20) !== 0;
  }
  get dontFragment(): boolean {
    return (this.buf[this.off + 6]! & 0x40) !== 0;
  }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number {
    return (this.buf.readUInt16BE(this.off + 6) & 0x1fff) * 8;
  }
  get isFragment(): boolean {
    return this.moreFragments || this.fragmentOffset !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + 8]!;
  }
  get protocol(): number {
    return this.buf[this.off + 9]!;
  }
  get checksum(): number {
    return this.buf.readUInt16BE(this.off + 10);
  }
  get src(): number {
    return this.buf.readUInt32BE(this.off + 12);
  }
  get dst(): number {
    return this.buf.readUInt32BE(this.off + 16);
  }
  get srcOffset(): number {
    return this.off + 12;
  }
  get dstOffset(): number {
    return this.off + 16;
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }
}

/**
 * Why `len` bytes at `off` are not a valid IPv4 packet, or null. Checks version, IHL, total length
 * against the bytes present (Ethernet padding may follow) and the header checksum.
 */
export function validateIpv4(buf: Buffer, off: number, len: number): string | null {
  if (len < IPV4_MIN_HEADER_LENGTH || off + IPV4_MIN_HEADER_LENGTH > buf.length) return 'ipv4-short';
  const b0 = buf[off]!;
  if (b0 >>> 4 !== 4) return 'ipv4-bad-version';
  const ihl = (b0 & 0x0f) * 4;
  if (ihl < IPV4_MIN_HEADER_LENGTH) return 'ipv4-bad-ihl';
  const total = buf.readUInt16BE(off + 2);
  if (total < ihl || total > len || off + total > buf.length) return 'ipv4-bad-length';
  if (checksum(buf, off, ihl) !== 0xffff) return 'ipv4-bad-checksum';
  return null;
}

/** The fields of an IPv4 header we send (no options); `emit` writes them. Reused per packet. */
export class Ipv4Repr {
  src: Uint8Array = new Uint8Array(4);
  dst: Uint8Array = new Uint8Array(4);
  protocol = 0;
  ttl = 64;
  id = 0;
  /** DF and MF flags with the fragment offset in 8-byte units (the header's 16-bit word 3). */
  flags = 0;
  /** Bytes after the header. */
  payloadLength = 0;

  /** Writes the 20-byte header at `off`, checksum included. */
  emit(buf: Buffer, off: number): void {
    buf[off] = 0x45;
    buf[off + 1] = 0;
    buf.writeUInt16BE(IPV4_MIN_HEADER_LENGTH + this.payloadLength, off + 2);
    buf.writeUInt16BE(this.id & 0xffff, off + 4);
    buf.writeUInt16BE(this.flags, off + 6);
    buf[off + 8] = this.ttl;
    buf[off + 9] = this.protocol;
    buf[off + 10] = 0;
    buf[off + 11] = 0;
    buf.set(this.src, off + 12);
    buf.set(this.dst, off + 16);
    buf.writeUInt16BE(~checksum(buf, off, IPV4_MIN_HEADER_LENGTH) & 0xffff, off + 10);
  }
}

/** Recomputes the header checksum in place (after a field changed). */
export function refreshIpv4Checksum(buf: Buffer, off: number): void {
  buf[off + 10] = 0;
  buf[off + 11] = 0;
  const ihl = (buf[off]! & 0x0f) * 4;
  buf.writeUInt16BE(~checksum(buf, off, ihl) & 0xffff, off + 10);
}

/** True for group addresses no unicast flow may use: multicast, class E and broadcast (224.0.0.0/3). */
export function isIpv4GroupAddress(addr: number): boolean {
  return addr >>> 29 === 0b111; // 224.0.0.0/3: multicast, reserved class E, 255.255.255.255
}

export function formatIpv4(buf: Uint8Array, off = 0): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/** Parses dotted-quad text into 4 bytes; throws on anything else (configuration input, not packets). */
export function parseIpv4(text: string): Uint8Array {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new Error(`not an IPv4 address: ${text}`);
  return new Uint8Array(parts.map(Number));
}
