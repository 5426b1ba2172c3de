// ARP for IPv4 over Ethernet (RFC 826): a view over the 28-byte packet, validation and emit.

export const ARP_LENGTH = 28;

export const ArpOp = { Request: 1, Reply: 2 } as const;

export class ArpView {
  buf: Buffer = Buffer.alloc(0);
  off = 0;

  of(buf: Buffer, off = 0): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get op(): number {
    return this.buf.readUInt16BE(this.off + 6);
  }
  get senderMacOffset(): number {
    return this.off + 8;
  }
  get senderIpOffset(): number {
    return this.off + 14;
  }
  get targetMacOffset(): number {
    return this.off + 18;
  }
  get targetIpOffset(): number {
    return this.off + 24;
  }
  get senderIp(): number {
    return this.buf.readUInt32BE(this.off + 14);
  }
  get targetIp(): number {
    return this.buf.readUInt32BE(this.off + 24);
  }
}

/** Why `len` bytes at `off` are not an Ethernet/IPv4 ARP packet, or null. */
export function validateArp(buf: Buffer, off: number, len: number): string | null {
  if (len < ARP_LENGTH || off + ARP_LENGTH > buf.length) return 'short-arp';
  if (buf.readUInt16BE(off) !== 1 || buf.readUInt16BE(off + 2) !== 0x0800 || buf[off + 4] !== 6 || buf[off + 5] !== 4) {
    return 'arp-not-ethernet-ipv4';
  }
  const op = buf.readUInt16BE(off + 6);
  if (op !== 1 && op !== 2) return 'arp-bad-op';
  return null;
}

/** Writes an ARP packet at `off`. Addresses: MACs 6 bytes, IPs 4 bytes. */
export function emitArp(
  buf: Buffer,
  off: number,
  op: number,
  senderMac: Uint8Array,
  senderIp: Uint8Array,
  targetMac: Uint8Array,
  targetIp: Uint8Array,
): void {
  buf.writeUInt16BE(1, off);
  buf.writeUInt16BE(0x0800, off + 2);
  buf[off + 4] = 6;
  buf[off + 5] = 4;
  buf.writeUInt16BE(op, off + 6);
  buf.set(senderMac, off + 8);
  buf.set(senderIp, off + 14);
  buf.set(targetMac, off + 18);
  buf.set(targetIp, off + 24);
}
