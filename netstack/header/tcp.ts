// TCP header (RFC 9293 §3.1): a typed view over the bytes (gVisor's header.TCP), its options (MSS,
// window scale, SACK, timestamps: RFC 9293, RFC 7323, RFC 2018) parsed into a reusable record, and
// TcpRepr, the header as values that both parse and emit use. The view copies nothing; parse results go
// into caller-owned objects, so neither direction allocates per segment.

export const TCP_MIN_HEADER_LENGTH = 20;
export const TCP_MAX_OPTIONS_LENGTH = 40;
export const TCP_PROTOCOL = 6;

export const TCP_FLAG_FIN = 0x01;
export const TCP_FLAG_SYN = 0x02;
export const TCP_FLAG_RST = 0x04;
export const TCP_FLAG_PSH = 0x08;
export const TCP_FLAG_ACK = 0x10;
export const TCP_FLAG_URG = 0x20;

export const TCP_OPTION_EOL = 0;
export const TCP_OPTION_NOP = 1;
export const TCP_OPTION_MSS = 2;
export const TCP_OPTION_WS = 3;
export const TCP_OPTION_SACK_PERMITTED = 4;
export const TCP_OPTION_SACK = 5;
export const TCP_OPTION_TS = 8;

/** Largest shift a window scale option may carry (RFC 7323 §2.3). */
export const TCP_MAX_WINDOW_SHIFT = 14;
/** Bytes the timestamp option takes on every segment once negotiated (NOP NOP TS). */
export const TCP_TIMESTAMP_OPTION_SPACE = 12;

/** A view over one TCP header at `off` in `buf`. Reset it with `at()` to reuse it. */
export class TcpHeader {
  buf: Buffer;
  off: number;

  constructor(buf: Buffer = Buffer.alloc(0), off = 0) {
    this.buf = buf;
    this.off = off;
  }

  at(buf: Buffer, off: number): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get srcPort(): number {
    return this.buf.readUInt16BE(this.off);
  }
  set srcPort(v: number) {
    this.buf.writeUInt16BE(v, this.off);
  }
  get dstPort(): number {
    return this.buf.readUInt16BE(this.off + 2);
  }
  set dstPort(v: number) {
    this.buf.writeUInt16BE(v, this.off + 2);
  }
  get seq(): number {
    return this.buf.readUInt32BE(this.off + 4);
  }
  set seq(v: number) {
    this.buf.writeUInt32BE(v >>> 0, this.off + 4);
  }
  get ack(): number {
    return this.buf.readUInt32BE(this.off + 8);
  }
  set ack(v: number) {
    this.buf.writeUInt32BE(v >>> 0, this.off + 8);
  }
  /** Header length in bytes (the data offset field times four). */
  get dataOffset(): number {
    return (this.buf[this.off + 12]! >> 4) * 4;
  }
  set dataOffset(bytes: number) {
    this.buf[this.off + 12] = (bytes / 4) << 4;
  }
  get flags(): number {
    return this.buf[this.off + 13]!;
  }
  set flags(v: number) {
    this.buf[this.off + 13] = v;
  }
  get window(): number {
    return this.buf.readUInt16BE(this.off + 14);
  }
  set window(v: number) {
    this.buf.writeUInt16BE(v, this.off + 14);
  }
  get checksum(): number {
    return this.buf.readUInt16BE(this.off + 16);
  }
  set checksum(v: number) {
    this.buf.writeUInt16BE(v, this.off + 16);
  }
  get urgent(): number {
    return this.buf.readUInt16BE(this.off + 18);
  }
  set urgent(v: number) {
    this.buf.writeUInt16BE(v, this.off + 18);
  }
}

/** Parsed options. Fields absent from the segment keep their "absent" value after `parseTcpOptions`. */
export class TcpOptions {
  /** 0 when absent. */
  mss = 0;
  /** -1 when absent; clamped to 14. */
  windowShift = -1;
  sackPermitted = false;
  hasTimestamp = false;
  tsVal = 0;
  tsEcr = 0;
  /** SACK blocks as [start0, end0, start1, end1, ...]; `sackBlockCount` of them are valid. */
  readonly sackBlocks: number[] = [0, 0, 0, 0, 0, 0, 0, 0];
  sackBlockCount = 0;

  clear(): void {
    this.mss = 0;
    this.windowShift = -1;
    this.sackPermitted = false;
    this.hasTimestamp = false;
    this.tsVal = 0;
    this.tsEcr = 0;
    this.sackBlockCount = 0;
  }
}

/**
 * Parses the options in `buf[start, end)` into `out` (cleared first). Malformed options end the parse:
 * a length below 2 or running past the end stops it (every step advances, so no option can loop), and
 * an option with the wrong length for its kind is ignored, as Linux and gVisor do.
 */
export function parseTcpOptions(buf: Uint8Array, start: number, end: number, out: TcpOptions): void {
  out.clear();
  let i = start;
  while (i < end) {
    const kind = buf[i]!;
    if (kind === TCP_OPTION_EOL) return;
    if (kind === TCP_OPTION_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > end) return;
    switch (kind) {
      case TCP_OPTION_MSS:
        if (len === 4) out.mss = (buf[i + 2]! << 8) | buf[i + 3]!;
        break;
      case TCP_OPTION_WS:
        if (len === 3) out.windowShift = Math.min(buf[i + 2]!, TCP_MAX_WINDOW_SHIFT);
        break;
      case TCP_OPTION_SACK_PERMITTED:
        if (len === 2) out.sackPermitted = true;
        break;
      case TCP_OPTION_TS:
        if (len === 10) {
          out.hasTimestamp = true;
          out.tsVal = readU32(buf, i + 2);
          out.tsEcr = readU32(buf, i + 6);
        }
        break;
      case TCP_OPTION_SACK:
        if ((len - 2) % 8 === 0) {
          const n = Math.min((len - 2) / 8, 4);
          for (let b = 0; b < n; b++) {
            out.sackBlocks[b * 2] = readU32(buf, i + 2 + b * 8);
            out.sackBlocks[b * 2 + 1] = readU32(buf, i + 6 + b * 8);
          }
          out.sackBlockCount = n;
        }
        break;
    }
    i += len;
  }
}

