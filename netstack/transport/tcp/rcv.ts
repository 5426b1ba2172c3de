// The receiving half of a connection (gVisor's tcp.receiver): in-order delivery to the application,
// the out-of-order queue and the SACK blocks it yields, delayed ACKs (RFC 1122 §4.2.3.2: at most one
// delay, an ACK at least every second full-sized segment), and the advertised window. The window is
// what the application has left unread subtracted from the receive buffer, opened only in steps of at
// least an MSS or half the buffer (receiver SWS avoidance, RFC 1122 §4.2.3.3), and its right edge never
// moves left (RFC 9293 §3.8.6.2.2).
import type { Clock } from '../../tcpip.js';
import type { BufferBudget } from './budget.js';
import type { TcpConfig } from './config.js';
import { SackBlocks } from './sack.js';
import type { Segment } from './segment.js';
import { SegmentQueue } from './segment-queue.js';
import { seqAdd, seqDiff, seqGT, seqLT } from './seqnum.js';
import type { TcpState } from './state.js';
import type { TcpStats } from './stats.js';
import { Timer } from './timer.js';

/** What the receiver needs from its connection (the Endpoint). */
export interface ReceiverHost {
  readonly state: TcpState;
  readonly clock: Clock;
  readonly budget: BufferBudget;
  readonly stats: TcpStats;
  /** Bytes delivered that the application has not read yet. */
  unreadBytes(): number;
  /** In-order data for the application. */
  deliver(data: Buffer): void;
  /** Delivers bytes of a buffer the caller reuses once this returns (the link's receive ring): the
   * application's sink may take them as they are; what it leaves is copied before it is queued. */
  deliverBorrowed(buf: Buffer, off: number, len: number): void;
  /** The sandbox's FIN arrived in order. */
  onPeerFin(): void;
  /** An out-of-order segment of `length` bytes did not fit under a cap. */
  outOfOrderRefused(length: number): void;
  sendAck(): void;
}

export class Receiver {
  /** RCV.NXT. */
  nxt: number;
  /** Right edge of the window last advertised (RCV.NXT + RCV.WND when it was sent). */
  acc: number;
  /** RCV.NXT carried by the last ACK sent (RFC 7323 Last.ACK.sent). */
  lastAckSent: number;
  tsRecent = 0;
  finReceived = false;
  readonly ooo: SegmentQueue;
  readonly sack = new SackBlocks();
  readonly delayedAck: Timer;
  /** Largest segment payload seen: the "full-sized segment" of the ACK-every-two rule. */
  private largestSegment: number;
  private unackedBytes = 0;
  /** Sequence number of a FIN that arrived out of order, or -1. */
  private pendingFin = -1;

  constructor(
    private readonly ep: ReceiverHost,
    private readonly config: TcpConfig,
    irs: number,
    /** Shift we apply to our window field (our window scale option, 0 without it). */
    readonly wndShift: number,
    /** The MSS we advertised. */
    private readonly mss: number,
  ) {
    this.nxt = seqAdd(irs, 1);
    this.acc = this.nxt;
    this.lastAckSent = this.nxt;
    this.largestSegment = Math.min(mss, 536);
    this.ooo = new SegmentQueue(config.outOfOrderBufferSize, ep.budget);
    this.delayedAck = new Timer(ep.clock, () => ep.sendAck());
  }

  /** The window of the SYN-ACK (never scaled, RFC 7323 §2.2). */
  synWindow(): number {
    const w = Math.min(this.config.receiveBufferSize, 0xffff);
    this.acc = seqAdd(this.nxt, w);
    return w;
  }

  /** Bytes free for new data: the buffer (smaller once the global budget is spent) minus unread and out-of-order bytes. */
  private freeSpace(): number {
    return Math.max(0, this.ep.budget.allowance(this.config.receiveBufferSize) - this.ep.unreadBytes() - this.ooo.bytes);
  }

  private swsThreshold(): number {
    return Math.min(this.config.receiveBufferSize / 2, this.mss);
  }

  /** The window field for an outgoing segment; records the right edge it advertises. */
  advertise(): number {
    let right = this.acc;
    const candidate = seqAdd(this.nxt, this.freeSpace());
    if (seqGT(candidate, right) && seqDiff(candidate, right) >= this.swsThreshold()) right = candidate;
    const wnd = Math.max(0, seqDiff(right, this.nxt));
    const field = Math.min(Math.ceil(wnd / 2 ** this.wndShift), 0xffff);
    const edge = seqAdd(this.nxt, field * 2 ** this.wndShift);
    if (seqGT(edge, this.acc)) this.acc = edge;
    return field;
  }

