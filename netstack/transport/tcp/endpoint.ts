// One TCP connection with the sandbox, passive side (gVisor's tcp.endpoint): the state machine of
// RFC 9293 §3.10.7 for segments that arrive, with RFC 5961's defences (challenge ACKs for RSTs not
// exactly at RCV.NXT and for SYNs in synchronized states), RFC 7323 timestamps and PAWS, the
// half-close states and their short timers, keepalive, and the stream the forwarder reads and writes.
// Sending and receiving proper live in snd.ts and rcv.ts; this file decides what each outgoing segment
// of the connection carries (flags, window, options) and sends it through the protocol's SegmentWriter.
import { TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN, TCP_MAX_OPTIONS_LENGTH, TCP_MIN_HEADER_LENGTH, TCP_TIMESTAMP_OPTION_SPACE, sackOptionLength } from '../../header/tcp.js';
import type { Clock, FlowId, LimitName, NetworkSender } from '../../tcpip.js';
import type { Tuple } from './address.js';
import type { BufferBudget } from './budget.js';
import type { TcpConfig } from './config.js';
import { TcpConnection, connectionError, type ConnectionHost } from './conn.js';
import { negotiate, type SynInfo } from './handshake.js';
import { Receiver, type ReceiverHost } from './rcv.js';
import type { Segment } from './segment.js';
import { seqAdd, seqDiff, seqInWindow, seqLEQ, seqLT } from './seqnum.js';
import { Sender, type SenderHost } from './snd.js';
import type { SegmentWriter } from './segment-writer.js';
import type { TcpState } from './state.js';
import type { TcpStats } from './stats.js';
import { Timer } from './timer.js';

const EMPTY = Buffer.alloc(0);

/** A per-connection timestamp origin (RFC 7323 §5.4), derived from the ISS. */
export function timestampOffset(iss: number): number {
  return (iss * 2654435761) >>> 0;
}

/** What an endpoint needs from the protocol that owns it. */
export interface TcpContext {
  readonly sender: NetworkSender;
  /** How every segment is built and sent. */
  readonly writer: SegmentWriter;
  readonly clock: Clock;
  readonly config: TcpConfig;
  readonly stats: TcpStats;
  /** The memory all connections share. */
  readonly budget: BufferBudget;
  /** A cap refused something (reported to the supervisor, rate-limited there). */
  limitHit(limit: LimitName, value: number, detail: string): void;
  /** RFC 5961 §7: challenge ACKs are rate-limited across the stack. */
  allowChallengeAck(): boolean;
  unregister(ep: Endpoint): void;
}

export class Endpoint implements ConnectionHost, ReceiverHost, SenderHost {
  state: TcpState = 'SYN-RCVD';
  readonly conn: TcpConnection;
  readonly snd: Sender;
  readonly rcv: Receiver;
  readonly clock: Clock;
  readonly stats: TcpStats;
  readonly budget: BufferBudget;
  readonly tsEnabled: boolean;
  readonly superSegmentPayload: number;
  readonly sackEnabled: boolean;
  readonly iss: number;
  private readonly irs: number;
  private readonly config: TcpConfig;
  private readonly sender: NetworkSender;
  private readonly writer: SegmentWriter;
  private readonly tsOffset: number;
  /** The MSS we advertise; our window scale shift (-1: not used). */
  private readonly ourMss: number;
  private readonly receiveShift: number;
  private readonly handshakeTimer: Timer;
  private synAckRetries = 0;
  private synAckSentAt = 0;
  private readonly closeTimer: Timer;
  private readonly keepaliveTimer: Timer;
  private keepaliveEnabled: boolean;
  private keepaliveIdleMs: number;
  private keepaliveProbes = 0;
  private finCallback: ((err?: Error | null) => void) | null = null;
  private flushScheduled = false;
  private tailFlushScheduled = false;
  private readCheckScheduled = false;
  /** Bytes this connection has charged to the budget at the last sync. */
  private charged = 0;

