// ICMPv6 (RFC 4443) and its neighbour discovery messages (RFC 4861): views, validation, emit.
import { checksum, pseudoHeaderChecksum } from './checksum.js';

export const ICMPV6_HEADER_LENGTH = 8;
export const ICMPV6_PROTOCOL = 58;
/** Neighbour solicitation/advertisement: ICMPv6 header + 16-byte target address, then options. */
export const NDP_NEIGHBOR_LENGTH = 24;
export const NDP_LINK_LAYER_OPTION_LENGTH = 8;

export const Icmpv6Type = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
} as const;

export const Icmpv6UnreachableCode = {
  NoRoute: 0,
  AdminProhibited: 1,
  AddressUnreachable: 3,
  PortUnreachable: 4,
} as const;

export const NdpOption = { SourceLinkLayer: 1, TargetLinkLayer: 2 } as const;

export const NeighborAdvertFlag = { Router: 0x80, Solicited: 0x40, Override: 0x20 } as const;

export class Icmpv6View {
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
  get ident(): number {
    return this.buf.readUInt16BE(this.off + 4);
  }
  get sequence(): number {
    return this.buf.readUInt16BE(this.off + 6);
  }
  /** MTU of a packet-too-big message. */
  get mtu(): number {
    return this.buf.readUInt32BE(this.off + 4);
  }
  /** Flags byte of a neighbour advertisement. */
  get advertFlags(): number {
    return this.buf[this.off + 4]!;
  }
  /** Offset of the target address of a neighbour solicitation/advertisement. */
  get targetOffset(): number {
    return this.off + 8;
  }
  get payloadOffset(): number {
    return this.off + ICMPV6_HEADER_LENGTH;
  }
}

/** True for ICMPv6 error messages (types 0-127), which are never answered with an error. */
export function isIcmpv6Error(type: number): boolean {
  return type < 128;
}

/**
 * Why `len` bytes at `off` are not an ICMPv6 message from `src` to `dst` (16-byte addresses at
 * `srcOff`/`dstOff` in `buf`), or null. The checksum covers the pseudo-header.
 */
export function validateIcmpv6(buf: Buffer, off: number, len: number, src: Uint8Array, dst: Uint8Array): string | null {
  if (len < ICMPV6_HEADER_LENGTH || off + len > buf.length) return 'icmpv6-short';
  if (checksum(buf, off, len, pseudoHeaderChecksum(src, dst, ICMPV6_PROTOCOL, len)) !== 0xffff) return 'icmpv6-bad-checksum';
  return null;
}

/** Writes an ICMPv6 header at `off`; the checksum is left for `finishIcmpv6`. */
export function emitIcmpv6Header(buf: Buffer, off: number, type: number, code: number, rest: number): void {
  buf[off] = type;
  buf[off + 1] = code;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf.writeUInt32BE(rest >>> 0, off + 4);
}

/** Computes and stores the checksum of the `len`-byte ICMPv6 message at `off`. */
export function finishIcmpv6(buf: Buffer, off: number, len: number, src: Uint8Array, dst: Uint8Array): void {
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf.writeUInt16BE(~checksum(buf, off, len, pseudoHeaderChecksum(src, dst, ICMPV6_PROTOCOL, len)) & 0xffff, off + 2);
}

/**
 * Finds the link-layer address option of `type` among the NDP options in [pos, end). Returns the
 * offset of the 6-byte MAC, -1 when absent, or a reason when the options are malformed (a zero
 * length would loop forever; RFC 4861 says drop the message).
 */
export function findLinkLayerOption(buf: Buffer, pos: number, end: number, type: number): number | string {
  let found = -1;
  while (pos < end) {
    if (pos + 2 > end) return 'ndp-truncated-option';
    const len = buf[pos + 1]! * 8;
    if (len === 0) return 'ndp-zero-length-option';
    if (pos + len > end) return 'ndp-truncated-option';
    if (buf[pos] === type && len >= NDP_LINK_LAYER_OPTION_LENGTH && found < 0) found = pos + 2;
    pos += len;
  }
  return found;
}

/** Writes a neighbour advertisement body (after the 4-byte type/code/checksum) with a target LL option. */
export function emitNeighborAdvert(buf: Buffer, off: number, flags: number, target: Uint8Array, targetMac: Uint8Array): number {
  emitIcmpv6Header(buf, off, Icmpv6Type.NeighborAdvertisement, 0, flags << 24);
  buf.set(target, off + 8);
  buf[off + NDP_NEIGHBOR_LENGTH] = NdpOption.TargetLinkLayer;
  buf[off + NDP_NEIGHBOR_LENGTH + 1] = 1;
  buf.set(targetMac, off + NDP_NEIGHBOR_LENGTH + 2);
  return NDP_NEIGHBOR_LENGTH + NDP_LINK_LAYER_OPTION_LENGTH;
}
