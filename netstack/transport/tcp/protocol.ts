// The TCP transport protocol (gVisor's tcp.protocol plus its Forwarder): checksum validation, demux
// of inbound segments to endpoints by 4-tuple, RSTs for segments that belong to no connection
// (RFC 9293 §3.10.7.1), and new SYNs turned into forwarder requests. The sandbox is always the
// active opener: every connection here is passive, to whatever address the sandbox dialled.
import { checksum, fold, pseudoHeaderChecksum } from '../../header/checksum.js';
import { TCP_FLAG_ACK, TCP_FLAG_RST, TCP_MIN_HEADER_LENGTH, TCP_PROTOCOL, writeTcpHeader } from '../../header/tcp.js';
import type { Forwarder, Refusal, TcpConn } from '../../stack/forwarding.js';
import { realClock, type Clock, type NetworkInfo, type NetworkSender, type TransportProtocol } from '../../stack/transport.js';
import { PendingRequest, type RequestOwner } from './forwarder.js';
import { formatAddress } from './address.js';
import { resolveTcpConfig, type TcpConfig, type TcpConfigInput } from './config.js';
import { Endpoint, type TcpContext, type Tuple } from './endpoint.js';
import { synInfoOf } from './handshake.js';
import { IsnGenerator } from './isn.js';
import { Segment } from './segment.js';
import { seqAdd } from './seqnum.js';
import { newTcpStats, type TcpStats } from './stats.js';
import { Timer } from './timer.js';

export interface TcpDependencies {
  /** How segments leave: the stack's network layer. */
  sender: NetworkSender;
  /** Asked about every new connection. */
  forwarder: Pick<Forwarder, 'tcp'>;
  clock?: Clock;
}

const ICMP_REFUSAL = {
  'port-unreachable': 'port',
  'host-unreachable': 'host',
  'net-unreachable': 'net',
  'admin-prohibited': 'admin-prohibited',
} as const;

export class TcpProtocol implements TransportProtocol, TcpContext, RequestOwner {
  readonly protocol = TCP_PROTOCOL;
  readonly stats: TcpStats = newTcpStats();
  readonly config: TcpConfig;
  readonly sender: NetworkSender;
  readonly clock: Clock;
  private readonly forwarder: Pick<Forwarder, 'tcp'>;
  private readonly isn: IsnGenerator;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly pending = new Map<string, PendingRequest>();
  private readonly pendingPerDestination = new Map<string, number>();
  private readonly segment = new Segment();
  /** The endpoint of the previous segment: a bulk flow skips the key lookup. */
  private lastEndpoint: Endpoint | null = null;
  private challengeWindowStart = -Infinity;
  private challengeAcksInWindow = 0;

  constructor(deps: TcpDependencies, config: TcpConfigInput = {}) {
    this.sender = deps.sender;
    this.forwarder = deps.forwarder;
    this.clock = deps.clock ?? realClock;
    this.config = resolveTcpConfig(config);
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
    const headerLength = (payload[12]! >> 4) * 4;
    if (headerLength < TCP_MIN_HEADER_LENGTH || headerLength > length) {
      this.stats.malformed++;
      return;
    }
    if (fold(pseudoHeaderChecksum(net.src, net.dst, TCP_PROTOCOL, length) + checksum(payload, 0, length)) !== 0xffff) {
      this.stats.badChecksum++;
      return;
    }
    this.stats.segmentsReceived++;
    const seg = this.segment;
    seg.parse(payload, headerLength);
    let ep = this.lookup(net.src, seg.srcPort, net.dst, seg.dstPort);
    if (ep && seg.syn && !seg.hasAck && !seg.rst && ep.acceptsNewSyn(seg.seq)) {
      ep.retire();
      ep = undefined;
    }
    if (ep) ep.handleSegment(seg);
    else this.handleUnknownTuple(net, seg);
  }

  handleControl(net: NetworkInfo, kind: 'unreachable' | 'packet-too-big', mtu: number, quoted: Buffer): void {
    if (quoted.length < 8) return;
    const localPort = quoted.readUInt16BE(0);
    const remotePort = quoted.readUInt16BE(2);
    const seq = quoted.readUInt32BE(4);
    // The addresses may be those of the ICMP packet (from the sandbox) or of the quoted one (to it).
    const ep = this.lookup(net.src, remotePort, net.dst, localPort) ?? this.lookup(net.dst, remotePort, net.src, localPort);
    if (!ep) return;
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
    if (this.pending.size >= this.config.maxPendingRequests || perDestination >= this.config.maxPendingPerDestination) {
      this.stats.requestsOverCap++;
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
    const { buf, offset } = this.sender.scratch(t.family);
    writeTcpHeader(buf, offset, t.localPort, t.remotePort, seq, ack, TCP_MIN_HEADER_LENGTH, flags, 0);
    const sum = fold(pseudoHeaderChecksum(t.local, t.remote, TCP_PROTOCOL, TCP_MIN_HEADER_LENGTH) + checksum(buf, offset, TCP_MIN_HEADER_LENGTH));
    buf.writeUInt16BE(~sum & 0xffff, offset + 16);
    this.sender.send(t.family, t.local, t.remote, TCP_PROTOCOL, TCP_MIN_HEADER_LENGTH);
    this.stats.resetsSent++;
    this.stats.segmentsSent++;
  }
}

/** The TCP transport for a Stack: register the result as its protocol 6 handler. */
export function createTcp(deps: TcpDependencies, config: TcpConfigInput = {}): TcpProtocol {
  return new TcpProtocol(deps, config);
}

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
