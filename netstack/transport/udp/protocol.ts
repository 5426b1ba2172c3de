// UDP, after gVisor's udp.Forwarder: the stack terminates every UDP flow the sandbox opens. The
// first datagram of a new 4-tuple creates a session and asks the Forwarder; datagrams that arrive
// while the answer is pending are queued (bounded) and delivered once accepted. Sessions expire
// when idle, and a global cap refuses new tuples (with ICMP) while existing flows keep going.
// `open` is the other direction, for ports published to the host (`-p .../udp`): a session from one of
// our link addresses to a port in the sandbox, whose replies come back on the same tuple.
import { formatIpv4, parseIpv4 } from '../../header/ipv4.js';
import { formatIpv6, parseIpv6 } from '../../header/ipv6.js';
import { UDP_HEADER_LENGTH, UDP_PROTOCOL, UdpView, validateUdp } from '../../header/udp.js';
import type { Forwarder, UdpConn } from '../../forwarding.js';
import type { UdpRelayLink } from '../../link/endpoint.js';
import type { Clock, Family, FlowId, NetworkInfo, NetworkSender, TransportProtocol } from '../../tcpip.js';
import { UdpSession, type SessionOwner } from './session.js';
import type { UdpOptions } from './config.js';

const DNS_PORT = 53;
/** Local ports of the sessions we open (Linux's default ip_local_port_range, as TCP's connect). */
const EPHEMERAL_FIRST = 32768;
const EPHEMERAL_LAST = 60999;

export class UdpProtocol implements TransportProtocol, SessionOwner {
  readonly protocol = UDP_PROTOCOL;
  readonly maxQueued: number;
  private readonly sessions = new Map<string, UdpSession>();
  private readonly udp = new UdpView();
  /** The session the last datagram went to (null once it is removed). */
  private last: UdpSession | null = null;

  constructor(
    readonly sender: NetworkSender,
    readonly clock: Clock,
    private readonly forwarder: Forwarder,
    private readonly options: UdpOptions,
    readonly drop: (reason: string) => void,
    /** The link's native relay, which UdpConn.relay hands sessions to; null on a link without one. */
    readonly relay: UdpRelayLink | null = null,
  ) {
    this.maxQueued = options.maxQueued;
  }

  /** Sessions currently open or pending. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  handlePacket(net: NetworkInfo, payload: Buffer): void {
    const reason = validateUdp(payload, 0, payload.length, net.src, net.dst, net.checksumTrusted);
    if (reason) return this.drop(reason);
    const udp = this.udp.of(payload, 0);
    const srcPort = udp.srcPort;
    const dstPort = udp.dstPort;
    const data = payload.subarray(UDP_HEADER_LENGTH, udp.length);
    // Request/response traffic sends run after run on one tuple: compare it before building a key.
    const last = this.last;
    if (last !== null && last.matches(net.src, srcPort, net.dst, dstPort)) return last.receive(data, net.packet);
    const key = flowKey(net.src, srcPort, net.dst, dstPort);
    const session = this.sessions.get(key);
    if (session) {
      this.last = session;
      return session.receive(data, net.packet);
    }

    if (this.sessions.size >= this.options.maxSessions) {
      this.drop('udp-session-cap');
      return this.sender.sendUnreachable(net.packet, net.family, 'admin-prohibited');
    }
    const format = net.family === 4 ? formatIpv4 : formatIpv6;
    const id: FlowId = { family: net.family, srcAddr: format(net.src, 0), srcPort, dstAddr: format(net.dst, 0), dstPort };
    const idleMs = dstPort === DNS_PORT ? this.options.dnsIdleMs : this.options.idleMs;
    const created = new UdpSession(id, key, net.src.slice(), net.dst.slice(), idleMs, this, { payload: data, packet: net.packet });
    this.sessions.set(key, created);
    this.forwarder.udp(created.request);
  }

  /**
   * Opens a session towards the sandbox: `send` on the returned UdpConn sends datagrams from `from`
   * (one of our own link addresses, e.g. the gateway) and an ephemeral port of ours to `to`:`port`;
   * what the sandbox sends back on that tuple goes to its `onMessage`, not to the forwarder. It expires
   * when idle like any session (`onClose`). Null at the session cap or when no local port is free.
   */
  open(family: Family, from: string, to: string, port: number): UdpConn | null {
    if (this.sessions.size >= this.options.maxSessions) {
      this.drop('udp-session-cap');
      return null;
    }
    const local = family === 4 ? parseIpv4(from) : parseIpv6(from);
    const sandbox = family === 4 ? parseIpv4(to) : parseIpv6(to);
    for (let tries = 0; tries < 64; tries++) {
      const localPort = EPHEMERAL_FIRST + Math.floor(Math.random() * (EPHEMERAL_LAST - EPHEMERAL_FIRST + 1));
      // Keyed as the sandbox's replies will be: from its address and port to ours.
      const key = flowKey(sandbox, port, local, localPort);
      if (this.sessions.has(key)) continue;
      const format = family === 4 ? formatIpv4 : formatIpv6;
      const id: FlowId = { family, srcAddr: format(sandbox, 0), srcPort: port, dstAddr: format(local, 0), dstPort: localPort };
      const session = new UdpSession(id, key, sandbox, local, this.options.idleMs, this, null);
      this.sessions.set(key, session);
      return session;
    }
    return null;
  }

  remove(session: UdpSession): void {
    if (this.last === session) this.last = null;
    if (this.sessions.get(session.key) === session) this.sessions.delete(session.key);
  }

  /** Ends every session (stack shutdown); accepted ones hear it through onClose. */
  close(): void {
    for (const session of [...this.sessions.values()]) session.expire();
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** A map key for the 4-tuple: hex addresses and decimal ports. */
function flowKey(src: Uint8Array, srcPort: number, dst: Uint8Array, dstPort: number): string {
  let key = '';
  for (let i = 0; i < src.length; i++) key += HEX[src[i]!];
  key += `:${srcPort}>`;
  for (let i = 0; i < dst.length; i++) key += HEX[dst[i]!];
  return `${key}:${dstPort}`;
}
