// The sending half of a connection (gVisor's tcp.sender): the send buffer, segmentation at the MSS,
// the peer's window, congestion control (CUBIC), RTO (RFC 6298), fast retransmit / NewReno (RFC 5681,
// RFC 6582), SACK-based loss recovery (RFC 6675), RACK-TLP (RFC 8985), and zero-window probing.
//
// Transmitted data lives in the send buffer until acknowledged; the scoreboard holds one small record
// per transmitted segment. Segments are built straight into the stack's scratch frame by the
// SegmentWriter (through Endpoint.emitSegment), which copies the payload out of the send buffer:
// nothing is allocated per segment.
import { TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_PSH } from '../../header/tcp.js';
import type { Clock } from '../../tcpip.js';
import type { BufferBudget } from './budget.js';
import type { TcpConfig } from './config.js';
import { Cubic } from './cubic.js';
import { Rack } from './rack.js';
import { RttEstimator } from './rtt.js';
import { Scoreboard, type SentSegment } from './sack-scoreboard.js';
import type { Segment } from './segment.js';
import { SendBuffer } from './send-buffer.js';
import { seqAdd, seqDiff, seqGEQ, seqGT, seqLEQ, seqLT } from './seqnum.js';
import type { TcpStats } from './stats.js';
import { Timer } from './timer.js';

/** What the sender needs from its connection (the Endpoint). */
export interface SenderHost {
  readonly clock: Clock;
  readonly budget: BufferBudget;
  readonly stats: TcpStats;
  readonly tsEnabled: boolean;
  /** The current timestamp value (TSval) of the connection. */
  tsNow(): number;
  /** Whether data may be sent in the current state. */
  canSendData(): boolean;
  /** Sends a segment carrying `length` bytes of the send buffer from `bufferOffset`. */
  emitSegment(seq: number, flags: number, bufferOffset: number, length: number): void;
  sendAck(): void;
  sendChallengeAck(): void;
  /** A zero-window or keepalive probe. */
  sendProbe(): void;
  /** Our FIN was acknowledged. */
  onFinAcked(): void;
  /** Calls sendTail() once the current event-loop turn's I/O is done. */
  scheduleTailFlush(): void;
  /** Payload bytes one super-segment may carry (NetworkSender.sendTcpSuperSegment); 0: the link takes none. */
  readonly superSegmentPayload: number;
  /** Sends RST and ends the connection with this error code. */
  abort(code: 'ETIMEDOUT' | 'ECONNRESET'): void;
}

/** RFC 6675 DupThresh. */
const DUP_THRESH = 3;
/** RFC 8985 §7.2: worst-case delayed-ACK time added to the PTO when one segment is in flight. */
const WORST_CASE_DELAYED_ACK_MS = 200;
/** Floor of the PTO, as Linux has: a near-zero RTT must not turn every flight into a probe. */
const MIN_PTO_MS = 10;

export class Sender {
  readonly buffer = new SendBuffer();
  readonly board = new Scoreboard();
  readonly rtt: RttEstimator;
  readonly rack = new Rack();
  /** SND.UNA and SND.NXT. */
  una: number;
  nxt: number;
  /** The peer's window in bytes (scaled), the largest it advertised, and SND.WL1/WL2. */
  wnd = 0;
  maxWnd = 0;
  private wl1 = 0;
  private wl2 = 0;
  /** Shift applied to the peer's window fields (its window scale option). */
  wndShift = 0;
  /** Largest payload per segment (the peer's MSS minus the options every segment carries). */
  mss: number;
  cwnd: number;
  ssthresh = Infinity;
  inRecovery = false;
  private recoveryPoint = 0;
  dupAcks = 0;
  finQueued = false;
  finSent = false;
  /** Consecutive RTO expiries (the RTO doubles with each); those that count towards giving up. */
  backoff = 0;
  private retries = 0;
  /** Whether an ACK arrived since the last RTO expiry. */
  private heardFromPeer = false;
  private persistBackoff = 0;
  /** End of the outstanding tail loss probe, or -1. */
  private tlpEnd = -1;
  private readonly cubic = new Cubic();
  private writeCallback: ((err?: Error | null) => void) | null = null;
  /** sendTail() is running: a short tail goes now. */
  private tailDue = false;
  readonly rtoTimer: Timer;
  readonly tlpTimer: Timer;
  readonly reorderTimer: Timer;
  readonly persistTimer: Timer;

