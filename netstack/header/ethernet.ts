// Ethernet II frames (IEEE 802.3 without VLAN tags): a view over the 14-byte header, validation and emit.

export const ETHERNET_HEADER_LENGTH = 14;

export const EtherType = {
  IPv4: 0x0800,
  ARP: 0x0806,
  IPv6: 0x86dd,
} as const;

export const BROADCAST_MAC: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** A view over an Ethernet header at `off` in `buf`. Re-point it with `of()` instead of allocating. */
export class EthernetView {
  buf: Buffer = Buffer.alloc(0);
  off = 0;

  of(buf: Buffer, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get etherType(): number {
    return this.buf.readUInt16BE(this.off + 12);
  }
  /** Offset of the destination MAC (6 bytes) in `buf`. */
  get dstOffset(): number {
    return this.off;
  }
  /** Offset of the source MAC (6 bytes) in `buf`. */
  get srcOffset(): number {
    return this.off + 6;
  }
  /** True for broadcast and multicast destinations (the I/G bit). */
  get isGroupDestination(): boolean {
    return (this.buf[this.off]! & 1) === 1;
  }
  get payloadOffset(): number {
    return this.off + ETHERNET_HEADER_LENGTH;
  }
}

/** Why a frame cannot be an Ethernet frame, or null when its header is readable. */
export function validateEthernet(frame: Uint8Array): string | null {
  return frame.length < ETHERNET_HEADER_LENGTH ? 'short-frame' : null;
}

/** Writes an Ethernet header at `off`. */
export function emitEthernet(buf: Uint8Array, off: number, dst: Uint8Array, src: Uint8Array, etherType: number): void {
  buf.set(dst, off);
  buf.set(src, off + 6);
  buf[off + 12] = etherType >>> 8;
  buf[off + 13] = etherType & 0xff;
}

/** Parses "02:00:00:00:00:02" into 6 bytes; throws on anything else (configuration input, not packets). */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`not a MAC address: ${text}`);
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}

/** Compares 6 bytes at `off` in `buf` with `mac`. */
export function macEquals(buf: Uint8Array, off: number, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (buf[off + i] !== mac[i]) return false;
  return true;
}
