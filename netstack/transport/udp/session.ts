// One UDP session: a 4-tuple the sandbox sent from, its forwarder request while pending, then the
// UdpConn the forwarder talks to once accepted. A session we open towards the sandbox (UdpProtocol.open,
// for published ports) starts open, with no first datagram and no forwarder request to answer.
// A session the forwarder handed to the link's native relay (relay()) keeps its place here: the
// datagrams the relay leaves to the stack (fragments, odd shapes) go to the relayed flow's socket,
// the relay's own figures say when it was last active before the idle timer expires it, and close()
// ends the relayed flow.
import { UDP_HEADER_LENGTH, UDP_PROTOCOL, UdpRepr } from '../../header/udp.js';
import type { RelayedUdp, UdpConn, UdpForwarderRequest } from '../../forwarding.js';
import type { RelayedUdpFlow, UdpRelayLink } from '../../link/endpoint.js';
import type { Clock, FlowId, NetworkSender, Refusal, TimerHandle } from '../../tcpip.js';

/** The part of the UDP protocol a session calls back into. */
export interface SessionOwner {
  readonly sender: NetworkSender;
  readonly clock: Clock;
  readonly maxQueued: number;
  readonly relay: UdpRelayLink | null;
  drop(reason: string): void;
  remove(session: UdpSession): void;
}

/** Longest inbound packet an ICMP error may quote: 576 - 28 for IPv4, 1280 - 48 for IPv6. */
const QUOTE_LIMIT = { 4: 548, 6: 1232 } as const;

const UNREACHABLE = {
  'port-unreachable': 'port',
  'host-unreachable': 'host',
  'net-unreachable': 'net',
  'admin-prohibited': 'admin-prohibited',
} as const;

const EMPTY = Buffer.alloc(0);

export class UdpSession implements UdpConn {
  readonly request: UdpForwarderRequest;
  onClose: (() => void) | null = null;
  private state: 'pending' | 'open' | 'closed' = 'pending';
  private handler: ((payload: Buffer) => void) | null = null;
  /** Datagrams waiting for accept() and a handler: bounded by the owner's maxQueued. */
  private readonly queue: Buffer[] = [];
  private flushScheduled = false;
  /** The last inbound IP packet (truncated), for ICMP errors that quote it. */
  private readonly quote: Buffer;
  private quoteLength = 0;
  /** Our datagrams' header: from the flow's destination port back to the sandbox's. */
  private readonly header = new UdpRepr();
  private lastActivity: number;
  private timer: TimerHandle;
  /** The link relay's flow, once relay() handed the session over. */
  private relayed: RelayedUdpFlow | null = null;

  constructor(
    readonly id: FlowId,
    readonly key: string,
    /** The sandbox's address and the address it sent to, as 4 or 16 bytes. */
    readonly sandboxAddr: Uint8Array,
    readonly remoteAddr: Uint8Array,
    private readonly idleMs: number,
    private readonly owner: SessionOwner,
    /** The sandbox's first datagram and its IP packet; null for a session we open (already open). */
    first: { payload: Buffer; packet: Buffer } | null,
  ) {
    this.quote = Buffer.alloc(QUOTE_LIMIT[id.family]);
    this.header.srcPort = id.dstPort;
    this.header.dstPort = id.srcPort;
    this.lastActivity = owner.clock.now();
    this.timer = owner.clock.setTimeout(() => this.checkIdle(), idleMs);
    if (first) this.receive(first.payload, first.packet);
    else this.state = 'open';
    const queued = this.queue[0] ?? Buffer.from(first?.payload ?? EMPTY);
    this.request = {
      id,
      firstPayload: queued,
      accept: () => this.accept(),
      reject: (how) => this.reject(how),
    };
  }

  get onMessage(): ((payload: Buffer) => void) | null {
    return this.handler;
  }
  set onMessage(handler: ((payload: Buffer) => void) | null) {
    this.handler = handler;
    this.scheduleFlush();
  }

  /** True if a datagram from `src`:`srcPort` to `dst`:`dstPort` belongs to this session. */
  matches(src: Uint8Array, srcPort: number, dst: Uint8Array, dstPort: number): boolean {
    if (srcPort !== this.id.srcPort || dstPort !== this.id.dstPort || src.length !== this.sandboxAddr.length) return false;
    for (let i = 0; i < src.length; i++) if (src[i] !== this.sandboxAddr[i] || dst[i] !== this.remoteAddr[i]) return false;
    return true;
  }