  constructor(
    private readonly ep: SenderHost,
    private readonly config: TcpConfig,
    iss: number,
    mss: number,
    readonly sackEnabled: boolean,
  ) {
    this.una = iss;
    this.nxt = seqAdd(iss, 1); // the SYN-ACK
    this.mss = mss;
    this.cwnd = config.initialCwndSegments * mss;
    this.rtt = new RttEstimator(config.initialRtoMs, config.minRtoMs, config.maxRtoMs);
    const clock = ep.clock;
    this.rtoTimer = new Timer(clock, () => this.onRetransmitTimeout());
    this.tlpTimer = new Timer(clock, () => this.onProbeTimeout());
    this.reorderTimer = new Timer(clock, () => this.onReorderTimeout());
    this.persistTimer = new Timer(clock, () => this.onPersistTimeout());
  }

  /** The handshake completed: the SYN-ACK is acknowledged and the peer's first window known. */
  established(seg: Segment): void {
    this.una = this.nxt;
    this.wnd = seg.window << this.wndShift;
    this.maxWnd = this.wnd;
    this.wl1 = seg.seq;
    this.wl2 = seg.ack;
  }

  flightSize(): number {
    return seqDiff(this.nxt, this.una);
  }

  /** RFC 6675 pipe: bytes believed in the network. Without SACK each dupack stands for one segment gone. */
  pipe(): number {
    let p = this.flightSize() - this.board.sackedBytes - this.board.lostBytes;
    if (!this.sackEnabled) p -= Math.min(this.dupAcks * this.mss, p);
    return p;
  }

  unsentBytes(): number {
    const flight = this.flightSize();
    // A sent FIN is the last sequence number: in flight until everything is acknowledged.
    return this.buffer.length - (this.finSent && flight > 0 ? flight - 1 : flight);
  }

  /** Takes a chunk from the application; `done` runs once the buffer is back under its size. */
  write(chunk: Buffer, done: (err?: Error | null) => void): void {
    this.buffer.append(chunk);
    if (this.buffer.length <= this.ep.budget.allowance(this.config.sendBufferSize)) done();
    else this.writeCallback = done;
  }

  /** A write is waiting for room in the buffer. */
  get hasWriter(): boolean {
    return this.writeCallback !== null;
  }

  /** Fails a write waiting for room (the connection is gone). */
  failWriter(err: Error): void {
    const cb = this.writeCallback;
    this.writeCallback = null;
    cb?.(err);
  }

  queueFin(): void {
    this.finQueued = true;
  }

  /** Sends what the windows allow: lost segments first, then new data, then the FIN. */
  trySend(): void {
    if (!this.ep.canSendData()) return;
    let sent = false;
    while (this.board.lostBytes > 0 && this.pipe() < this.cwnd) {
      const i = this.board.firstLost();
      if (i < 0) break;
      this.retransmit(this.board.at(i));
      sent = true;
    }
    for (;;) {
      const unsent = this.unsentBytes();
      if (unsent === 0) {
        if (this.finQueued && !this.finSent && this.pipe() < this.cwnd) {
          this.sendNew(0, true);
          sent = true;
        }
        break;
      }
      const usable = seqDiff(seqAdd(this.una, this.wnd), this.nxt);
      if (usable <= 0) {
        if (this.flightSize() === 0) this.persistTimer.armIfIdle(this.persistInterval());
        break;
      }
      if (this.pipe() >= this.cwnd) break;
      const len = Math.min(this.segmentLimit(), unsent, usable);
      // A short tail that empties the buffer while segments are in flight waits for the end of this
      // event-loop turn, where the writes of the turn have added to it: libuv reads a busy host socket
      // up to 32 times in a row, and at MTU 65520 each 64 KiB read would otherwise go out as a full
      // segment and one of 68 bytes (a frame and a wake-up of the sandbox's stack for nothing).
      if (len < this.mss && len === unsent && !this.finQueued && !this.tailDue && this.flightSize() > 0) {
        this.ep.scheduleTailFlush();
        break;
      }
      // Sender silly-window avoidance (RFC 1122 §4.2.3.4): a short segment only when it empties the
      // buffer, the window is large, or nothing is outstanding to bring an ACK.
      if (len < this.mss && len < unsent && this.flightSize() > 0 && len < this.maxWnd / 2) break;
      this.sendNew(len, this.finQueued && len === unsent);
      sent = true;
    }
    if (sent) this.armRetransmitTimers();
  }