/** Bytes `emitTcpOptions` writes for `o` (a multiple of 4). */
export function tcpOptionsLength(o: TcpOptions): number {
  let n = o.mss > 0 ? 4 : 0;
  if (o.hasTimestamp) n += 12; // (SACK-permitted | NOP NOP) TS
  else if (o.sackPermitted) n += 4; // NOP NOP SACK-permitted
  if (o.windowShift >= 0) n += 4; // NOP WS
  if (o.sackBlockCount > 0) n += 4 + 8 * o.sackBlockCount; // NOP NOP SACK blocks
  return n;
}

/**
 * Writes the options of `o` at `off` in the layout Linux uses (MSS, SACK-permitted packed with the
 * timestamp, window scale; on later segments NOP NOP TS then NOP NOP SACK); returns the bytes written,
 * a multiple of 4. Absent fields (see TcpOptions) are left out, so a SYN and a data segment are
 * written by the same code from the same record `parseTcpOptions` fills.
 */
export function emitTcpOptions(buf: Uint8Array, off: number, o: TcpOptions): number {
  let i = off;
  if (o.mss > 0) {
    buf[i++] = TCP_OPTION_MSS;
    buf[i++] = 4;
    buf[i++] = o.mss >> 8;
    buf[i++] = o.mss & 0xff;
  }
  if (o.hasTimestamp) {
    if (o.sackPermitted) {
      buf[i++] = TCP_OPTION_SACK_PERMITTED;
      buf[i++] = 2;
    } else {
      buf[i++] = TCP_OPTION_NOP;
      buf[i++] = TCP_OPTION_NOP;
    }
    buf[i++] = TCP_OPTION_TS;
    buf[i++] = 10;
    writeU32(buf, i, o.tsVal);
    writeU32(buf, i + 4, o.tsEcr);
    i += 8;
  } else if (o.sackPermitted) {
    buf[i++] = TCP_OPTION_NOP;
    buf[i++] = TCP_OPTION_NOP;
    buf[i++] = TCP_OPTION_SACK_PERMITTED;
    buf[i++] = 2;
  }
  if (o.windowShift >= 0) {
    buf[i++] = TCP_OPTION_NOP;
    buf[i++] = TCP_OPTION_WS;
    buf[i++] = 3;
    buf[i++] = o.windowShift;
  }
  const count = o.sackBlockCount;
  if (count > 0) {
    buf[i++] = TCP_OPTION_NOP;
    buf[i++] = TCP_OPTION_NOP;
    buf[i++] = TCP_OPTION_SACK;
    buf[i++] = 2 + 8 * count;
    for (let b = 0; b < count; b++) {
      writeU32(buf, i, o.sackBlocks[b * 2]!);
      writeU32(buf, i + 4, o.sackBlocks[b * 2 + 1]!);
      i += 8;
    }
  }
  return i - off;
}

/** Bytes a SACK option with `count` blocks takes (NOP NOP SACK included). */
export function sackOptionLength(count: number): number {
  return count === 0 ? 0 : 4 + 8 * count;
}

/**
 * A TCP header as values (smoltcp's TcpRepr): `parse` reads it from a view, `emit` writes it. Inbound
 * segments are parsed into one and every outbound segment is emitted from one, so both directions
 * share one codec. The checksum is not part of it: it covers the pseudo-header and the payload, which
 * the sender knows (transport/tcp/segment-writer.ts).
 */
export class TcpRepr {
  srcPort = 0;
  dstPort = 0;
  seq = 0;
  ack = 0;
  flags = 0;
  /** The window field as sent (not scaled). */
  window = 0;
  readonly options = new TcpOptions();

  /** Reads the header `h` views; the caller has checked that its data offset lies within the bytes. */
  parse(h: TcpHeader): void {
    this.srcPort = h.srcPort;
    this.dstPort = h.dstPort;
    this.seq = h.seq;
    this.ack = h.ack;
    this.flags = h.flags;
    this.window = h.window;
    parseTcpOptions(h.buf, h.off + TCP_MIN_HEADER_LENGTH, h.off + h.dataOffset, this.options);
  }

  /** Bytes `emit` writes: the fixed header and the options. */
  get headerLength(): number {
    return TCP_MIN_HEADER_LENGTH + tcpOptionsLength(this.options);
  }

  /** Writes the header and its options through `h` (checksum and urgent pointer 0); returns its length. */
  emit(h: TcpHeader): number {
    const length = TCP_MIN_HEADER_LENGTH + emitTcpOptions(h.buf, h.off + TCP_MIN_HEADER_LENGTH, this.options);
    h.srcPort = this.srcPort;
    h.dstPort = this.dstPort;
    h.seq = this.seq;
    h.ack = this.ack;
    h.dataOffset = length;
    h.flags = this.flags;
    h.window = this.window;
    h.checksum = 0;
    h.urgent = 0;
    return length;
  }
}

function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