  constructor(
    private readonly ctx: TcpContext,
    readonly key: string,
    readonly tuple: Tuple,
    id: FlowId,
    syn: SynInfo,
    iss: number,
  ) {
    this.clock = ctx.clock;
    this.stats = ctx.stats;
    this.budget = ctx.budget;
    this.config = ctx.config;
    this.sender = ctx.sender;
    this.writer = ctx.writer;
    this.iss = iss;
    this.irs = syn.irs;
    const mtuMss = ctx.sender.maxTransportLength(tuple.family) - TCP_MIN_HEADER_LENGTH;
    const n = negotiate(syn, ctx.config, Math.min(mtuMss, 0xffff), tuple.family);
    this.ourMss = n.ourMss;
    this.receiveShift = n.receiveShift;
    this.tsEnabled = n.timestamps;
    const superSegment = ctx.sender.maxTcpSuperSegmentLength(tuple.family);
    this.superSegmentPayload = superSegment > 0 ? superSegment - TCP_MIN_HEADER_LENGTH - TCP_MAX_OPTIONS_LENGTH : 0;
    this.sackEnabled = n.sack;
    this.tsOffset = timestampOffset(iss);
    this.snd = new Sender(this, ctx.config, iss, n.sendMss, n.sack);
    this.snd.wndShift = n.sendShift;
    this.rcv = new Receiver(this, ctx.config, syn.irs, Math.max(0, n.receiveShift), n.ourMss);
    if (syn.hasTimestamp) this.rcv.tsRecent = syn.tsVal;
    this.handshakeTimer = new Timer(this.clock, () => this.onHandshakeTimeout());
    this.closeTimer = new Timer(this.clock, () => this.onCloseTimeout());
    this.keepaliveTimer = new Timer(this.clock, () => this.onKeepaliveTimeout());
    this.keepaliveEnabled = ctx.config.keepalive.enabled;
    this.keepaliveIdleMs = ctx.config.keepalive.idleMs;
    this.flush = this.flush.bind(this);
    this.flushTail = this.flushTail.bind(this);
    this.afterRead = this.afterRead.bind(this);
    this.conn = new TcpConnection(id, this);
  }

  /** Sends the SYN-ACK (RFC 9293 §3.10.7.2) and starts its retransmission timer. */
  start(): void {
    this.sendSynAck();
    this.handshakeTimer.arm(this.config.initialRtoMs);
  }

  // ---- inbound ----

  handleSegment(seg: Segment): void {
    if (this.state === 'CLOSED') return;
    const rcv = this.rcv;
    if (this.state === 'SYN-RCVD' && seg.syn && !seg.hasAck && !seg.rst) {
      // The SYN-ACK was lost: the sandbox retransmitted its SYN.
      if (seg.seq === this.irs) this.sendSynAck();
      return;
    }
    // A SYN in a synchronized state, whatever its sequence number (RFC 5961 §4.2).
    if (seg.syn && !seg.rst) {
      this.sendChallengeAck();
      return;
    }
    const o = seg.options;
    // PAWS (RFC 7323 §5.3): a timestamp older than TS.Recent marks an old duplicate.
    if (this.tsEnabled && o.hasTimestamp && !seg.rst && seqLT(o.tsVal, rcv.tsRecent)) {
      this.sendAck();
      return;
    }
    // First check: is the segment in the receive window (RFC 9293 §3.10.7.4)?
    const segLen = seg.sequenceLength;
    const wnd = rcv.window();
    let acceptable: boolean;
    if (segLen === 0) acceptable = wnd === 0 ? seg.seq === rcv.nxt : seqInWindow(seg.seq, rcv.nxt, wnd);
    else acceptable = wnd > 0 && (seqInWindow(seg.seq, rcv.nxt, wnd) || seqInWindow(seqAdd(seg.seq, segLen - 1), rcv.nxt, wnd));
    // With a zero window, ACKs and RSTs at RCV.NXT still count; their data is dropped.
    if (!acceptable && !(wnd === 0 && seg.seq === rcv.nxt)) {
      if (!seg.rst) this.sendAck();
      return;
    }
    // Second check: RST (RFC 5961 §3.2).
    if (seg.rst) {
      if (seg.seq === rcv.nxt) this.onReset();
      else this.sendChallengeAck();
      return;
    }
    // Fifth check: ACK.
    if (!seg.hasAck) return;
    if (this.state === 'SYN-RCVD') {
      if (seg.ack !== this.snd.nxt) {
        this.sendControl(seg.ack, 0, TCP_FLAG_RST);
        return;
      }
      this.establish(seg);
    }
    if (o.hasTimestamp && seqLEQ(seg.seq, rcv.lastAckSent)) rcv.tsRecent = o.tsVal;
    if (!this.snd.handleAck(seg) || this.closed()) return;
    this.noteActivity();
    // Seventh and eighth: data and FIN, while the sandbox's side is open.
    if (
      (seg.dataLength > 0 || seg.fin) &&
      (this.state === 'ESTABLISHED' || this.state === 'FIN-WAIT-1' || this.state === 'FIN-WAIT-2')
    ) {
      rcv.handleData(seg);
    }
  }

