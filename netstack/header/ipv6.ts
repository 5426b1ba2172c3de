// IPv6 (RFC 8200): a view over the fixed header (parse), validation, Ipv6Repr (emit), and the extension
// header walk.

export const IPV6_HEADER_LENGTH = 40;
export const IPV6_FRAGMENT_HEADER_LENGTH = 8;
export const IPV6_MIN_MTU = 1280;

/** Next-header values for the extension headers we walk. */
export const Ipv6Ext = {
  HopByHop: 0,
  Routing: 43,
  Fragment: 44,
  NoNextHeader: 59,
  DestinationOptions: 60,
} as const;

export class Ipv6View {
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
  get payloadLength(): number {
    return this.buf.readUInt16BE(this.off + 4);
  }
  get nextHeader(): number {
    return this.buf[this.off + 6]!;
  }
  get hopLimit(): number {
    return this.buf[this.off + 7]!;
  }
  get srcOffset(): number {
    return this.off + 8;
  }
  get dstOffset(): number {
    return this.off + 24;
  }
  get totalLength(): number {
    return IPV6_HEADER_LENGTH + this.payloadLength;
  }
}

/** Why `len` bytes at `off` are not an IPv6 packet, or null. Ethernet padding may follow the packet. */
export function validateIpv6(buf: Buffer, off: number, len: number): string | null {
  if (len < IPV6_HEADER_LENGTH || off + IPV6_HEADER_LENGTH > buf.length) return 'ipv6-short';
  if (buf[off]! >>> 4 !== 6) return 'ipv6-bad-version';
  const payload = buf.readUInt16BE(off + 4);
  // A zero payload length announces a jumbogram (RFC 2675), which no Ethernet link carries.
  if (payload === 0 && buf[off + 6] === Ipv6Ext.HopByHop) return 'ipv6-jumbogram';
  if (IPV6_HEADER_LENGTH + payload > len || off + IPV6_HEADER_LENGTH + payload > buf.length) return 'ipv6-bad-length';
  return null;
}

/** The fields of the fixed IPv6 header we send; `emit` writes them. Reused per packet. */
export class Ipv6Repr {
  src: Uint8Array = new Uint8Array(16);
  dst: Uint8Array = new Uint8Array(16);
  nextHeader = 0;
  hopLimit = 64;
  /** Bytes after the fixed header, extension headers included. */
  payloadLength = 0;

  /** Writes the 40-byte header at `off`. */
  emit(buf: Buffer, off: number): void {
    buf.writeUInt32BE(0x60000000, off);
    buf.writeUInt16BE(this.payloadLength, off + 4);
    buf[off + 6] = this.nextHeader;
    buf[off + 7] = this.hopLimit;
    buf.set(this.src, off + 8);
    buf.set(this.dst, off + 24);
  }
}

/** The result of walking an extension header chain; one object is reused for every packet. */
export class Ipv6Walk {
  /** Why the chain is malformed or must be dropped, or null. */
  reason: string | null = null;
  /** The upper-layer protocol (or the header after a non-atomic fragment header). */
  protocol = 0;
  /** Offset in the buffer of the upper-layer header (or of the fragmentable part). */
  payloadOffset = 0;
  /** Offset of the fragment header when the packet is a real fragment, else -1. */
  fragmentHeaderOffset = -1;
  fragmentOffset = 0;
  moreFragments = false;
  fragmentId = 0;
}

/** The most extension headers one packet may carry before we stop walking (a cheap bound). */
const MAX_EXTENSION_HEADERS = 16;

/**
 * Walks the extension headers of the IPv6 packet at [off, end). Stops at the upper-layer header, or
 * at a fragment header that is a real fragment (atomic fragments, offset 0 and no M flag, are walked
 * through, RFC 6946). Every length is checked against `end`; nothing is read out of bounds.
 */
