// TCP keepalive on the host sockets of relayed flows: a peer that vanishes without a FIN or RST must
// not leave the sandbox's side waiting forever. The peer is a test host (a network namespace) that is
// then black-holed (its link goes down: nothing comes back, not even an ICMP error); with the
// keepalive idle time set to 1 s (60 s by default) the kernel's probes (10, 1 s apart: libuv's) go
// unanswered, the host socket fails (ETIMEDOUT), and the sandbox's side is reset. Three roads: a
// direct dial, a dial through --upstream-proxy (the socket to the proxy), a published port's client.
// The sandbox's side is an in-memory stream pair standing in for the stack's connection.
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { FlowId, Refusal, TcpConn, TcpForwarderRequest } from '../../netstack/index.js';
import type { TcpProtocol } from '../../netstack/transport/tcp/index.js';
import { Auditor } from '../../src/audit/auditor.js';
import type { FlowEndEvent } from '../../src/audit/events.js';
import { EgressStats } from '../../src/audit/summary.js';
import { DnsProxy } from '../../src/dns/proxy.js';
import { HOST_KEEPALIVE_MS, parseProxyUrl } from '../../src/forwarder/dialer.js';
import { createForwarder, type EgressForwarder } from '../../src/forwarder/index.js';
import { parse } from '../../src/policy/allowlist.js';
import { Policy } from '../../src/policy/policy.js';
import { parsePublish, Publisher } from '../../src/publish.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const KEEPALIVE_MS = 1000;
/** Idle 1 s + 10 probes 1 s apart, with room to spare; a socket without keepalive would wait for hours. */
const DETECTED_WITHIN_MS = 40_000;
/**
 * How the host socket fails: ETIMEDOUT when the probes go unanswered, or EHOSTUNREACH when the test
 * host's address also stopped answering ARP meanwhile (the kernel reports the soft error it saw).
 */
const GAVE_UP = /^host (ETIMEDOUT|EHOSTUNREACH)$/;

type SandboxConn = TcpConn & { wasReset: boolean };

