// ICMP for IPv4 (RFC 792): a view over the 8-byte header, validation and emit.
import { checksum } from './checksum.js';

export const ICMP_HEADER_LENGTH = 8;

export const Icmpv4Type = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  SourceQuench: 4,
  Redirect: 5,
  Echo: 8,
  TimeExceeded: 11,
  ParameterProblem: 12,
} as const;

export const Icmpv4UnreachableCode = {
  Net: 0,
  Host: 1,
  Protocol: 2,
  Port: 3,
  FragmentationNeeded: 4,
  AdminProhibited: 13,
} as const;

export class Icmpv4View {
  buf: Buffer = Buffer.alloc(0);
  off = 0;

  of(buf: Buffer, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get type(): number {
    return this.buf[this.off]!;
  }
  get code(): number {
    return this.buf[this.off + 1]!;
  }
  /** Echo identifier (echo request/reply only). */
  get ident(): number {
    return this.buf.readUInt16BE(this.off + 4);
  }
  get sequence(): number {
    return this.buf.readUInt16BE(this.off + 6);
  }
  /** Next-hop MTU of a "fragmentation needed" error (RFC 1191). */
  get nextHopMtu(): number {
    return this.buf.readUInt16BE(this.off + 6);
  }
  get payloadOffset(): number {
    return this.off + ICMP_HEADER_LENGTH;
  }
}

/** True for the types that report an error about a quoted packet (never answered with an error). */
export function isIcmpv4Error(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/** Why `len` bytes at `off` are not an ICMP message, or null. Checks the checksum. */
export function validateIcmpv4(buf: Buffer, off: number, len: number): string | null {
  if (len < ICMP_HEADER_LENGTH || off + len > buf.length) return 'icmp-short';
  if (checksum(buf, off, len) !== 0xffff) return 'icmp-bad-checksum';
  return null;
}

/** Writes an ICMP header at `off`; `rest` is the 4-byte second word. The checksum is left for `finishIcmpv4`. */
export function emitIcmpv4Header(buf: Buffer, off: number, type: number, code: number, rest: number): void {
  buf[off] = type;
  buf[off + 1] = code;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf.writeUInt32BE(rest >>> 0, off + 4);
}

/** Computes and stores the checksum of the `len`-byte ICMP message at `off`. */
export function finishIcmpv4(buf: Buffer, off: number, len: number): void {
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf.writeUInt16BE(~checksum(buf, off, len) & 0xffff, off + 2);
}