  private establish(seg: Segment): void {
    this.state = 'ESTABLISHED';
    this.handshakeTimer.stop();
    this.stats.connectionsEstablished++;
    if (this.synAckRetries === 0) this.snd.rtt.sample(this.clock.now() - this.synAckSentAt);
    this.snd.established(seg);
    if (this.snd.finQueued) this.state = 'FIN-WAIT-1';
    this.scheduleFlush();
  }

  /**
   * Active open (connect.ts): the sandbox's SYN-ACK acknowledged our SYN. Its window is never scaled
   * (RFC 7323 §2.2); `rttMs` is -1 when the SYN was retransmitted (Karn: no sample).
   */
  establishActive(synAck: Segment, rttMs: number): void {
    this.state = 'ESTABLISHED';
    this.stats.connectionsEstablished++;
    if (rttMs >= 0) this.snd.rtt.sample(rttMs);
    this.snd.established(synAck);
    this.snd.wnd = synAck.window;
    this.snd.maxWnd = synAck.window;
    this.sendAck();
    this.noteActivity();
  }

  /** The sandbox's FIN arrived in order. */
  onPeerFin(): void {
    if (!this.conn.destroyed) this.conn.push(null);
    switch (this.state) {
      case 'ESTABLISHED':
        this.state = 'CLOSE-WAIT';
        break;
      case 'FIN-WAIT-1':
        this.state = 'CLOSING';
        break;
      case 'FIN-WAIT-2':
        this.enterTimeWait();
        break;
    }
  }

  /** Our FIN was acknowledged. */
  onFinAcked(): void {
    const cb = this.finCallback;
    this.finCallback = null;
    cb?.();
    switch (this.state) {
      case 'FIN-WAIT-1':
        this.state = 'FIN-WAIT-2';
        this.closeTimer.arm(this.config.finWait2TimeoutMs);
        break;
      case 'CLOSING':
        this.enterTimeWait();
        break;
      case 'LAST-ACK':
        this.close();
        break;
    }
  }

  private enterTimeWait(): void {
    this.state = 'TIME-WAIT';
    this.snd.stopTimers();
    this.keepaliveTimer.stop();
    this.closeTimer.arm(this.config.timeWaitMs);
  }

  private onReset(): void {
    this.stats.resetsReceived++;
    const wasTimeWait = this.state === 'TIME-WAIT';
    this.close();
    if (!wasTimeWait) this.conn.destroy(connectionError('ECONNRESET', 'connection reset by the sandbox'));
  }

  /** ICMP packet-too-big from the sandbox. */
  onPacketTooBig(mtu: number, quotedSeq: number): void {
    if (this.state === 'CLOSED' || !seqInWindow(quotedSeq, this.snd.una, Math.max(1, this.snd.flightSize()))) return;
    const ipHeader = this.tuple.family === 4 ? 20 : 40;
    const floor = this.tuple.family === 4 ? 536 : 1220;
    const optionSpace = this.tsEnabled ? 12 : 0;
    this.snd.reduceMss(Math.max(mtu - ipHeader - TCP_MIN_HEADER_LENGTH, floor) - optionSpace);
  }

