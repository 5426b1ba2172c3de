// The TCP transport protocol (gVisor's tcp.protocol plus its Forwarder): checksum validation, demux
// of inbound segments to endpoints by 4-tuple, RSTs for segments that belong to no connection
// (RFC 9293 §3.10.7.1), and new SYNs turned into forwarder requests. The sandbox is the active opener
// of every connection but those to ports published to the host, which `connect` dials (connect.ts).
import { checksum, fold, pseudoHeaderChecksum } from '../../header/checksum.js';
import { TCP_FLAG_ACK, TCP_FLAG_RST, TCP_MIN_HEADER_LENGTH, TCP_PROTOCOL, TcpHeader } from '../../header/tcp.js';
import type { Forwarder, TcpConn } from '../../forwarding.js';
import { realClock, type Clock, type Family, type LimitHook, type LimitName, type NetworkInfo, type NetworkSender, type Refusal, type TransportProtocol } from '../../tcpip.js';
import { PendingRequest, type RequestOwner } from './forwarder.js';
import { ActiveOpen, type ConnectOwner } from './connect.js';
import { formatAddress, type Tuple } from './address.js';
import { parseIpv4 } from '../../header/ipv4.js';
import { parseIpv6 } from '../../header/ipv6.js';
import { BufferBudget } from './budget.js';
import { resolveTcpConfig, type TcpConfig, type TcpConfigInput } from './config.js';
import { Endpoint, type TcpContext } from './endpoint.js';
import { synInfoOf } from './handshake.js';
import { IsnGenerator } from './isn.js';
import { Segment } from './segment.js';
import { SegmentWriter } from './segment-writer.js';
import { seqAdd } from './seqnum.js';
import { newTcpStats, type TcpStats } from './stats.js';
import { Timer } from './timer.js';

export interface TcpDependencies {
  /** How segments leave: the stack's network layer. */
  sender: NetworkSender;
  /** Asked about every new connection. */
  forwarder: Pick<Forwarder, 'tcp'>;
  clock?: Clock;
  /** Told when a cap refuses something: pending requests, the buffer budget, out-of-order memory. */
  onLimit?: LimitHook;
}

const ICMP_REFUSAL = {
  'port-unreachable': 'port',
  'host-unreachable': 'host',
  'net-unreachable': 'net',
  'admin-prohibited': 'admin-prohibited',
} as const;

export class TcpProtocol implements TransportProtocol, TcpContext, RequestOwner, ConnectOwner {
  readonly protocol = TCP_PROTOCOL;
  readonly stats: TcpStats = newTcpStats();
  readonly config: TcpConfig;
  readonly sender: NetworkSender;
  readonly writer: SegmentWriter;
  readonly clock: Clock;
  readonly budget: BufferBudget;
  private readonly forwarder: Pick<Forwarder, 'tcp'>;
  private readonly onLimit: LimitHook | undefined;
  private readonly isn: IsnGenerator;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly pending = new Map<string, PendingRequest>();
  private readonly pendingPerDestination = new Map<string, number>();
  /** Our own SYNs towards the sandbox, waiting for its SYN-ACK. */
  private readonly connecting = new Map<string, ActiveOpen>();
  private readonly header = new TcpHeader();
  private readonly segment = new Segment();
  /** The endpoint of the previous segment: a bulk flow skips the key lookup. */
  private lastEndpoint: Endpoint | null = null;
  private challengeWindowStart = -Infinity;
  private challengeAcksInWindow = 0;

  constructor(deps: TcpDependencies, config: TcpConfigInput = {}) {
    this.sender = deps.sender;
    this.writer = new SegmentWriter(deps.sender, this.stats);
    this.forwarder = deps.forwarder;
    this.clock = deps.clock ?? realClock;
    this.config = resolveTcpConfig(config);
    this.onLimit = deps.onLimit;
    this.budget = new BufferBudget(this.config.maxTotalBufferBytes, this.config.maxTotalOutOfOrderBytes, this.config.bufferFloorBytes);
    this.isn = new IsnGenerator(this.clock);
  }

  /** Open connections (TIME-WAIT included) and requests waiting for the forwarder. */
  get connectionCount(): number {
    return this.endpoints.size;
  }
  get pendingCount(): number {
    return this.pending.size;
  }