  /**
   * The most one segment carries: the MSS, or where the link takes super-segments as many whole MSS as
   * fit one and the congestion window leaves room for (at least one MSS, as for a plain segment).
   */
  private segmentLimit(): number {
    const max = this.ep.superSegmentPayload;
    if (max <= this.mss) return this.mss;
    return Math.max(this.mss, Math.min(max - (max % this.mss), this.cwnd - this.pipe()));
  }

  /** Sends what trySend() held back for the end of the turn, as well as anything else it allows. */
  sendTail(): void {
    this.tailDue = true;
    this.trySend();
    this.tailDue = false;
  }

  private sendNew(len: number, fin: boolean): void {
    const end = seqAdd(this.nxt, len + (fin ? 1 : 0));
    let flags = TCP_FLAG_ACK;
    if (fin) flags |= TCP_FLAG_FIN;
    if (len > 0 && len === this.unsentBytes()) flags |= TCP_FLAG_PSH;
    this.ep.emitSegment(this.nxt, flags, seqDiff(this.nxt, this.una), len);
    this.board.push(this.nxt, end, fin, this.ep.clock.now());
    this.nxt = end;
    if (fin) this.finSent = true;
  }

  private retransmit(r: SentSegment): void {
    const len = r.size - (r.fin ? 1 : 0);
    let flags = TCP_FLAG_ACK;
    if (r.fin) flags |= TCP_FLAG_FIN;
    if (len > 0) flags |= TCP_FLAG_PSH;
    this.ep.emitSegment(r.start, flags, seqDiff(r.start, this.una), len);
    this.board.retransmitted(r, this.ep.clock.now());
    this.ep.stats.retransmits++;
  }

  /**
   * Processes the acknowledgment fields of an acceptable segment (RFC 9293 §3.10.7.4, fifth check).
   * Returns false when the segment must be dropped.
   */
  handleAck(seg: Segment): boolean {
    const ack = seg.ack;
    if (seqGT(ack, this.nxt)) {
      this.ep.sendAck();
      return false;
    }
    // RFC 5961 §5.2: an ACK older than the largest window the peer could have seen is suspect.
    if (seqLT(ack, seqAdd(this.una, -Math.max(this.maxWnd, 1)))) {
      this.ep.sendChallengeAck();
      return false;
    }
    const now = this.ep.clock.now();
    this.heardFromPeer = true;
    const oldWnd = this.wnd;
    if (seqLT(this.wl1, seg.seq) || (this.wl1 === seg.seq && seqLEQ(this.wl2, ack))) {
      this.wnd = seg.window << this.wndShift;
      this.wl1 = seg.seq;
      this.wl2 = ack;
      if (this.wnd > this.maxWnd) this.maxWnd = this.wnd;
    }
    if (this.sackEnabled && seg.options.sackBlockCount > 0) this.processSackBlocks(seg, now);

    const acked = seqDiff(ack, this.una);
    if (acked > 0) {
      this.sampleRtt(seg, ack, now);
      this.ackRecords(ack, now);
      const finAcked = this.finSent && ack === this.nxt;
      this.buffer.consume(acked - (finAcked ? 1 : 0));
      this.una = ack;
      this.backoff = 0;
      this.retries = 0;
      if (this.tlpEnd !== -1 && seqGEQ(ack, this.tlpEnd)) this.tlpEnd = -1;
      if (this.inRecovery) {
        if (seqGEQ(ack, this.recoveryPoint)) {
          this.inRecovery = false;
          this.cwnd = Math.max(Math.min(this.ssthresh, this.flightSize() + this.mss), this.mss);
        } else if (!this.sackEnabled && this.board.length > 0) {
          // NewReno partial ACK (RFC 6582): the next hole is lost too.
          this.board.markLost(this.board.at(0));
        }
      } else {
        this.growWindow(acked, now);
      }
      this.dupAcks = 0;
      if (this.flightSize() > 0) this.rtoTimer.arm(this.rtt.backedOff(0));
      else this.rtoTimer.disarm();
      if (this.writeCallback && this.buffer.length <= this.ep.budget.allowance(this.config.sendBufferSize)) {
        const cb = this.writeCallback;
        this.writeCallback = null;
        cb();
      }
      if (finAcked) this.ep.onFinAcked();
      if (!this.ep.canSendData()) return true;
    } else if (
      acked === 0 &&
      seg.dataLength === 0 &&
      !seg.fin &&
      this.wnd === oldWnd &&
      this.flightSize() > 0
    ) {
      this.dupAcks++;
      if (!this.sackEnabled && !this.inRecovery && this.dupAcks === DUP_THRESH && this.board.length > 0) {
        this.board.markLost(this.board.at(0));
        this.enterRecovery();
      }
    }
    if (this.sackEnabled && this.board.length > 0) this.detectSackLosses(now);
    if (this.wnd > 0 && this.persistTimer.armed) {
      this.persistTimer.disarm();
      this.persistBackoff = 0;
    }
    this.trySend();
    this.armRetransmitTimers();
    return true;
  }