  /** ICMP unreachable from the sandbox: fatal only while the handshake is in progress (RFC 5461). */
  onUnreachable(): void {
    if (this.state !== 'SYN-RCVD') return;
    this.close();
    this.conn.destroy(connectionError('EHOSTUNREACH', 'the sandbox refused the connection'));
  }

  private noteActivity(): void {
    this.keepaliveProbes = 0;
    if (this.keepaliveEnabled) this.keepaliveTimer.arm(this.keepaliveIdleMs);
    if (this.state === 'FIN-WAIT-2') this.closeTimer.arm(this.config.finWait2TimeoutMs);
  }

  // ---- timers ----

  private onHandshakeTimeout(): void {
    if (this.state !== 'SYN-RCVD') return;
    if (++this.synAckRetries > this.config.synAckRetries) {
      this.abort('ETIMEDOUT');
      return;
    }
    this.sendSynAck();
    this.stats.retransmits++;
    this.handshakeTimer.arm(Math.min(this.config.initialRtoMs * 2 ** this.synAckRetries, this.config.maxRtoMs));
  }

  private onCloseTimeout(): void {
    if (this.state === 'TIME-WAIT') {
      this.close();
    } else if (this.state === 'FIN-WAIT-2') {
      this.abort('ETIMEDOUT');
    }
  }

  private onKeepaliveTimeout(): void {
    if (!this.keepaliveEnabled || !this.synchronized()) return;
    if (this.keepaliveProbes >= this.config.keepalive.count) {
      this.abort('ETIMEDOUT');
      return;
    }
    this.keepaliveProbes++;
    this.stats.keepaliveProbes++;
    this.sendProbe();
    this.keepaliveTimer.arm(this.config.keepalive.intervalMs);
  }

  setKeepAlive(enable: boolean, idleMs?: number): void {
    this.keepaliveEnabled = enable;
    if (idleMs !== undefined && idleMs > 0) this.keepaliveIdleMs = idleMs;
    if (enable && this.synchronized()) this.keepaliveTimer.arm(this.keepaliveIdleMs);
    else this.keepaliveTimer.disarm();
  }

  /** A method, not a field test: the state changes under the caller during ACK processing. */
  closed(): boolean {
    return this.state === 'CLOSED';
  }

  private synchronized(): boolean {
    return this.state !== 'SYN-RCVD' && this.state !== 'CLOSED' && this.state !== 'TIME-WAIT';
  }

  canSendData(): boolean {
    return this.state !== 'SYN-RCVD' && this.state !== 'CLOSED' && this.state !== 'TIME-WAIT';
  }

  // ---- the application side (TcpConn) ----

  unreadBytes(): number {
    return this.conn.readableLength;
  }

  deliver(data: Buffer): void {
    if (!this.conn.destroyed) this.conn.push(data);
  }

  deliverBorrowed(buf: Buffer, off: number, len: number): void {
    const sink = this.conn.sink;
    if (sink && this.conn.readableLength === 0 && !this.conn.destroyed) {
      const taken = sink(buf.subarray(off, off + len));
      off += taken;
      len -= taken;
      if (len === 0) return;
    }
    const copy = Buffer.allocUnsafe(len);
    buf.copy(copy, 0, off, off + len);
    this.deliver(copy);
  }

  /**
   * The stream wants data. Node calls this before it takes the bytes out of its buffer, so the window
   * is looked at once the read completes. The empty push tells Node we have nothing more right now, so
   * that the next read() calls this again (otherwise it waits for a push that a closed window blocks).
   */
  applicationRead(): void {
    if (!this.rcv.finReceived && !this.conn.destroyed) this.conn.push(EMPTY);
    if (this.readCheckScheduled) return;
    this.readCheckScheduled = true;
    queueMicrotask(this.afterRead);
  }

