// The active open (gVisor's endpoint.Connect, RFC 9293 §3.5 and §3.10.7.3): the one case where the
// stack dials the sandbox, for ports published to the host (`-p`). We send a SYN with every option we
// support, retransmit it on the handshake timer, and on an acceptable SYN-ACK build the same Endpoint
// a passive open builds (negotiating from the SYN-ACK's options exactly as from a SYN's: an option the
// sandbox left out is off on both sides), ACK it, and hand over the TcpConn duplex. A RST that
// acknowledges our SYN means the port is closed: ECONNREFUSED.
import { TCP_FLAG_RST, TCP_FLAG_SYN, TCP_MIN_HEADER_LENGTH } from '../../header/tcp.js';
import type { TcpConn } from '../../forwarding.js';
import type { FlowId } from '../../tcpip.js';
import { connectionError } from './conn.js';
import type { Tuple } from './address.js';
import { Endpoint, timestampOffset, type TcpContext } from './endpoint.js';
import { synInfoOf, windowShiftFor } from './handshake.js';
import type { Segment } from './segment.js';
import { seqAdd } from './seqnum.js';
import { Timer } from './timer.js';

/** What an active open needs from the protocol besides the endpoint context. */
export interface ConnectOwner extends TcpContext {
  /** The endpoint took over the tuple: demux its segments to it from now on. */
  adopt(ep: Endpoint): void;
  /** The attempt ended (connected or failed): forget it. */
  forgetConnect(attempt: ActiveOpen): void;
}

export class ActiveOpen {
  private readonly timer: Timer;
  private retries = 0;
  private sentAt = 0;
  private done = false;
  readonly promise: Promise<TcpConn>;
  private resolve!: (conn: TcpConn) => void;
  private reject!: (err: Error) => void;

  constructor(
    private readonly owner: ConnectOwner,
    readonly key: string,
    readonly tuple: Tuple,
    /** The flow as the sandbox sees it: from its own address and port to ours. */
    readonly id: FlowId,
    readonly iss: number,
  ) {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.timer = new Timer(owner.clock, () => this.onTimeout());
  }

  start(): void {
    this.sendSyn();
    this.timer.arm(this.owner.config.initialRtoMs);
  }

  /** A segment for our tuple while in SYN-SENT (RFC 9293 §3.10.7.3). */
  handleSegment(seg: Segment): void {
    const ackOk = seg.hasAck && seg.ack === seqAdd(this.iss, 1);
    if (seg.hasAck && !ackOk) {
      if (!seg.rst) this.sendRst(seg.ack);
      return;
    }
    if (seg.rst) {
      if (ackOk) this.fail(connectionError('ECONNREFUSED', `the sandbox refused the connection to port ${this.id.srcPort}`));
      return;
    }
    // A SYN without ACK would be a simultaneous open, which a listening sandbox never does: ignore it.
    if (!seg.syn || !ackOk) return;
    const ep = new Endpoint(this.owner, this.key, this.tuple, this.id, synInfoOf(seg), this.iss);
    this.finish();
    this.owner.adopt(ep);
    ep.establishActive(seg, this.retries === 0 ? this.owner.clock.now() - this.sentAt : -1);
    this.resolve(ep.conn);
  }

  /** ICMP unreachable from the sandbox for our SYN. */
  onUnreachable(): void {
    this.fail(connectionError('EHOSTUNREACH', 'the sandbox answered the connection with an ICMP error'));
  }

  private onTimeout(): void {
    if (this.done) return;
    if (++this.retries > this.owner.config.synAckRetries) {
      this.fail(connectionError('ETIMEDOUT', `the sandbox did not answer on port ${this.id.srcPort}`));
      return;
    }
    this.owner.stats.retransmits++;
    this.sendSyn();
    this.timer.arm(Math.min(this.owner.config.initialRtoMs * 2 ** this.retries, this.owner.config.maxRtoMs));
  }

  private fail(err: Error): void {
    if (this.done) return;
    this.finish();
    this.reject(err);
  }

  private finish(): void {
    this.done = true;
    this.timer.stop();
    this.owner.forgetConnect(this);
  }

  private sendSyn(): void {
    const { config, sender, clock, writer } = this.owner;
    this.sentAt = clock.now();
    const t = this.tuple;
    const o = writer.begin(t, this.iss, 0, TCP_FLAG_SYN, Math.min(config.receiveBufferSize, 0xffff)).options;
    o.mss = Math.min(sender.maxTransportLength(t.family) - TCP_MIN_HEADER_LENGTH, 0xffff);
    o.windowShift = config.windowScaling ? windowShiftFor(config.receiveBufferSize) : -1;
    o.sackPermitted = config.sack;
    if (config.timestamps) {
      o.hasTimestamp = true;
      o.tsVal = (Math.floor(clock.now()) + timestampOffset(this.iss)) >>> 0;
    }
    writer.send(t);
  }

  private sendRst(seq: number): void {
    this.owner.writer.begin(this.tuple, seq, 0, TCP_FLAG_RST, 0);
    this.owner.writer.send(this.tuple);
  }
}