  handlePacket(net: NetworkInfo, payload: Buffer): void {
    const length = payload.length;
    if (length < TCP_MIN_HEADER_LENGTH) {
      this.stats.malformed++;
      return;
    }
    const header = this.header.at(payload, 0);
    const headerLength = header.dataOffset;
    if (headerLength < TCP_MIN_HEADER_LENGTH || headerLength > length) {
      this.stats.malformed++;
      return;
    }
    // A checksum the link vouches for (left to us by the sandbox's kernel) holds only the pseudo-header sum.
    if (!net.checksumTrusted && fold(pseudoHeaderChecksum(net.src, net.dst, TCP_PROTOCOL, length) + checksum(payload, 0, length)) !== 0xffff) {
      this.stats.badChecksum++;
      return;
    }
    this.stats.segmentsReceived++;
    const seg = this.segment;
    seg.parseSegment(header);
    let ep = this.lookup(net.src, seg.srcPort, net.dst, seg.dstPort);
    if (ep && seg.syn && !seg.hasAck && !seg.rst && ep.acceptsNewSyn(seg.seq)) {
      ep.retire();
      ep = undefined;
    }
    if (ep) {
      ep.handleSegment(seg);
      ep.syncBudget();
    } else if (this.connecting.size > 0 && this.connecting.has(tupleKey(net.src, seg.srcPort, net.dst, seg.dstPort))) {
      this.connecting.get(tupleKey(net.src, seg.srcPort, net.dst, seg.dstPort))!.handleSegment(seg);
    } else this.handleUnknownTuple(net, seg);
  }

  handleControl(net: NetworkInfo, kind: 'unreachable' | 'packet-too-big', mtu: number, quoted: Buffer): void {
    if (quoted.length < 8) return;
    const localPort = quoted.readUInt16BE(0);
    const remotePort = quoted.readUInt16BE(2);
    const seq = quoted.readUInt32BE(4);
    // The addresses may be those of the ICMP packet (from the sandbox) or of the quoted one (to it).
    const ep = this.lookup(net.src, remotePort, net.dst, localPort) ?? this.lookup(net.dst, remotePort, net.src, localPort);
    if (!ep) {
      if (kind === 'unreachable') this.connecting.get(tupleKey(net.src, remotePort, net.dst, localPort))?.onUnreachable();
      return;
    }
    if (kind === 'packet-too-big') ep.onPacketTooBig(mtu, seq);
    else ep.onUnreachable();
  }

  private lookup(remote: Uint8Array, remotePort: number, local: Uint8Array, localPort: number): Endpoint | undefined {
    const last = this.lastEndpoint;
    if (
      last &&
      last.tuple.remotePort === remotePort &&
      last.tuple.localPort === localPort &&
      bytesEqual(last.tuple.remote, remote) &&
      bytesEqual(last.tuple.local, local)
    ) {
      return last;
    }
    const ep = this.endpoints.get(tupleKey(remote, remotePort, local, localPort));
    if (ep) this.lastEndpoint = ep;
    return ep;
  }

  private handleUnknownTuple(net: NetworkInfo, seg: Segment): void {
    if (seg.rst) {
      // Never answer a RST; one for a pending request means the sandbox gave up on it.
      this.pending.get(tupleKey(net.src, seg.srcPort, net.dst, seg.dstPort))?.cancel(false);
      return;
    }
    if (!seg.syn || seg.hasAck) {
      this.replyReset(net, seg);
      return;
    }
    const key = tupleKey(net.src, seg.srcPort, net.dst, seg.dstPort);
    if (this.pending.has(key)) {
      this.stats.synRetransmitsWhilePending++;
      return;
    }
    const destinationKey = addressKey(net.dst);
    const perDestination = this.pendingPerDestination.get(destinationKey) ?? 0;
    if (this.pending.size >= this.config.maxPendingRequests) {
      this.stats.requestsOverCap++;
      this.limitHit('tcp-pending', this.config.maxPendingRequests, 'connection requests waiting for the host at the cap: new SYN reset');
      this.replyReset(net, seg);
      return;
    }
    if (perDestination >= this.config.maxPendingPerDestination) {
      this.stats.requestsOverCap++;
      this.limitHit('tcp-pending', this.config.maxPendingPerDestination, `connection requests waiting for ${formatAddress(net.dst)} at the per-destination cap: new SYN reset`);
      this.replyReset(net, seg);
      return;
    }
    if (this.budget.exhausted) {
      this.stats.requestsOverBudget++;
      this.limitHit('tcp-buffers', this.config.maxTotalBufferBytes, 'TCP buffers of all connections at the budget: new SYN reset');
      this.replyReset(net, seg);
      return;
    }
    const tuple: Tuple = {
      family: net.family,
      local: Uint8Array.from(net.dst),
      remote: Uint8Array.from(net.src),
      localPort: seg.dstPort,
      remotePort: seg.srcPort,
    };
    const id = {
      family: net.family,
      srcAddr: formatAddress(tuple.remote),
      srcPort: tuple.remotePort,
      dstAddr: formatAddress(tuple.local),
      dstPort: tuple.localPort,
    };
    const deadline = new Timer(this.clock, () => {
      this.stats.requestsExpired++;
      req.cancel(true);
    });
    const req = new PendingRequest(this, id, key, destinationKey, tuple, synInfoOf(seg), Buffer.from(net.packet), deadline);
    this.pending.set(key, req);
    this.pendingPerDestination.set(destinationKey, perDestination + 1);
    this.stats.requestsCreated++;
    deadline.arm(this.config.requestDeadlineMs);
    this.forwarder.tcp(req);
  }