  private afterRead(): void {
    this.readCheckScheduled = false;
    this.syncBudget();
    if (this.synchronized()) this.rcv.onApplicationRead();
  }

  /** Brings this connection's charge to the shared budget up to date (after segments, writes, reads). */
  syncBudget(): void {
    if (this.state === 'CLOSED') return;
    const held = this.snd.buffer.length + this.unreadBytes() + this.rcv.ooo.bytes;
    this.budget.used += held - this.charged;
    this.charged = held;
  }

  /** An out-of-order segment of `length` bytes did not fit under this connection's or the global cap. */
  outOfOrderRefused(length: number): void {
    const global = this.budget.outOfOrder + length > this.budget.outOfOrderCapacity;
    if (global) this.ctx.limitHit('tcp-out-of-order', this.budget.outOfOrderCapacity, 'all connections hold their cap of out-of-order bytes: segment dropped');
    else this.ctx.limitHit('tcp-out-of-order', this.config.outOfOrderBufferSize, 'a connection holds its cap of out-of-order bytes: segment dropped');
  }

  applicationWrite(chunk: Buffer, done: (err?: Error | null) => void): void {
    if (this.state === 'CLOSED' || this.snd.finQueued) {
      done(connectionError('EPIPE', 'write after the connection closed'));
      return;
    }
    this.snd.write(chunk, done);
    this.syncBudget();
    this.scheduleFlush();
  }

  applicationEnd(done: (err?: Error | null) => void): void {
    if (this.state === 'CLOSED') {
      done(connectionError('EPIPE', 'end after the connection closed'));
      return;
    }
    this.finCallback = done;
    this.snd.queueFin();
    if (this.state === 'ESTABLISHED') this.state = 'FIN-WAIT-1';
    else if (this.state === 'CLOSE-WAIT') this.state = 'LAST-ACK';
    this.scheduleFlush();
  }

  /**
   * The stream was destroyed. After end() that is a close, as for a socket: what was written still
   * goes out and the FIN exchange completes (later data from the sandbox is acknowledged and
   * discarded). Before end() it is an abort: RST.
   */
  applicationDestroy(): void {
    if (this.state === 'CLOSED' || this.state === 'TIME-WAIT' || this.snd.finQueued) return;
    this.sendRst();
    this.close();
  }

  applicationReset(): void {
    if (this.state === 'CLOSED') return;
    if (this.state !== 'TIME-WAIT') this.sendRst();
    this.close();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(this.flush);
  }

  /** Sends what writes made sendable, once per burst of writes. */
  private flush(): void {
    this.flushScheduled = false;
    this.snd.trySend();
  }

  scheduleTailFlush(): void {
    if (this.tailFlushScheduled) return;
    this.tailFlushScheduled = true;
    setImmediate(this.flushTail);
  }

  private flushTail(): void {
    this.tailFlushScheduled = false;
    this.snd.sendTail();
  }

  /** Sends RST and closes; the stream ends with `code`. */
  abort(code: 'ETIMEDOUT' | 'ECONNRESET'): void {
    if (this.state === 'CLOSED') return;
    this.stats.connectionsAborted++;
    this.sendRst();
    this.close();
    this.conn.destroy(connectionError(code, code === 'ETIMEDOUT' ? 'the sandbox stopped answering' : 'connection reset'));
  }

  /** Releases everything: timers, the demux entry, waiting callbacks. */
  private close(): void {
    this.state = 'CLOSED';
    this.snd.stopTimers();
    this.rcv.delayedAck.stop();
    this.handshakeTimer.stop();
    this.closeTimer.stop();
    this.keepaliveTimer.stop();
    this.rcv.ooo.clear();
    this.budget.used -= this.charged;
    this.charged = 0;
    this.ctx.unregister(this);
    // Most connections close with nobody waiting: build the error (a stack trace) only for a waiter.
    const cb = this.finCallback;
    this.finCallback = null;
    if (!this.snd.hasWriter && !cb) return;
    const err = connectionError('EPIPE', 'the connection closed');
    this.snd.failWriter(err);
    cb?.(err);
  }