  private processSackBlocks(seg: Segment, now: number): void {
    const o = seg.options;
    for (let b = 0; b < o.sackBlockCount; b++) {
      const start = o.sackBlocks[b * 2]!;
      const end = o.sackBlocks[b * 2 + 1]!;
      // Ignore D-SACKs and blocks outside what is outstanding (RFC 2883, RFC 6675 §5).
      if (!seqLT(start, end) || seqLEQ(start, this.una) || seqGT(end, this.nxt)) continue;
      for (let i = this.board.indexAfter(start); i < this.board.length; i++) {
        const r = this.board.at(i);
        if (seqGT(r.end, end)) break;
        if (r.sacked || seqLT(r.start, start)) continue;
        this.rack.noteReordering(r, this.board.highestSacked, this.board.sackedBytes > 0);
        this.board.markSacked(r);
        this.rack.onDelivered(r, now, this.rtt.minRtt);
      }
    }
  }

  private ackRecords(ack: number, now: number): void {
    while (this.board.length > 0) {
      const r = this.board.at(0);
      if (seqLEQ(r.end, ack)) {
        if (!r.sacked) this.rack.onDelivered(r, now, this.rtt.minRtt);
        this.board.shift();
      } else {
        if (seqGT(ack, r.start)) this.board.trimFront(ack);
        break;
      }
    }
  }

  private sampleRtt(seg: Segment, ack: number, now: number): void {
    const o = seg.options;
    if (this.ep.tsEnabled && o.hasTimestamp && o.tsEcr !== 0) {
      const rtt = (this.ep.tsNow() - o.tsEcr) >>> 0;
      if (rtt < this.config.maxRtoMs) this.rtt.sample(rtt);
      return;
    }
    // Karn's algorithm: only a segment sent once gives an unambiguous sample.
    if (this.board.length === 0) return;
    const head = this.board.at(0);
    if (head.xmitCount === 1 && seqLEQ(head.end, ack)) this.rtt.sample(now - head.xmitTime);
  }

  private growWindow(acked: number, now: number): void {
    if (this.cwnd < this.ssthresh) this.cwnd += acked;
    else this.cwnd = this.cubic.onAck(this.cwnd / this.mss, acked / this.mss, now, this.rtt.srtt) * this.mss;
    // The peer's window bounds what can be in flight; growing far past it only builds a burst.
    const cap = 2 * Math.max(this.maxWnd, this.config.initialCwndSegments * this.mss);
    if (this.cwnd > cap) this.cwnd = cap;
  }

  private enterRecovery(): void {
    this.inRecovery = true;
    this.recoveryPoint = this.nxt;
    this.ssthresh = Math.max(this.cubic.onLoss(this.cwnd / this.mss) * this.mss, 2 * this.mss);
    this.cwnd = this.ssthresh;
    this.tlpTimer.disarm();
    this.ep.stats.fastRecoveries++;
    // RFC 6675 §5 (4.2)/RFC 5681: the first lost segment goes out at once, whatever the pipe.
    const i = this.board.firstLost();
    if (i >= 0) this.retransmit(this.board.at(i));
  }

  /** RACK (RFC 8985 §6.2) and the RFC 6675 IsLost rule; enters recovery when something is lost. */
  private detectSackLosses(now: number): void {
    const sackedSegments = Math.ceil(this.board.sackedBytes / this.mss);
    const reoWnd = this.rack.reorderWindow(this.inRecovery, sackedSegments, this.rtt.srtt);
    const wait = this.rack.detectLoss(this.board, now, reoWnd);
    if (wait > 0) this.reorderTimer.arm(wait);
    else this.reorderTimer.disarm();
    if (this.board.sackedBytes > 0) {
      let bytesAbove = 0;
      let segmentsAbove = 0;
      for (let i = this.board.length - 1; i >= 0; i--) {
        const r = this.board.at(i);
        if (r.sacked) {
          bytesAbove += r.size;
          segmentsAbove++;
        } else if (!r.lost && r.xmitCount === 1 && (segmentsAbove >= DUP_THRESH || bytesAbove > (DUP_THRESH - 1) * this.mss)) {
          this.board.markLost(r);
        }
      }
    }
    if (this.board.lostBytes > 0 && !this.inRecovery) this.enterRecovery();
  }