export function walkIpv6Extensions(buf: Buffer, off: number, end: number, out: Ipv6Walk): Ipv6Walk {
  out.reason = null;
  out.fragmentHeaderOffset = -1;
  out.fragmentOffset = 0;
  out.moreFragments = false;
  out.fragmentId = 0;
  let next = buf[off + 6]!;
  let pos = off + IPV6_HEADER_LENGTH;
  for (let count = 0; ; count++) {
    if (count > MAX_EXTENSION_HEADERS) return fail(out, 'ipv6-too-many-extension-headers');
    switch (next) {
      case Ipv6Ext.HopByHop:
      case Ipv6Ext.DestinationOptions: {
        if (next === Ipv6Ext.HopByHop && pos !== off + IPV6_HEADER_LENGTH) return fail(out, 'ipv6-misplaced-hop-by-hop');
        if (pos + 8 > end) return fail(out, 'ipv6-truncated-extension-header');
        const len = (buf[pos + 1]! + 1) * 8;
        if (pos + len > end) return fail(out, 'ipv6-truncated-extension-header');
        const optionReason = checkOptions(buf, pos + 2, pos + len);
        if (optionReason) return fail(out, optionReason);
        next = buf[pos]!;
        pos += len;
        break;
      }
      case Ipv6Ext.Routing: {
        if (pos + 8 > end) return fail(out, 'ipv6-truncated-extension-header');
        const len = (buf[pos + 1]! + 1) * 8;
        if (pos + len > end) return fail(out, 'ipv6-truncated-extension-header');
        // Segments left > 0 asks us to forward along a source route: we never do (RFC 5095 spirit).
        if (buf[pos + 3] !== 0) return fail(out, 'ipv6-routing-header');
        next = buf[pos]!;
        pos += len;
        break;
      }
      case Ipv6Ext.Fragment: {
        if (pos + IPV6_FRAGMENT_HEADER_LENGTH > end) return fail(out, 'ipv6-truncated-extension-header');
        const offsetFlags = buf.readUInt16BE(pos + 2);
        const fragmentOffset = (offsetFlags >>> 3) * 8;
        const more = (offsetFlags & 1) === 1;
        if (fragmentOffset !== 0 || more) {
          out.fragmentHeaderOffset = pos;
          out.fragmentOffset = fragmentOffset;
          out.moreFragments = more;
          out.fragmentId = buf.readUInt32BE(pos + 4);
          out.protocol = buf[pos]!;
          out.payloadOffset = pos + IPV6_FRAGMENT_HEADER_LENGTH;
          return out;
        }
        next = buf[pos]!;
        pos += IPV6_FRAGMENT_HEADER_LENGTH;
        break;
      }
      default:
        out.protocol = next;
        out.payloadOffset = pos;
        return out;
    }
  }
}

function fail(out: Ipv6Walk, reason: string): Ipv6Walk {
  out.reason = reason;
  return out;
}

/** Checks the TLV options of a hop-by-hop or destination options header, in [pos, end). */
function checkOptions(buf: Buffer, pos: number, end: number): string | null {
  while (pos < end) {
    const type = buf[pos]!;
    if (type === 0) {
      pos += 1; // Pad1
      continue;
    }
    if (pos + 2 > end) return 'ipv6-truncated-option';
    const len = buf[pos + 1]!;
    if (pos + 2 + len > end) return 'ipv6-truncated-option';
    // PadN (1) and options whose two high bits say "skip if unknown" pass; the rest ask for a discard.
    if (type !== 1 && type >>> 6 !== 0) return 'ipv6-unknown-option';
    pos += 2 + len;
  }
  return null;
}

/** Writes an 8-byte fragment header at `off`. `offset` in bytes (a multiple of 8). */
export function emitIpv6Fragment(buf: Buffer, off: number, nextHeader: number, offset: number, more: boolean, id: number): void {
  buf[off] = nextHeader;
  buf[off + 1] = 0;
  buf.writeUInt16BE(offset | (more ? 1 : 0), off + 2);
  buf.writeUInt32BE(id >>> 0, off + 4);
}

export function isIpv6Multicast(buf: Uint8Array, off: number): boolean {
  return buf[off] === 0xff;
}

export function isIpv6Unspecified(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[off + i] !== 0) return false;
  return true;
}

/** RFC 5952 text form: lower case, the longest run of two or more zero groups as "::". */
export function formatIpv6(buf: Uint8Array, off = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((buf[off + i]! << 8) | buf[off + i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parses IPv6 text (with "::", without zone or embedded IPv4) into 16 bytes; throws when invalid. */
export function parseIpv6(text: string): Uint8Array {
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${text}`);
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) throw new Error(`not an IPv6 address: ${text}`);
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  if (groups.some(Number.isNaN)) throw new Error(`not an IPv6 address: ${text}`);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >>> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}