  // ---- outbound ----

  tsNow(): number {
    return (Math.floor(this.clock.now()) + this.tsOffset) >>> 0;
  }

  sendAck(): void {
    this.emitSegment(this.snd.nxt, TCP_FLAG_ACK, 0, 0);
  }

  /** RFC 5961 §7: an ACK that tells a genuine peer where we are, rate-limited. */
  sendChallengeAck(): void {
    if (!this.ctx.allowChallengeAck()) {
      this.stats.challengeAcksSuppressed++;
      return;
    }
    this.stats.challengeAcks++;
    this.sendAck();
  }

  /** A segment one below SND.UNA: the peer answers with an ACK (zero-window and keepalive probes). */
  sendProbe(): void {
    this.emitSegment(seqAdd(this.snd.una, -1), TCP_FLAG_ACK, 0, 0);
  }

  private sendRst(): void {
    this.emitSegment(this.snd.nxt, TCP_FLAG_RST | TCP_FLAG_ACK, 0, 0);
  }

  private sendSynAck(): void {
    this.synAckSentAt = this.clock.now();
    const o = this.writer.begin(this.tuple, this.iss, this.rcv.nxt, TCP_FLAG_SYN | TCP_FLAG_ACK, this.rcv.synWindow()).options;
    o.mss = this.ourMss;
    o.windowShift = this.receiveShift;
    o.sackPermitted = this.sackEnabled;
    if (this.tsEnabled) this.setTimestamp();
    this.writer.send(this.tuple);
  }

  /** A segment with no options outside the connection's rules (a RST to an unacceptable ACK). */
  private sendControl(seq: number, ack: number, flags: number): void {
    this.writer.begin(this.tuple, seq, ack, flags, 0);
    this.writer.send(this.tuple);
  }

  /**
   * Sends a segment of the connection: timestamp and SACK options, then `length` bytes of the send
   * buffer from `bufferOffset`.
   */
  emitSegment(seq: number, flags: number, bufferOffset: number, length: number): void {
    const window = (flags & TCP_FLAG_RST) !== 0 ? 0 : this.rcv.advertise();
    const o = this.writer.begin(this.tuple, seq, this.rcv.nxt, flags, window).options;
    if (this.tsEnabled) this.setTimestamp();
    const sack = this.rcv.sack;
    if (this.sackEnabled && sack.count > 0) {
      let blocks = Math.min(sack.count, this.tsEnabled ? 3 : 4);
      // Every segment of a super-segment carries the options: room in one of them.
      const room = this.sender.maxTransportLength(this.tuple.family) - TCP_MIN_HEADER_LENGTH - (this.tsEnabled ? TCP_TIMESTAMP_OPTION_SPACE : 0) - Math.min(length, this.snd.mss);
      while (blocks > 0 && sackOptionLength(blocks) > room) blocks--;
      for (let i = 0; i < blocks * 2; i++) o.sackBlocks[i] = sack.blocks[i]!;
      o.sackBlockCount = blocks;
    }
    this.writer.send(this.tuple, this.snd.buffer, bufferOffset, length, this.superSegmentPayload > 0 ? this.snd.mss : 0);
    if ((flags & TCP_FLAG_ACK) !== 0) this.rcv.onAckSent();
  }

  private setTimestamp(): void {
    const o = this.writer.out.options;
    o.hasTimestamp = true;
    o.tsVal = this.tsNow();
    o.tsEcr = this.rcv.tsRecent;
  }

  /** For the protocol: is a SYN on this tuple a new connection replacing TIME-WAIT (RFC 6191-like)? */
  acceptsNewSyn(seq: number): boolean {
    return this.state === 'TIME-WAIT' && seqDiff(seq, this.rcv.nxt) > 0;
  }

  /** Drops a TIME-WAIT endpoint so a new connection can take its tuple. */
  retire(): void {
    this.close();
  }
}
