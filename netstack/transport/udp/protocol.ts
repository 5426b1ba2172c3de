// UDP, after gVisor's udp.Forwarder: the stack terminates every UDP flow the sandbox opens. The
// first datagram of a new 4-tuple creates a session and asks the Forwarder; datagrams that arrive
// while the answer is pending are queued (bounded) and delivered once accepted. Sessions expire
// when idle, and a global cap refuses new tuples (with ICMP) while existing flows keep going.
import { formatIpv4 } from '../../header/ipv4.js';
import { formatIpv6 } from '../../header/ipv6.js';
import { UDP_HEADER_LENGTH, UDP_PROTOCOL, UdpView, validateUdp } from '../../header/udp.js';
import type { FlowId, Forwarder } from '../../stack/forwarding.js';
import type { IpSender } from '../../network/sender.js';
import type { Clock, NetworkInfo, TransportProtocol } from '../../stack/transport.js';
import { UdpSession, type SessionOwner } from './session.js';

export interface UdpOptions {
  /** A session with no datagram either way for this long is closed. */
  idleMs: number;
  /** The same for sessions to port 53, whose exchanges are one query and one answer. */
  dnsIdleMs: number;
  /** Most sessions at once; past it new tuples get ICMP admin-prohibited. */
  maxSessions: number;
  /** Most datagrams a session queues while its forwarder request is pending or no handler is set. */
  maxQueued: number;
}

export const UDP_DEFAULTS: UdpOptions = { idleMs: 60_000, dnsIdleMs: 10_000, maxSessions: 4096, maxQueued: 32 };

const DNS_PORT = 53;

export class UdpProtocol implements TransportProtocol, SessionOwner {
  readonly protocol = UDP_PROTOCOL;
  readonly maxQueued: number;
  private readonly sessions = new Map<string, UdpSession>();
  private readonly udp = new UdpView();

  constructor(
    readonly sender: IpSender,
    readonly clock: Clock,
    private readonly forwarder: Forwarder,
    private readonly options: UdpOptions,
    readonly drop: (reason: string) => void,
  ) {
    this.maxQueued = options.maxQueued;
  }

  /** Sessions currently open or pending. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  handlePacket(net: NetworkInfo, payload: Buffer): void {
    const reason = validateUdp(payload, 0, payload.length, net.src, net.dst);
    if (reason) return this.drop(reason);
    const udp = this.udp.of(payload, 0);
    const srcPort = udp.srcPort;
    const dstPort = udp.dstPort;
    const data = payload.subarray(UDP_HEADER_LENGTH, udp.length);
    const key = flowKey(net.src, srcPort, net.dst, dstPort);
    const session = this.sessions.get(key);
    if (session) return session.receive(data, net.packet);

    if (this.sessions.size >= this.options.maxSessions) {
      this.drop('udp-session-cap');
      return this.sender.sendUnreachable(net.packet, net.family, 'admin-prohibited');
    }
    const format = net.family === 4 ? formatIpv4 : formatIpv6;
    const id: FlowId = { family: net.family, srcAddr: format(net.src, 0), srcPort, dstAddr: format(net.dst, 0), dstPort };
    const idleMs = dstPort === DNS_PORT ? this.options.dnsIdleMs : this.options.idleMs;
    const created = new UdpSession(id, key, net.src.slice(), net.dst.slice(), idleMs, this, data, net.packet);
    this.sessions.set(key, created);
    this.forwarder.udp(created.request);
  }

  remove(session: UdpSession): void {
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
