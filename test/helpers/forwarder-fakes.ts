// The stack's side of the Forwarder contract (netstack/forwarding.ts), in memory: what the
// forwarder tests hand the egress forwarder instead of a running stack. A TCP request's accept() gives
// a TcpConn joined to `app`, the sandbox program's end; a UDP session records what is sent back.
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import pino from 'pino';
import type { FlowId, Refusal, RelayedUdp, TcpConn, TcpForwarderRequest, UdpConn, UdpForwarderRequest } from '../../netstack/index.js';
import { Auditor } from '../../src/egress/audit/auditor.js';
import type { FlowEndEvent, FlowEvent } from '../../src/egress/audit/events.js';
import { EgressStats } from '../../src/egress/audit/summary.js';
import { DnsProxy } from '../../src/egress/dns/proxy.js';
import { createForwarder, type ForwarderOptions } from '../../src/egress/forwarder/index.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';

/** The sandbox's resolver and gateway addresses, as the supervisor gives them. */
export const SANDBOX = { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' };

/** A flow from the sandbox (10.0.2.100 or fd00::100, a random source port) to `dstAddr`:`dstPort`. */
export function flowId(dstAddr: string, dstPort: number): FlowId {
  const v6 = dstAddr.includes(':');
  return { family: v6 ? 6 : 4, srcAddr: v6 ? 'fd00::100' : '10.0.2.100', srcPort: 40000 + Math.floor(Math.random() * 20000), dstAddr, dstPort };
}

/** The stack's TcpConn, which also tells whether the forwarder reset it. */
export type SandboxConn = TcpConn & { wasReset: boolean };

/** A connected pair of in-memory streams: what the sandbox program holds (`app`), and the stack's TcpConn. */
export function streamPair(id: FlowId): { app: Duplex; conn: SandboxConn } {
  let app!: Duplex;
  const conn = new Duplex({
    read() {},
    write(chunk, _e, cb) {
      app.push(chunk);
      cb();
    },
    final(cb) {
      app.push(null);
      cb();
    },
  }) as Duplex & { id: FlowId; reset(): void; wasReset: boolean };
  app = new Duplex({
    read() {},
    write(chunk, _e, cb) {
      conn.push(chunk);
      cb();
    },
    final(cb) {
      conn.push(null);
      cb();
    },
  });
  app.on('error', () => {});
  conn.id = id;
  conn.wasReset = false;
  conn.reset = () => {
    conn.wasReset = true;
    conn.destroy();
    app.destroy(Object.assign(new Error('reset by peer'), { code: 'ECONNRESET' }));
  };
  return { app, conn: conn as unknown as SandboxConn };
}

/** A SYN waiting for the forwarder: `outcome` settles when it accepts (then `app` is set) or rejects. */
export class FakeTcpRequest implements TcpForwarderRequest {
  conn: SandboxConn | null = null;
  app: Duplex | null = null;
  rejected: Refusal | null = null;
  readonly outcome: Promise<'accepted' | Refusal>;
  private settle!: (v: 'accepted' | Refusal) => void;

  constructor(readonly id: FlowId) {
    this.outcome = new Promise((r) => (this.settle = r));
  }

  /** The sandbox program's end once accepted; rejects with the refusal otherwise. */
  async accepted(): Promise<Duplex> {
    const outcome = await this.outcome;
    if (outcome !== 'accepted') throw new Error(`refused: ${outcome}`);
    return this.app!;
  }

  accept(): TcpConn {
    const { app, conn } = streamPair(this.id);
    this.app = app;
    this.conn = conn;
    this.settle('accepted');
    return conn;
  }

  reject(how: Refusal): void {
    this.rejected = how;
    this.settle(how);
  }
}

/** A UDP session: records the datagrams and ICMP errors sent to the sandbox. */
export class FakeUdpConn implements UdpConn {
  readonly sent: Buffer[] = [];
  readonly icmp: string[] = [];
  closed = false;
  onClose: (() => void) | null = null;
  private handler: ((p: Buffer) => void) | null = null;
  private pendingFirst: Buffer | null;

  constructor(
    readonly id: FlowId,
    first: Buffer,
  ) {
    this.pendingFirst = first;
  }

  get onMessage() {
    return this.handler;
  }

  /** Like the stack: the first datagram goes to the first handler set. */
  set onMessage(h: ((p: Buffer) => void) | null) {
    this.handler = h;
    const first = this.pendingFirst;
    if (h && first) {
      this.pendingFirst = null;
      queueMicrotask(() => h(first));
    }
  }

  send(payload: Uint8Array): void {
    this.sent.push(Buffer.from(payload));
  }

  sendIcmp(how: Exclude<Refusal, 'reset'>): void {
    this.icmp.push(how);
  }

  close(): void {
    this.closed = true;
  }

  /** Like a link without a native relay (the in-memory channel): the forwarder keeps a dgram socket. */
  relay(): RelayedUdp | null {
    return null;
  }

  /** A later datagram from the sandbox. */
  fromSandbox(p: Buffer): void {
    this.handler?.(p);
  }
}

export class FakeUdpRequest implements UdpForwarderRequest {
  conn: FakeUdpConn | null = null;
  rejected: Refusal | null = null;

  constructor(
    readonly id: FlowId,
    readonly firstPayload: Buffer,
  ) {}

  accept(): UdpConn {
    this.conn = new FakeUdpConn(this.id, this.firstPayload);
    return this.conn;
  }

  reject(how: Exclude<Refusal, 'reset'>): void {
    this.rejected = how;
  }
}

/**
 * The egress forwarder on `rules` (an allowlist's text), with a silent log, a DNS proxy whose upstream
 * answers nothing, and the flow events collected. `options` override the forwarder's.
 */
export function fakeEgress(rules: string, options: Partial<ForwarderOptions> & { audit?: boolean; maxFlows?: number } = {}) {
  const { audit = false, maxFlows, ...forwarderOptions } = options;
  const policy = Policy.fromAllowlists([parse(rules, 'test.allow')], { audit, maxFlows });
  const events = new EventEmitter();
  const flows: FlowEvent[] = [];
  const ends: FlowEndEvent[] = [];
  events.on('flow', (e: FlowEvent) => flows.push(e));
  events.on('flowEnd', (e: FlowEndEvent) => ends.push(e));
  const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), audit);
  const dns = new DnsProxy({ policy, upstream: { resolve: async () => null }, hostAddrs: new Set(), onEvent: (e) => auditor.dns(e) });
  const forwarder = createForwarder({ policy, dns, auditor, sandbox: SANDBOX, sniCheck: true, ...forwarderOptions });
  return { policy, forwarder, events, flows, ends, auditor };
}