  private onReorderTimeout(): void {
    this.detectSackLosses(this.ep.clock.now());
    this.trySend();
  }

  /** Arms the RTO when data is in flight, and a tail loss probe ahead of it when RACK-TLP applies. */
  armRetransmitTimers(): void {
    if (this.flightSize() === 0) {
      this.rtoTimer.disarm();
      this.tlpTimer.disarm();
      return;
    }
    this.rtoTimer.armIfIdle(this.rtt.backedOff(this.backoff));
    if (this.sackEnabled && !this.inRecovery && this.tlpEnd === -1 && this.backoff === 0) {
      let pto = this.config.initialRtoMs;
      if (this.rtt.measured) {
        pto = Math.max(2 * this.rtt.srtt, MIN_PTO_MS);
        if (this.board.length === 1) pto += WORST_CASE_DELAYED_ACK_MS;
      }
      this.tlpTimer.arm(Math.min(pto, this.rtoTimer.remaining()));
    }
  }

  /** RFC 8985 §7.3: send one new segment if the window allows, else the last one again. */
  private onProbeTimeout(): void {
    if (this.flightSize() === 0 || this.inRecovery || !this.ep.canSendData()) return;
    const unsent = this.unsentBytes();
    const usable = seqDiff(seqAdd(this.una, this.wnd), this.nxt);
    if (unsent > 0 && usable > 0) {
      const len = Math.min(this.mss, unsent, usable);
      this.sendNew(len, this.finQueued && len === unsent);
    } else {
      const last = this.board.last();
      if (!last || last.sacked) return;
      this.retransmit(last);
    }
    this.tlpEnd = this.nxt;
    this.ep.stats.tailLossProbes++;
    this.rtoTimer.arm(this.rtt.backedOff(this.backoff));
  }

  /** RFC 6298 §5.4–5.7 with RFC 6675 §5.1: everything not SACKed is lost; restart from one segment. */
  private onRetransmitTimeout(): void {
    if (this.flightSize() === 0 || !this.ep.canSendData()) return;
    this.backoff++;
    // A zero window that the peer keeps answering is a slow reader, not a dead peer (Linux's probe0).
    const slowReader = this.wnd === 0 && this.heardFromPeer;
    this.heardFromPeer = false;
    if (!slowReader && ++this.retries > this.config.maxRetransmits) {
      this.ep.abort('ETIMEDOUT');
      return;
    }
    this.ep.stats.timeouts++;
    this.ssthresh = Math.max(this.cubic.onTimeout(this.flightSize() / this.mss) * this.mss, 2 * this.mss);
    this.cwnd = this.mss;
    this.inRecovery = false;
    this.dupAcks = 0;
    this.tlpEnd = -1;
    this.tlpTimer.disarm();
    for (let i = 0; i < this.board.length; i++) this.board.markLost(this.board.at(i));
    const i = this.board.firstLost();
    if (i >= 0) this.retransmit(this.board.at(i));
    this.rtoTimer.arm(this.rtt.backedOff(this.backoff));
  }

  private persistInterval(): number {
    return Math.min(this.rtt.backedOff(this.persistBackoff), this.config.maxPersistIntervalMs);
  }

  /** Zero-window probe: an ACK the peer must answer with its current window (like Linux). */
  private onPersistTimeout(): void {
    if (this.wnd > 0 || this.unsentBytes() === 0 || !this.ep.canSendData()) return;
    this.ep.sendProbe();
    this.ep.stats.windowProbes++;
    this.persistBackoff++;
    this.persistTimer.arm(this.persistInterval());
  }

  /** Path MTU dropped (ICMP packet-too-big): resend what is outstanding in smaller segments. */
  reduceMss(mss: number): void {
    if (mss >= this.mss) return;
    this.mss = mss;
    if (this.cwnd < mss) this.cwnd = mss;
    if (this.flightSize() === 0) return;
    this.board.clear();
    this.nxt = this.una;
    this.finSent = false;
    this.trySend();
  }

  stopTimers(): void {
    this.rtoTimer.stop();
    this.tlpTimer.stop();
    this.reorderTimer.stop();
    this.persistTimer.stop();
  }
}