  /** One datagram from the sandbox (`payload` after the UDP header; `packet` the whole IP packet). */
  receive(payload: Buffer, packet: Buffer): void {
    this.lastActivity = this.owner.clock.now();
    this.quoteLength = packet.copy(this.quote, 0, 0, Math.min(packet.length, this.quote.length));
    if (this.relayed) return this.relayed.send(payload);
    // The consumer sends the payload on a host socket asynchronously, so it gets its own copy.
    if (this.state === 'open' && this.handler && this.queue.length === 0) return this.handler(Buffer.from(payload));
    if (this.queue.length >= this.owner.maxQueued) return this.owner.drop('udp-queue-full');
    this.queue.push(Buffer.from(payload));
    this.scheduleFlush();
  }

  send(payload: Uint8Array): void {
    if (this.state === 'closed') return this.owner.drop('udp-send-after-close');
    const sender = this.owner.sender;
    const length = UDP_HEADER_LENGTH + payload.length;
    if (length > sender.maxDatagramLength(this.id.family)) return this.owner.drop('udp-send-too-big');
    this.lastActivity = this.owner.clock.now();
    const { buf, offset } = sender.scratch(this.id.family);
    buf.set(payload, offset + UDP_HEADER_LENGTH);
    const udp = this.header;
    udp.payloadLength = payload.length;
    udp.emit(buf, offset, this.remoteAddr, this.sandboxAddr);
    sender.send(this.id.family, this.remoteAddr, this.sandboxAddr, UDP_PROTOCOL, length);
  }

  sendIcmp(how: Exclude<Refusal, 'reset'>): void {
    if (this.quoteLength === 0) return; // nothing received yet to quote
    this.owner.sender.sendUnreachable(this.quote.subarray(0, this.quoteLength), this.id.family, UNREACHABLE[how]);
  }

  relay(host: Uint8Array, port: number, onRefused: () => void): RelayedUdp | null {
    const link = this.owner.relay;
    if (!link || this.state !== 'open' || this.relayed) return null;
    const flow = link.add(
      { family: this.id.family, sandboxAddr: this.sandboxAddr, sandboxPort: this.id.srcPort, remoteAddr: this.remoteAddr, remotePort: this.id.dstPort, hostAddr: host, hostPort: port },
      {
        refused: (quote) => {
          if (quote.length > 0) this.quoteLength = quote.copy(this.quote);
          onRefused();
        },
        oversize: (payload) => this.send(payload),
      },
    );
    this.relayed = flow;
    // What the sandbox sent before the hand-over (its first datagram at least) goes first.
    for (const payload of this.queue) flow.send(payload);
    this.queue.length = 0;
    return {
      send: (payload) => flow.send(payload),
      get bytesUp() {
        return flow.figures().bytesUp;
      },
      get bytesDown() {
        return flow.figures().bytesDown;
      },
    };
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.relayed?.remove();
    this.timer.cancel();
    this.queue.length = 0;
    this.owner.remove(this);
  }

  /** Closes the session and tells the consumer (idle expiry, stack shutdown). */
  expire(): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.close();
    if (wasOpen) this.onClose?.();
  }

  private accept(): UdpConn {
    if (this.state !== 'pending') throw new Error(`UDP request for ${this.id.dstAddr}:${this.id.dstPort} was already answered`);
    this.state = 'open';
    this.scheduleFlush();
    return this;
  }

  private reject(how: Exclude<Refusal, 'reset'>): void {
    if (this.state !== 'pending') throw new Error(`UDP request for ${this.id.dstAddr}:${this.id.dstPort} was already answered`);
    this.sendIcmp(how);
    this.close();
  }

  /** Queued datagrams go to the handler after the current call stack, once accepted and a handler is set. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.state !== 'open' || !this.handler || this.queue.length === 0) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      while (this.state === 'open' && this.handler && this.queue.length > 0) this.handler(this.queue.shift()!);
    });
  }

  private checkIdle(): void {
    const idle = Math.min(this.owner.clock.now() - this.lastActivity, this.relayed?.figures().idleMs ?? Infinity);
    if (idle >= this.idleMs) return this.expire();
    this.timer = this.owner.clock.setTimeout(() => this.checkIdle(), this.idleMs - idle);
  }
}