  /** The window the peer currently sees. */
  window(): number {
    return Math.max(0, seqDiff(this.acc, this.nxt));
  }

  /** Every segment we send carries an ACK: no ACK is owed any more. */
  onAckSent(): void {
    this.unackedBytes = 0;
    this.lastAckSent = this.nxt;
    this.delayedAck.disarm();
  }

  /**
   * The application read: tell the peer when the window grew enough to matter, and only when the
   * window it sees could hold up its next segments. Otherwise the new window rides on our next
   * segment: the peer can still send two of its largest segments, which draw an ACK at once, and
   * anything less is ACKed within the delayed-ACK time. A short request/response connection so costs
   * one frame less (the SYN-ACK's unscaled 64 KiB is never what limits it).
   */
  onApplicationRead(): void {
    const current = this.window();
    const grown = Math.min(this.freeSpace(), 0xffff * 2 ** this.wndShift) - current;
    const half = this.config.receiveBufferSize / 2;
    const threshold = current < this.mss ? Math.min(half, this.mss) : Math.min(half, 4 * this.mss);
    if (grown >= threshold && current < 4 * this.largestSegment) this.ep.sendAck();
  }

  /** Data and FIN of an acceptable segment, in ESTABLISHED, FIN_WAIT_1 or FIN_WAIT_2. */
  handleData(seg: Segment): void {
    let seq = seg.seq;
    let off = seg.dataOffset;
    let len = seg.dataLength;
    let fin = seg.fin;
    const behind = seqDiff(this.nxt, seq);
    if (behind > 0) {
      if (behind > len) {
        this.ep.sendAck(); // a duplicate, FIN included
        return;
      }
      off += behind;
      len -= behind;
      seq = this.nxt;
    }
    const room = seqDiff(this.acc, seq);
    if (len > room) {
      len = Math.max(0, room);
      fin = false;
    }
    if (len === 0 && !fin) {
      this.ep.sendAck(); // all of it lay beyond a closed window: say the window is still closed
      return;
    }
    if (len > this.largestSegment) this.largestSegment = len;

    if (seq !== this.nxt) {
      this.queueOutOfOrder(seq, seg.buf, off, len, fin);
      this.ep.sendAck(); // a duplicate ACK carrying SACK blocks
      return;
    }
    if (len > 0) {
      this.ep.deliverBorrowed(seg.buf, off, len);
      this.nxt = seqAdd(this.nxt, len);
    }
    let filledHole = false;
    if (!this.ooo.empty) {
      for (let piece = this.ooo.takeAt(this.nxt); piece; piece = this.ooo.takeAt(this.nxt)) {
        this.ep.deliver(piece);
        this.nxt = seqAdd(this.nxt, piece.length);
      }
      this.sack.advance(this.nxt);
      filledHole = true;
    }
    if (fin || this.pendingFin === this.nxt) {
      this.nxt = seqAdd(this.nxt, 1);
      this.finReceived = true;
      this.pendingFin = -1;
      this.sack.clear();
      // The sandbox closed first (we were ESTABLISHED): delay the ACK as Linux does on a FIN, so it
      // rides on the response that usually follows; if we closed first, or the FIN filled a hole,
      // ACK at once.
      if (this.ep.state === 'ESTABLISHED' && !filledHole) this.delayedAck.armIfIdle(this.config.delayedAckMs);
      else this.ep.sendAck();
      this.ep.onPeerFin();
      return;
    }
    this.unackedBytes += len;
    if (filledHole || this.unackedBytes >= 2 * this.largestSegment) this.ep.sendAck();
    else this.delayedAck.armIfIdle(this.config.delayedAckMs);
  }

  private queueOutOfOrder(seq: number, buf: Buffer, off: number, len: number, fin: boolean): void {
    if (len > 0) {
      if (!this.ooo.insert(seq, buf, off, len)) {
        this.ep.stats.outOfOrderDropped++;
        this.ep.outOfOrderRefused(len);
        return;
      }
      const run = this.ooo.runContaining(seq);
      if (run) this.sack.update(run[0], run[1]);
    }
    if (fin && (this.pendingFin === -1 || seqLT(seqAdd(seq, len), this.pendingFin))) this.pendingFin = seqAdd(seq, len);
  }
}