  /**
   * Dials the sandbox: a connection from `from` (one of our own addresses on the link, e.g. the
   * gateway) and an ephemeral port of ours to `to`:`port` in the sandbox. Resolves once established;
   * rejects with ECONNREFUSED (the sandbox answered RST), ETIMEDOUT or EHOSTUNREACH.
   */
  connect(family: Family, from: string, to: string, port: number): Promise<TcpConn> {
    const local = family === 4 ? parseIpv4(from) : parseIpv6(from);
    const remote = family === 4 ? parseIpv4(to) : parseIpv6(to);
    let localPort = 0;
    let key = '';
    for (let tries = 0; tries < 64 && !localPort; tries++) {
      const candidate = EPHEMERAL_FIRST + Math.floor(Math.random() * (EPHEMERAL_LAST - EPHEMERAL_FIRST + 1));
      key = tupleKey(remote, port, local, candidate);
      if (!this.endpoints.has(key) && !this.connecting.has(key) && !this.pending.has(key)) localPort = candidate;
    }
    if (!localPort) return Promise.reject(new Error(`no free local port towards ${to}:${port}`));
    const tuple: Tuple = { family, local, remote, localPort, remotePort: port };
    const id = { family, srcAddr: formatAddress(remote), srcPort: port, dstAddr: formatAddress(local), dstPort: localPort };
    const attempt = new ActiveOpen(this, key, tuple, id, this.isn.generate(local, localPort, remote, port));
    this.connecting.set(key, attempt);
    attempt.start();
    return attempt.promise;
  }

  adopt(ep: Endpoint): void {
    this.endpoints.set(ep.key, ep);
  }

  forgetConnect(attempt: ActiveOpen): void {
    if (this.connecting.get(attempt.key) === attempt) this.connecting.delete(attempt.key);
  }

  acceptRequest(req: PendingRequest): TcpConn {
    const t = req.tuple;
    const iss = this.isn.generate(t.local, t.localPort, t.remote, t.remotePort);
    const ep = new Endpoint(this, req.key, t, req.id, req.syn, iss);
    this.endpoints.set(req.key, ep);
    ep.start();
    return ep.conn;
  }

  refuseRequest(req: PendingRequest, how: Refusal): void {
    if (how === 'reset') {
      this.sendReset(req.tuple, 0, seqAdd(req.syn.irs, 1), TCP_FLAG_RST | TCP_FLAG_ACK);
    } else {
      this.sender.sendUnreachable(req.packet, req.tuple.family, ICMP_REFUSAL[how]);
    }
  }

  releaseRequest(req: PendingRequest): void {
    if (this.pending.get(req.key) === req) this.pending.delete(req.key);
    const n = (this.pendingPerDestination.get(req.destinationKey) ?? 1) - 1;
    if (n > 0) this.pendingPerDestination.set(req.destinationKey, n);
    else this.pendingPerDestination.delete(req.destinationKey);
  }

  unregister(ep: Endpoint): void {
    if (this.endpoints.get(ep.key) === ep) this.endpoints.delete(ep.key);
    if (this.lastEndpoint === ep) this.lastEndpoint = null;
  }

  limitHit(limit: LimitName, value: number, detail: string): void {
    this.onLimit?.(limit, value, detail);
  }

  allowChallengeAck(): boolean {
    const now = this.clock.now();
    if (now - this.challengeWindowStart >= 1000) {
      this.challengeWindowStart = now;
      this.challengeAcksInWindow = 0;
    }
    if (this.challengeAcksInWindow >= this.config.challengeAckLimit) return false;
    this.challengeAcksInWindow++;
    return true;
  }

  /** RFC 9293 §3.10.7.1: the reset for a segment that belongs to no connection. */
  private replyReset(net: NetworkInfo, seg: Segment): void {
    const tuple: Tuple = { family: net.family, local: net.dst, remote: net.src, localPort: seg.dstPort, remotePort: seg.srcPort };
    if (seg.hasAck) this.sendReset(tuple, seg.ack, 0, TCP_FLAG_RST);
    else this.sendReset(tuple, 0, seqAdd(seg.seq, seg.sequenceLength), TCP_FLAG_RST | TCP_FLAG_ACK);
  }

  private sendReset(t: Tuple, seq: number, ack: number, flags: number): void {
    this.writer.begin(t, seq, ack, flags, 0);
    this.writer.send(t);
  }
}

/** The TCP transport for a Stack: register the result as its protocol 6 handler. */
export function createTcp(deps: TcpDependencies, config: TcpConfigInput = {}): TcpProtocol {
  return new TcpProtocol(deps, config);
}

/** Local ports of the connections we open (Linux's default ip_local_port_range). */
const EPHEMERAL_FIRST = 32768;
const EPHEMERAL_LAST = 60999;

function addressKey(a: Uint8Array): string {
  if (a.length === 4) return String(((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0);
  return Buffer.from(a.buffer, a.byteOffset, a.length).toString('hex');
}

function tupleKey(remote: Uint8Array, remotePort: number, local: Uint8Array, localPort: number): string {
  return `${addressKey(remote)}:${remotePort}>${addressKey(local)}:${localPort}`;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