/** The sandbox program's end (`app`) and the stack's TcpConn, joined in memory. */
function streamPair(id: FlowId): { app: Duplex; conn: SandboxConn } {
  let app!: Duplex;
  const conn = new Duplex({
    allowHalfOpen: true,
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
    allowHalfOpen: true,
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

class SandboxTcpRequest implements TcpForwarderRequest {
  app: Duplex | null = null;
  conn: SandboxConn | null = null;
  readonly accepted: Promise<Duplex>;
  private settle!: (app: Duplex) => void;
  private fail!: (how: Refusal) => void;
  constructor(readonly id: FlowId) {
    this.accepted = new Promise((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
  }
  accept(): TcpConn {
    const { app, conn } = streamPair(this.id);
    this.app = app;
    this.conn = conn;
    this.settle(app);
    return conn;
  }
  reject(how: Refusal): void {
    this.fail(how);
  }
}

function forwarderWith(opts: { upstreamProxy?: string }): { forwarder: EgressForwarder; ends: FlowEndEvent[]; ended: Promise<FlowEndEvent> } {
  const policy = Policy.fromAllowlists([parse('198.18.0.0/15\n', 'test.allow')], {});
  const events = new EventEmitter();
  const ends: FlowEndEvent[] = [];
  const ended = new Promise<FlowEndEvent>((resolve) => events.on('flowEnd', (e: FlowEndEvent) => (ends.push(e), resolve(e))));
  const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), false);
  const dns = new DnsProxy({ policy, upstream: { resolve: async () => null }, hostAddrs: new Set() });
  const forwarder = createForwarder({
    policy,
    dns,
    auditor,
    sandbox: { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' },
    sniCheck: false,
    keepAliveMs: KEEPALIVE_MS,
    upstreamProxy: opts.upstreamProxy ? parseProxyUrl(opts.upstreamProxy) : undefined,
  });
  return { forwarder, ends, ended };
}

/** Writes a line from the sandbox's side and waits for it to come back. */
function echoOnce(app: Duplex, line: string): Promise<string> {
  return new Promise((resolve) => {
    app.once('data', (d: Buffer) => resolve(String(d)));
    app.write(line);
  });
}

const hosts: TestHost[] = [];
afterAll(() => hosts.forEach((h) => h.destroy()));

describe('keepalive default', () => {
  it('is 60 s of silence', () => {
    expect(HOST_KEEPALIVE_MS).toBe(60_000);
  });
});

describe.runIf(canMakeTestHost)('keepalive on relayed host sockets, against a test host that vanishes', () => {
  it.concurrent(
    'a direct flow: the sandbox side is reset once the destination stops answering',
    async () => {
      const host = new TestHost();
      hosts.push(host);
      await host.start('services.mjs', ['--tcp-echo', '7']);
      const { forwarder, ended } = forwarderWith({});
      const req = new SandboxTcpRequest({ family: 4, srcAddr: '10.0.2.100', srcPort: 40001, dstAddr: host.ip4, dstPort: 7 });
      forwarder.tcp(req);
      const app = await req.accepted;
      expect(await echoOnce(app, 'before\n')).toBe('before\n');
      host.blackHole();
      const end = await ended;
      expect(end.error).toMatch(GAVE_UP);
      expect(req.conn!.wasReset).toBe(true);
      forwarder.close();
    },
    DETECTED_WITHIN_MS,
  );

  it.concurrent(
    'a flow through the upstream proxy: the sandbox side is reset once the proxy stops answering',
    async () => {
      const host = new TestHost();
      hosts.push(host);
      await host.start('services.mjs', ['--tcp-echo', '7']);
      await host.start('proxy.mjs', ['--http-connect', '3128']);
      const { forwarder, ended } = forwarderWith({ upstreamProxy: `http://${host.ip4}:3128` });
      const req = new SandboxTcpRequest({ family: 4, srcAddr: '10.0.2.100', srcPort: 40002, dstAddr: host.ip4, dstPort: 7 });
      forwarder.tcp(req);
      const app = await req.accepted;
      expect(await echoOnce(app, 'via proxy\n')).toBe('via proxy\n');
      host.blackHole();
      const end = await ended;
      expect(end.error).toMatch(GAVE_UP);
      expect(req.conn!.wasReset).toBe(true);
      forwarder.close();
    },
    DETECTED_WITHIN_MS,
  );

  it.concurrent(
    'a published port (-p): the sandbox server\'s side is reset once the host client stops answering',
    async () => {
      const host = new TestHost();
      hosts.push(host);
      // The published port listens on the host's side of the veth; the client runs in the test host.
      const { forwarder, ended } = forwarderWith({});
      let accepted!: (conn: SandboxConn, app: Duplex) => void;
      const sandboxSide = new Promise<[SandboxConn, Duplex]>((resolve) => (accepted = (c, a) => resolve([c, a])));
      const target = {
        tcp: {
          connect: async (family: 4 | 6, src: string, dst: string, port: number) => {
            const { app, conn } = streamPair({ family, srcAddr: src, srcPort: 50000, dstAddr: dst, dstPort: port });
            accepted(conn, app);
            return conn;
          },
        } as unknown as TcpProtocol,
        udp: null,
        gateway4: '10.0.2.2',
        gateway6: 'fd00::2',
        sandbox4: '10.0.2.100',
        sandbox6: 'fd00::100',
      };
      const probe = net.createServer();
      await new Promise<void>((r) => probe.listen(0, host.hostIp4, r));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise((r) => probe.close(r));
      const publisher = await Publisher.start([parsePublish(`${host.hostIp4}:${port}:8000`)], target, pino({ level: 'silent' }), { flows: forwarder.inbound, keepAliveMs: KEEPALIVE_MS });
      try {
        host.spawnInside([process.execPath, '-e', `const s = require('net').connect(${port}, '${host.hostIp4}', () => s.write('hello\\n')); s.on('data', () => {}); setInterval(() => {}, 1000);`]);
        const [conn, app] = await sandboxSide;
        const first = await new Promise<string>((resolve) => app.once('data', (d: Buffer) => resolve(String(d))));
        expect(first).toBe('hello\n');
        host.blackHole();
        const end = await ended;
        expect(end).toMatchObject({ direction: 'inbound', dst: '10.0.2.100', port: 8000, bytesDown: 6 });
        expect(end.error).toMatch(GAVE_UP);
        expect(conn.wasReset).toBe(true);
      } finally {
        publisher.close();
        forwarder.close();
      }
    },
    DETECTED_WITHIN_MS,
  );
});
