// A deterministic bench for the TCP conformance tests: the TCP protocol driven directly, with a fake
// NetworkSender that captures every segment it sends, a ManualClock, and a scripted "sandbox" peer
// that builds segments byte by byte (RFC 9293 layout), so a bug in our own header code cannot hide.
import { checksumTs, pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import type { TcpForwarderRequest } from '../../netstack/forwarding.js';
import { ManualClock } from '../../netstack/stack/manual-clock.js';
import type { Family, LimitHook, NetworkSender } from '../../netstack/tcpip.js';
import { createTcp, type TcpConfigInput, type TcpConnection, type TcpProtocol } from '../../netstack/transport/tcp/index.js';

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

export const SANDBOX = Buffer.from([10, 0, 2, 100]);
export const REMOTE = Buffer.from([198, 18, 0, 10]);
export const SANDBOX6 = Buffer.from('fd000000000000000000000000000100', 'hex');
export const REMOTE6 = Buffer.from('20010db8000000000000000000000010', 'hex');

/** A segment the stack sent, decoded by hand. */
export interface Sent {
  family: Family;
  src: Buffer;
  dst: Buffer;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss?: number;
  windowShift?: number;
  sackPermitted: boolean;
  ts?: { val: number; ecr: number };
  sack: Array<[number, number]>;
  payload: Buffer;
  at: number;
  /** A super-segment (NetworkSender.sendTcpSuperSegment): the size of the segments it stands for. */
  segmentSize?: number;
}

export interface Unreachable {
  family: Family;
  how: string;
  packet: Buffer;
}

export interface SegmentSpec {
  flags: number;
  seq: number;
  ack?: number;
  window?: number;
  payload?: Buffer;
  mss?: number;
  windowShift?: number;
  sackPermitted?: boolean;
  ts?: { val: number; ecr: number };
  sack?: Array<[number, number]>;
  /** Flip a checksum bit. */
  badChecksum?: boolean;
  srcPort?: number;
  dstPort?: number;
  /** Destination address (default: the harness's remote). */
  dstAddr?: Buffer;
}

class CapturingSender implements NetworkSender {
  private readonly buf: Buffer;
  constructor(
    private readonly mtu: number,
    /** Largest TCP super-segment taken (header included); 0: none, as on a link without offloads. */
    private readonly superSegments: number,
    private readonly onSend: (family: Family, src: Uint8Array, dst: Uint8Array, segment: Buffer, segmentSize?: number) => void,
    private readonly onUnreachable: (u: Unreachable) => void,
  ) {
    this.buf = Buffer.alloc(Math.max(mtu, superSegments) + 100);
  }
  maxTcpSuperSegmentLength(): number {
    return this.superSegments;
  }
  sendTcpSuperSegment(family: Family, src: Uint8Array, dst: Uint8Array, length: number, segmentSize: number): void {
    if (length > this.superSegments) throw new Error(`a super-segment of ${length} bytes, over ${this.superSegments}`);
    const segment = Buffer.from(this.buf.subarray(60, 60 + length));
    // Its checksum field holds the pseudo-header sum only (the receiving kernel checks no more); the
    // rest is summed here, so that decodeSegment checks the whole segment as for any other.
    let pseudo = pseudoHeaderChecksum(src, dst, 6, length);
    while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
    if (segment.readUInt16BE(16) !== pseudo) throw new Error('a super-segment whose checksum field is not the pseudo-header sum');
    segment.writeUInt16BE(0, 16);
    segment.writeUInt16BE(~checksumTs(segment, 0, length, pseudoHeaderChecksum(src, dst, 6, length)) & 0xffff, 16);
    this.onSend(family, src, dst, segment, segmentSize);
  }
  maxTransportLength(family: Family): number {
    return this.mtu - (family === 4 ? 20 : 40);
  }
  maxDatagramLength(family: Family): number {
    return this.maxTransportLength(family); // TCP sizes its segments to the MTU: never fragmented
  }
  scratch(): { buf: Buffer; offset: number } {
    return { buf: this.buf, offset: 60 };
  }
  send(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number): void {
    if (protocol !== 6) throw new Error(`unexpected protocol ${protocol}`);
    this.onSend(family, src, dst, Buffer.from(this.buf.subarray(60, 60 + length)));
  }
  sendUnreachable(packet: Buffer, family: Family, how: string): void {
    this.onUnreachable({ family, how, packet: Buffer.from(packet) });
  }
}

export interface HarnessOptions {
  mtu?: number;
  family?: Family;
  /** Leave requests pending instead of accepting them as they come. */
  manualAccept?: boolean;
  /** Told when a cap refuses something (TcpDependencies.onLimit). */
  onLimit?: LimitHook;
  /** The sender takes TCP super-segments up to this length (header included), as the TAP with offloads does. */
  superSegments?: number;
}

export class Harness {
  readonly clock = new ManualClock();
  readonly tcp: TcpProtocol;
  readonly sent: Sent[] = [];
  readonly unreachables: Unreachable[] = [];
  readonly requests: TcpForwarderRequest[] = [];
  readonly conns: TcpConnection[] = [];
  readonly family: Family;
  readonly sandbox: Buffer;
  readonly remote: Buffer;
  private readonly manualAccept: boolean;

  constructor(config: TcpConfigInput = {}, options: HarnessOptions = {}) {
    this.family = options.family ?? 4;
    this.sandbox = this.family === 4 ? SANDBOX : SANDBOX6;
    this.remote = this.family === 4 ? REMOTE : REMOTE6;
    this.manualAccept = options.manualAccept ?? false;
    const sender = new CapturingSender(
      options.mtu ?? 65520,
      options.superSegments ?? 0,
      (family, src, dst, segment, segmentSize) => this.sent.push({ ...decodeSegment(family, src, dst, segment, this.clock.now()), segmentSize }),
      (u) => this.unreachables.push(u),
    );
    this.tcp = createTcp(
      {
        sender,
        clock: this.clock,
        onLimit: options.onLimit,
        forwarder: {
          tcp: (req) => {
            this.requests.push(req);
            if (!this.manualAccept) this.conns.push(req.accept() as TcpConnection);
          },
        },
      },
      config,
    );
  }

  /** Injects one segment from the sandbox. */
  inject(s: SegmentSpec): void {
    const dst = s.dstAddr ?? this.remote;
    const segment = encode(this.sandbox, dst, s);
    const packet = Buffer.concat([Buffer.alloc(this.family === 4 ? 20 : 40), segment]);
    this.tcp.handlePacket({ family: this.family, src: this.sandbox, dst, packet, checksumTrusted: false }, segment);
  }

  /** Returns and forgets what the stack sent so far. */
  take(): Sent[] {
    return this.sent.splice(0, this.sent.length);
  }

  /** Opens a connection from the sandbox and returns its peer-side view. */
  async open(opts: PeerOptions = {}): Promise<Peer> {
    const peer = new Peer(this, opts);
    await peer.handshake();
    return peer;
  }
}

export interface PeerOptions {
  srcPort?: number;
  dstPort?: number;
  isn?: number;
  mss?: number | null;
  windowShift?: number | null;
  sackPermitted?: boolean;
  timestamps?: boolean;
  window?: number;
  /** Time between our SYN-ACK and the sandbox's ACK: the first RTT sample. */
  handshakeRttMs?: number;
  /** Leave the stream without a 'data' listener (paused: the test reads explicitly). */
  noReader?: boolean;
}

/** The sandbox's side of one connection. */
export class Peer {
  readonly srcPort: number;
  readonly dstPort: number;
  /** Our next sequence number (the sandbox's SND.NXT). */
  nxt: number;
  /** The stack's ISN and what we acknowledged of it. */
  iss = 0;
  rcvNxt = 0;
  conn!: TcpConnection;
  synAck!: Sent;
  window: number;
  tsVal = 1000;
  readonly timestamps: boolean;
  readonly received: Buffer[] = [];

  constructor(
    readonly h: Harness,
    readonly opts: PeerOptions,
  ) {
    this.srcPort = opts.srcPort ?? 40000;
    this.dstPort = opts.dstPort ?? 443;
    this.nxt = opts.isn ?? 1_000_000;
    this.window = opts.window ?? 65535;
    this.timestamps = opts.timestamps ?? true;
  }

  syn(): void {
    this.h.inject({
      flags: SYN,
      seq: this.nxt,
      srcPort: this.srcPort,
      dstPort: this.dstPort,
      window: 65535,
      mss: this.opts.mss === null ? undefined : (this.opts.mss ?? 65480),
      windowShift: this.opts.windowShift === null ? undefined : (this.opts.windowShift ?? 7),
      sackPermitted: this.opts.sackPermitted ?? true,
      ts: this.timestamps ? { val: this.tsVal, ecr: 0 } : undefined,
    });
  }

  async handshake(): Promise<void> {
    this.syn();
    this.nxt = (this.nxt + 1) >>> 0;
    const synAck = this.h.take().find((s) => s.flags === (SYN | ACK));
    if (!synAck) throw new Error('no SYN-ACK');
    this.synAck = synAck;
    this.iss = synAck.seq;
    this.rcvNxt = (synAck.seq + 1) >>> 0;
    this.conn = this.h.conns[this.h.conns.length - 1]!;
    if (this.opts.handshakeRttMs) this.h.clock.advance(this.opts.handshakeRttMs);
    if (!this.opts.noReader) this.conn.on('data', (d: Buffer) => this.received.push(d));
    this.conn.on('error', () => {});
    this.ack();
    await settle();
    // Opening the stream's reader may announce the full window at once: not part of any test.
    this.h.take();
  }

  /** A segment on this connection; seq/ack default to the peer's current state. */
  send(s: Partial<SegmentSpec> & { flags?: number }): void {
    const payload = s.payload ?? Buffer.alloc(0);
    this.h.inject({
      srcPort: this.srcPort,
      dstPort: this.dstPort,
      seq: this.nxt,
      ack: this.rcvNxt,
      window: this.window,
      ts: this.timestamps ? { val: ++this.tsVal, ecr: 1 } : undefined,
      ...s,
      flags: s.flags ?? ACK,
    });
  }

  /** Sends data in order and advances. */
  data(payload: Buffer, flags = ACK | PSH): void {
    this.send({ flags, payload });
    this.nxt = (this.nxt + payload.length) >>> 0;
  }

  ack(ackNo = this.rcvNxt, window = this.window, extra: Partial<SegmentSpec> = {}): void {
    this.send({ flags: ACK, ack: ackNo, window, ...extra });
  }

  fin(): void {
    this.send({ flags: FIN | ACK });
    this.nxt = (this.nxt + 1) >>> 0;
  }

  /** Data segments the stack sent on this connection, from `sent`. */
  static payloadOf(segs: Sent[]): Buffer {
    return Buffer.concat(segs.map((s) => s.payload));
  }

  /** Relative sequence number (0 = first data byte). */
  rel(seq: number): number {
    return (seq - this.iss - 1) >>> 0;
  }
  abs(rel: number): number {
    return (this.iss + 1 + rel) >>> 0;
  }
}

/**
 * Lets queued microtasks and immediates run: writes are flushed once per burst (a microtask), and a
 * short tail that flush held back goes out in an immediate the flush queued after this one's first.
 */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

export function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

export function encode(src: Buffer, dst: Buffer, s: SegmentSpec): Buffer {
  const opts: number[] = [];
  if (s.mss !== undefined) opts.push(2, 4, s.mss >> 8, s.mss & 0xff);
  if (s.windowShift !== undefined) opts.push(1, 3, 3, s.windowShift);
  if (s.sackPermitted) opts.push(1, 1, 4, 2);
  if (s.ts) opts.push(1, 1, 8, 10, ...u32(s.ts.val), ...u32(s.ts.ecr));
  if (s.sack && s.sack.length > 0) {
    opts.push(1, 1, 5, 2 + 8 * s.sack.length);
    for (const [a, b] of s.sack) opts.push(...u32(a), ...u32(b));
  }
  while (opts.length % 4) opts.push(0);
  const payload = s.payload ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const seg = Buffer.alloc(hl + payload.length);
  seg.writeUInt16BE(s.srcPort ?? 40000, 0);
  seg.writeUInt16BE(s.dstPort ?? 443, 2);
  seg.writeUInt32BE(s.seq >>> 0, 4);
  seg.writeUInt32BE((s.ack ?? 0) >>> 0, 8);
  seg[12] = (hl / 4) << 4;
  seg[13] = s.flags;
  seg.writeUInt16BE(s.window ?? 65535, 14);
  Buffer.from(opts).copy(seg, 20);
  payload.copy(seg, hl);
  const sum = checksumTs(seg, 0, seg.length, pseudoHeaderChecksum(src, dst, 6, seg.length));
  seg.writeUInt16BE(~sum & 0xffff ^ (s.badChecksum ? 1 : 0), 16);
  return seg;
}

function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

export function decodeSegment(family: Family, src: Uint8Array, dst: Uint8Array, seg: Buffer, at: number): Sent {
  const sum = checksumTs(seg, 0, seg.length, pseudoHeaderChecksum(src, dst, 6, seg.length));
  if (sum !== 0xffff) throw new Error('the stack sent a segment with a bad checksum');
  const hl = (seg[12]! >> 4) * 4;
  const out: Sent = {
    family,
    src: Buffer.from(src),
    dst: Buffer.from(dst),
    srcPort: seg.readUInt16BE(0),
    dstPort: seg.readUInt16BE(2),
    seq: seg.readUInt32BE(4),
    ack: seg.readUInt32BE(8),
    flags: seg[13]!,
    window: seg.readUInt16BE(14),
    sackPermitted: false,
    sack: [],
    payload: seg.subarray(hl),
    at,
  };
  for (let i = 20; i < hl; ) {
    const kind = seg[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = seg[i + 1]!;
    if (kind === 2) out.mss = seg.readUInt16BE(i + 2);
    if (kind === 3) out.windowShift = seg[i + 2]!;
    if (kind === 4) out.sackPermitted = true;
    if (kind === 8) out.ts = { val: seg.readUInt32BE(i + 2), ecr: seg.readUInt32BE(i + 6) };
    if (kind === 5) for (let b = i + 2; b < i + len; b += 8) out.sack.push([seg.readUInt32BE(b), seg.readUInt32BE(b + 4)]);
    i += len;
  }
  return out;
}
