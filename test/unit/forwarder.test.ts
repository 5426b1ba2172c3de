import dgram from 'node:dgram';
import { createCipheriv } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import dnsPacket from 'dns-packet';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowId, Refusal, TcpConn, TcpForwarderRequest, UdpConn, UdpForwarderRequest } from '../../netstack/index.js';
import { Auditor } from '../../src/audit/auditor.js';
import type { FlowEndEvent, FlowEvent } from '../../src/audit/events.js';
import { EgressStats } from '../../src/audit/summary.js';
import { DnsProxy } from '../../src/dns/proxy.js';
import { createForwarder } from '../../src/forwarder/index.js';
import { clientInitialKeys } from '../../src/inspect/quic.js';
import { parse } from '../../src/policy/allowlist.js';
import { Policy } from '../../src/policy/policy.js';
import { HRR_RANDOM, serverHello } from '../helpers/tls-records.js';

const SANDBOX = { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' };
const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function flowId(dstAddr: string, dstPort: number): FlowId {
  return { family: dstAddr.includes(':') ? 6 : 4, srcAddr: '10.0.2.100', srcPort: 40000 + Math.floor(Math.random() * 20000), dstAddr, dstPort };
}

/** A connected pair of in-memory streams: what the sandbox program holds, and the stack's TcpConn. */
function streamPair(id: FlowId): { app: Duplex; conn: TcpConn } {
  let app: Duplex;
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
  return { app, conn };
}

class FakeTcpRequest implements TcpForwarderRequest {
  conn: (TcpConn & { wasReset: boolean }) | null = null;
  app: Duplex | null = null;
  rejected: Refusal | null = null;
  readonly outcome: Promise<'accepted' | Refusal>;
  private settle!: (v: 'accepted' | Refusal) => void;

  constructor(readonly id: FlowId) {
    this.outcome = new Promise((r) => (this.settle = r));
  }

  accept(): TcpConn {
    const { app, conn } = streamPair(this.id);
    this.app = app;
    this.conn = conn as TcpConn & { wasReset: boolean };
    this.settle('accepted');
    return conn;
  }

  reject(how: Refusal): void {
    this.rejected = how;
    this.settle(how);
  }
}

class FakeUdpConn implements UdpConn {
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

  fromSandbox(p: Buffer): void {
    this.handler?.(p);
  }
}

class FakeUdpRequest implements UdpForwarderRequest {
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

function setup(rules: string, opts: { sniCheck?: boolean; audit?: boolean } = {}) {
  const policy = Policy.fromAllowlists([parse(rules, 'test.allow')], { audit: opts.audit });
  const events = new EventEmitter();
  const flows: FlowEvent[] = [];
  const ends: FlowEndEvent[] = [];
  events.on('flow', (e: FlowEvent) => flows.push(e));
  events.on('flowEnd', (e: FlowEndEvent) => ends.push(e));
  const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), opts.audit ?? false);
  const upstream = { resolve: async () => null };
  const dns = new DnsProxy({ policy, upstream, hostAddrs: new Set(), onEvent: (e) => auditor.dns(e) });
  const forwarder = createForwarder({ policy, dns, auditor, sandbox: SANDBOX, sniCheck: opts.sniCheck ?? true, connectTimeoutMs: 2000, inspectTimeoutMs: 300,
    // These tests stand 127.0.0.1 in for a remote host; real flows to loopback are refused (host-loopback.ts).
    refuseHostInternal: false });
  cleanups.push(() => forwarder.close());
  return { policy, forwarder, flows, ends };
}

/** A TCP server on 127.0.0.1: records what it receives and answers upper-cased, ending when the client ends. */
async function upperServer() {
  const received: Buffer[] = [];
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    connections++;
    s.on('data', (c: Buffer) => {
      received.push(c);
      s.write(c.toString('latin1').toUpperCase());
    });
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, received, connections: () => connections };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function readAll(s: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString('latin1')));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

/** The ClientHello node:tls sends for `servername`, captured from an in-memory stream. */
function clientHello(servername: string): Promise<Buffer> {
  const { app, conn } = streamPair(flowId('192.0.2.1', 443));
  const socket = tls.connect({ socket: app, servername, rejectUnauthorized: false });
  socket.on('error', () => {});
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    conn.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        socket.destroy();
        resolve(buf);
      }
    });
  });
}

describe('TCP forwarder', () => {
  it('resets a denied flow at once, without touching the host', () => {
    const { forwarder, flows } = setup('allowed.example\n');
    const req = new FakeTcpRequest(flowId('198.51.100.7', 443));
    forwarder.tcp(req);
    expect(req.rejected).toBe('reset');
    expect(req.conn).toBeNull();
    expect(flows).toMatchObject([{ verdict: 'deny', dst: '198.51.100.7', port: 443, reason: 'not in allowlist' }]);
  });

  it('connects the host first, then accepts and relays both ways with half-close', async () => {
    const server = await upperServer();
    const { forwarder, flows, ends } = setup('127.0.0.1\n');
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    expect(req.conn).toBeNull(); // not before the host socket connected
    expect(await req.outcome).toBe('accepted');
    const reply = readAll(req.app!);
    req.app!.write('hello ');
    req.app!.end('world');
    expect(await reply).toBe('HELLO WORLD');
    await expect.poll(() => ends.length).toBe(1);
    expect(ends[0]).toMatchObject({ proto: 'tcp', bytesUp: 11, bytesDown: 11 });
    expect(ends[0].error).toBeUndefined();
    expect(flows[0]).toMatchObject({ verdict: 'allow', via: 'ip-rule' });
  });

  it('resets the sandbox when the host refuses', async () => {
    const { forwarder, ends } = setup('127.0.0.1\n');
    const req = new FakeTcpRequest(flowId('127.0.0.1', await freePort()));
    forwarder.tcp(req);
    expect(await req.outcome).toBe('reset');
    expect(ends[0].error).toBe('host ECONNREFUSED');
  });

  it('resets the host when the sandbox resets, and the sandbox when the host resets', async () => {
    let hostSide: net.Socket | null = null;
    const server = net.createServer((s) => {
      hostSide = s;
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const { forwarder } = setup('127.0.0.1\n');
    const req = new FakeTcpRequest(flowId('127.0.0.1', (server.address() as net.AddressInfo).port));
    forwarder.tcp(req);
    await req.outcome;
    await expect.poll(() => hostSide).not.toBeNull();
    const hostClosed = new Promise<boolean>((r) => hostSide!.on('close', (hadError) => r(hadError)));
    req.conn!.destroy(Object.assign(new Error('RST from sandbox'), { code: 'ECONNRESET' }));
    expect(await hostClosed).toBe(true);

    const req2 = new FakeTcpRequest(flowId('127.0.0.1', (server.address() as net.AddressInfo).port));
    forwarder.tcp(req2);
    await req2.outcome;
    await expect.poll(() => hostSide !== null && !hostSide.destroyed).toBe(true);
    hostSide!.resetAndDestroy();
    await expect.poll(() => req2.conn!.wasReset).toBe(true);
  });

  it('relays a pinned flow whose SNI names the pinned allowed name', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const hello = await clientHello('good.example');
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    await req.outcome;
    req.app!.write(hello);
    await expect.poll(() => Buffer.concat(server.received).length).toBe(hello.length);
    expect(Buffer.concat(server.received).equals(hello)).toBe(true);
    expect(flows[0]).toMatchObject({ verdict: 'allow', via: 'pin', name: 'good.example', reason: 'SNI matches an allowed name' });
  });

  it('resets a pinned flow whose SNI names another host, and refuses encrypted ClientHellos', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows } = setup('good.example\nother.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    await req.outcome;
    req.app!.write(await clientHello('other.example'));
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    expect(flows[0]).toMatchObject({ verdict: 'deny', reason: 'SNI other.example is not an allowed name resolved to 127.0.0.1' });

    const hello = await clientHello('good.example');
    const ech = withExtension(hello, 0xfe0d, Buffer.from([0, 1, 2, 3]));
    const req2 = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req2);
    await req2.outcome;
    req2.app!.write(ech);
    await expect.poll(() => req2.conn!.wasReset).toBe(true);
    expect(flows[1]).toMatchObject({ verdict: 'deny', reason: 'encrypted ClientHello (ECH) hides the server name' });
    expect(server.received).toHaveLength(0); // the host was dialled, but heard nothing
  });

  it('checks the ClientHello a client sends after a HelloRetryRequest: another name resets the flow before it reaches the host', async () => {
    // A server that asks every client for a retry, as one does when the first key share doesn't suit it.
    const received: Buffer[] = [];
    const server = net.createServer((s) => {
      s.once('data', () => s.write(serverHello(HRR_RANDOM)));
      s.on('data', (c: Buffer) => received.push(c));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const { forwarder, policy, flows, ends } = setup('good.example\nother.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    policy.pin('other.example', '127.0.0.2', 60);
    const first = await clientHello('good.example');
    const second = await clientHello('other.example');
    const req = new FakeTcpRequest(flowId('127.0.0.1', port));
    forwarder.tcp(req);
    await req.outcome;
    const fromServer: Buffer[] = [];
    req.app!.on('data', (c: Buffer) => fromServer.push(c));
    req.app!.write(first);
    await expect.poll(() => Buffer.concat(fromServer).length).toBe(serverHello(HRR_RANDOM).length);
    req.app!.write(second);
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    await expect.poll(() => ends.length).toBe(1);
    expect(Buffer.concat(received).equals(first)).toBe(true);
    expect(flows.map((f) => f.verdict)).toEqual(['allow', 'deny']);
    expect(flows[1].reason).toBe('a later ClientHello names other.example, the first named good.example');
  });

  it('resets a pinned flow that never completes its ClientHello', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    await req.outcome;
    req.app!.write((await clientHello('good.example')).subarray(0, 20));
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    expect(flows[0]).toMatchObject({ verdict: 'deny', reason: 'no complete TLS ClientHello or HTTP request to check the name of' });
    expect(server.received).toHaveLength(0);
  });

  it('checks the HTTP Host of a pinned flow', async () => {
    const server = await upperServer();
    const { forwarder, policy } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const ok = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(ok);
    await ok.outcome;
    const reply = readAll(ok.app!);
    ok.app!.end('GET / HTTP/1.1\r\nHost: good.example\r\n\r\n');
    expect(await reply).toBe('GET / HTTP/1.1\r\nHOST: GOOD.EXAMPLE\r\n\r\n');

    const bad = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(bad);
    await bad.outcome;
    bad.app!.write('GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n');
    await expect.poll(() => bad.conn!.wasReset).toBe(true);
  });

  it('passes other protocols on a pinned address only when the rule names the port', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows } = setup(`plain.example\nssh.example:${server.port}\n`);
    policy.pin('plain.example', '127.0.0.1', 60);
    const refused = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    policy.pin('ssh.example', '127.0.0.2', 60);
    forwarder.tcp(refused);
    await refused.outcome;
    refused.app!.write('SSH-2.0-client\r\n');
    await expect.poll(() => refused.conn!.wasReset).toBe(true);
    expect(flows[0].reason).toMatch(/neither TLS nor HTTP/);

    const { forwarder: f2, policy: p2 } = setup(`ssh.example:${server.port}\n`);
    p2.pin('ssh.example', '127.0.0.1', 60);
    const silent = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    f2.tcp(silent);
    expect(await silent.outcome).toBe('accepted');
    const reply = readAll(silent.app!);
    silent.app!.end('SSH-2.0-client\r\n');
    expect(await reply).toBe('SSH-2.0-CLIENT\r\n');
  });

  it('dials the host of a pinned flow before accepting: a closed port is refused, not reset after accept', async () => {
    const { forwarder, policy, flows, ends } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', await freePort()));
    forwarder.tcp(req);
    expect(req.conn).toBeNull(); // not before the host socket connected
    expect(await req.outcome).toBe('reset');
    expect(req.conn).toBeNull();
    expect(flows[0]).toMatchObject({ verdict: 'allow', via: 'pin' });
    expect(ends[0].error).toBe('host ECONNREFUSED');
  });

  it('relays a server-first greeting on an explicit port, and still checks the ClientHello the client sends later', async () => {
    const received: Buffer[] = [];
    const server = net.createServer((s) => {
      s.write('220 greeting\r\n');
      s.on('data', (c: Buffer) => received.push(c));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const { forwarder, policy, flows } = setup(`good.example:${port}\nother.example\n`);
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', port));
    forwarder.tcp(req);
    expect(await req.outcome).toBe('accepted');
    // The client says nothing until the server greeted it: the greeting is relayed.
    const greeting = await new Promise<string>((r) => req.app!.once('data', (c: Buffer) => r(c.toString('latin1'))));
    expect(greeting).toBe('220 greeting\r\n');
    // Its first bytes, however late, are judged like any others.
    req.app!.write(await clientHello('other.example'));
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    expect(flows[0]).toMatchObject({ verdict: 'deny', reason: 'SNI other.example is not an allowed name resolved to 127.0.0.1' });
    expect(received).toHaveLength(0);
  });

  it('checks the Host of every request on a keep-alive HTTP connection', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows, ends } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    await req.outcome;
    const first = 'POST /a HTTP/1.1\r\nHost: good.example\r\nContent-Length: 26\r\n\r\nHost: other.example\r\n\r\nxyz';
    req.app!.write(first);
    await expect.poll(() => Buffer.concat(server.received).toString('latin1')).toBe(first);
    req.app!.write('GET /b HTTP/1.1\r\nHost: good.example\r\n\r\n');
    await expect.poll(() => Buffer.concat(server.received).length).toBe(first.length + 39);
    req.app!.write('GET /c HTTP/1.1\r\nHost: other.example\r\n\r\n');
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    await expect.poll(() => ends.length).toBe(1);
    expect(Buffer.concat(server.received).toString('latin1')).not.toContain('/c');
    expect(flows.map((f) => f.verdict)).toEqual(['allow', 'deny']);
    expect(flows[1].reason).toBe('HTTP Host other.example is not an allowed name resolved to 127.0.0.1');
    expect(ends[0].error).toMatch(/^refused: HTTP Host other\.example/);
  });

  it('relays no byte of a later request head before it was checked: bare LF heads and long methods after an Upgrade are refused', async () => {
    const server = await upperServer();
    const { forwarder, policy } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const sequences = [
      ['GET / HTTP/1.1\r\nHost: good.example\r\n\r\n', 'GET /exfil HTTP/1.1\nHost: other.example\n\n'],
      ['GET / HTTP/1.1\r\nHost: good.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', 'VERYLONGMETHODNAME /exfil HTTP/1.1\r\nHost: other.example\r\n\r\n'],
    ];
    for (const [first, second] of sequences) {
      server.received.length = 0;
      const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
      forwarder.tcp(req);
      await req.outcome;
      req.app!.write(first);
      await expect.poll(() => Buffer.concat(server.received).toString('latin1')).toBe(first);
      req.app!.write(second.slice(0, 10));
      req.app!.write(second.slice(10));
      await expect.poll(() => req.conn!.wasReset).toBe(true);
      expect(Buffer.concat(server.received).toString('latin1')).toBe(first);
    }
  });

  it('after an Upgrade, holds the client until the server answered: frames pass after a 101, are framed as requests after a 200', async () => {
    // A server that answers each request head with `answer`, and records every byte it gets.
    const serverAnswering = async (answer: string) => {
      const received: Buffer[] = [];
      const server = net.createServer((s) => {
        s.on('data', (c: Buffer) => {
          received.push(c);
          if (received.length === 1) s.write(answer);
        });
        s.on('error', () => {});
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      cleanups.push(() => server.close());
      return { port: (server.address() as net.AddressInfo).port, received };
    };
    const upgrade = 'GET /ws HTTP/1.1\r\nHost: good.example\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n';
    const after = '\x81\x85mask' + 'GET /evil HTTP/1.1\r\nHost: other.example\r\n\r\n';
    for (const [answer, switched] of [['HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n\r\n', true], ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', false]] as const) {
      const server = await serverAnswering(answer);
      const { forwarder, policy, flows } = setup('good.example\n');
      policy.pin('good.example', '127.0.0.1', 60);
      const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
      forwarder.tcp(req);
      await req.outcome;
      req.app!.on('data', () => {});
      req.app!.write(Buffer.from(upgrade + after, 'latin1')); // sent at once, before any answer
      if (switched) {
        await expect.poll(() => Buffer.concat(server.received).toString('latin1')).toBe(upgrade + after);
        expect(req.conn!.wasReset).toBe(false);
      } else {
        await expect.poll(() => req.conn!.wasReset).toBe(true);
        expect(Buffer.concat(server.received).toString('latin1')).toBe(upgrade);
        expect(flows[1].reason).toBe('malformed HTTP request: not an HTTP/1 request line');
      }
    }
  });

  it('refuses a GET with a body before any of it reaches the host', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows } = setup('good.example\n');
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    await req.outcome;
    const evil = 'GET /evil HTTP/1.1\r\nHost: other.example\r\n\r\n';
    req.app!.write(`GET / HTTP/1.1\r\nHost: good.example\r\nContent-Length: ${evil.length}\r\n\r\n${evil}`);
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    expect(flows[0].verdict).toBe('deny');
    expect(flows[0].reason).toMatch(/^malformed: a body on a GET request/);
    expect(server.received).toHaveLength(0);
  });

  it('checks a first request with a long method on an explicit port', async () => {
    const server = await upperServer();
    const { forwarder, policy, flows } = setup(`good.example:${server.port}\n`);
    policy.pin('good.example', '127.0.0.1', 60);
    const req = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(req);
    await req.outcome;
    req.app!.write('VERYLONGMETHODNAME /exfil HTTP/1.1\r\nHost: other.example\r\n\r\n');
    await expect.poll(() => req.conn!.wasReset).toBe(true);
    expect(flows[0]).toMatchObject({ verdict: 'deny', reason: 'HTTP Host other.example is not an allowed name resolved to 127.0.0.1' });
    expect(server.received).toHaveLength(0);
  });

  it('refuses flows past the connection limit', async () => {
    const server = await upperServer();
    const { forwarder, flows } = setup(`1\n127.0.0.1\n`);
    const first = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(first);
    expect(await first.outcome).toBe('accepted');
    const second = new FakeTcpRequest(flowId('127.0.0.1', server.port));
    forwarder.tcp(second);
    expect(second.rejected).toBe('reset');
    expect(flows[1].reason).toMatch(/connection limit/);
    first.app!.end();
    await expect.poll(() => {
      const third = new FakeTcpRequest(flowId('127.0.0.1', server.port));
      forwarder.tcp(third);
      return third.rejected;
    }).toBeNull();
  });

  it('answers DNS over TCP on port 53 and closes other resolver ports', async () => {
    const { forwarder } = setup('good.example\n');
    const closed = new FakeTcpRequest(flowId('10.0.2.3', 80));
    forwarder.tcp(closed);
    expect(closed.rejected).toBe('reset');
    const gateway = new FakeTcpRequest(flowId('10.0.2.2', 22));
    forwarder.tcp(gateway);
    expect(gateway.rejected).toBe('reset');
    const dnsReq = new FakeTcpRequest(flowId('192.0.2.99', 53));
    forwarder.tcp(dnsReq);
    expect(dnsReq.conn).not.toBeNull();
    const reply = readAllBuffer(dnsReq.app!);
    dnsReq.app!.end(dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ name: 'evil.example', type: 'A' }] }));
    expect(dnsPacket.streamDecode(await reply)).toMatchObject({ id: 7, rcode: 'NXDOMAIN' });
  });
});

describe('UDP forwarder', () => {
  async function udpEcho() {
    const s = dgram.createSocket('udp4');
    const received: Buffer[] = [];
    s.on('message', (m, r) => {
      received.push(m);
      s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address);
    });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    cleanups.push(() => s.close());
    return { port: s.address().port, received };
  }

  it('refuses a denied flow with admin-prohibited', () => {
    const { forwarder } = setup('good.example\n');
    const req = new FakeUdpRequest(flowId('198.51.100.7', 9999), Buffer.from('x'));
    forwarder.udp(req);
    expect(req.rejected).toBe('admin-prohibited');
  });

  it('relays an allowed session both ways and reports host port unreachable', async () => {
    const echo = await udpEcho();
    const { forwarder, ends } = setup('127.0.0.1\n');
    const req = new FakeUdpRequest(flowId('127.0.0.1', echo.port), Buffer.from('one'));
    forwarder.udp(req);
    await expect.poll(() => req.conn?.sent.length).toBe(1);
    expect(req.conn!.sent[0].toString()).toBe('echo:one');
    req.conn!.fromSandbox(Buffer.from('two'));
    await expect.poll(() => req.conn!.sent.length).toBe(2);
    req.conn!.onClose!();
    await expect.poll(() => ends.length).toBe(1);
    expect(ends[0]).toMatchObject({ proto: 'udp', bytesUp: 6, bytesDown: 16 });

    const dead = new FakeUdpRequest(flowId('127.0.0.1', await freePort()), Buffer.from('ping'));
    forwarder.udp(dead);
    await expect.poll(() => dead.conn?.icmp).toEqual(['port-unreachable']);
  });

  it('answers DNS on port 53 of any address through the proxy', async () => {
    const { forwarder } = setup('good.example\n');
    const query = dnsPacket.encode({ type: 'query', id: 9, questions: [{ name: 'evil.example', type: 'A' }] });
    const req = new FakeUdpRequest(flowId('8.8.8.8', 53), query);
    forwarder.udp(req);
    await expect.poll(() => req.conn?.sent.length).toBe(1);
    expect(dnsPacket.decode(req.conn!.sent[0])).toMatchObject({ id: 9, rcode: 'NXDOMAIN' });
    const closed = new FakeUdpRequest(flowId('10.0.2.3', 123), Buffer.from('x'));
    forwarder.udp(closed);
    expect(closed.rejected).toBe('port-unreachable');
  });

  it('checks the QUIC SNI of a pinned session', async () => {
    const echo = await udpEcho();
    const { forwarder, policy, flows } = setup('quic.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const good = quicInitial((await clientHello('quic.example')).subarray(5));
    const ok = new FakeUdpRequest(flowId('127.0.0.1', echo.port), good);
    forwarder.udp(ok);
    await expect.poll(() => echo.received.length).toBe(1);
    expect(echo.received[0].equals(good)).toBe(true);
    expect(flows[0]).toMatchObject({ verdict: 'allow', name: 'quic.example' });

    const bad = new FakeUdpRequest(flowId('127.0.0.1', echo.port), quicInitial((await clientHello('evil.example')).subarray(5)));
    forwarder.udp(bad);
    await expect.poll(() => bad.conn?.icmp).toEqual(['admin-prohibited']);
    expect(bad.conn!.closed).toBe(true);
    const notQuic = new FakeUdpRequest(flowId('127.0.0.1', echo.port), Buffer.from('plain datagram'));
    forwarder.udp(notQuic);
    await expect.poll(() => notQuic.conn?.icmp).toEqual(['admin-prohibited']);
    expect(echo.received).toHaveLength(1);
  });

  it('keeps a pinned QUIC session QUIC: a later datagram of another shape resets it', async () => {
    const echo = await udpEcho();
    const { forwarder, policy, flows, ends } = setup('quic.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const req = new FakeUdpRequest(flowId('127.0.0.1', echo.port), quicInitial((await clientHello('quic.example')).subarray(5)));
    forwarder.udp(req);
    await expect.poll(() => echo.received.length).toBe(1);
    req.conn!.fromSandbox(Buffer.from('\x01 any other protocol, secret=42'));
    await expect.poll(() => req.conn!.icmp).toEqual(['admin-prohibited']);
    expect(req.conn!.closed).toBe(true);
    await expect.poll(() => ends.length).toBe(1);
    expect(flows.map((f) => f.verdict)).toEqual(['allow', 'deny']);
    expect(flows[1].reason).toBe('malformed: QUIC fixed bit not set');
    expect(ends[0].error).toBe('refused: malformed: QUIC fixed bit not set');
    expect(echo.received).toHaveLength(1);
  });

  it('checks the ClientHello of every QUIC connection started on a pinned session', async () => {
    const echo = await udpEcho();
    const { forwarder, policy, flows } = setup('quic.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const req = new FakeUdpRequest(flowId('127.0.0.1', echo.port), quicInitial((await clientHello('quic.example')).subarray(5)));
    forwarder.udp(req);
    await expect.poll(() => echo.received.length).toBe(1);
    // A second connection with an allowed name passes; one naming another site resets the session.
    const second = quicInitial((await clientHello('quic.example')).subarray(5), Buffer.from('b1b2b3b4b5b6b7b8', 'hex'));
    req.conn!.fromSandbox(second);
    await expect.poll(() => echo.received.length).toBe(2);
    expect(echo.received[1].equals(second)).toBe(true);
    req.conn!.fromSandbox(quicInitial((await clientHello('evil.example')).subarray(5), Buffer.from('c1c2c3c4c5c6c7c8', 'hex')));
    await expect.poll(() => req.conn!.icmp).toEqual(['admin-prohibited']);
    expect(flows.map((f) => f.verdict)).toEqual(['allow', 'deny']);
    expect(flows[1].reason).toBe('later connection: QUIC SNI evil.example is not an allowed name resolved to 127.0.0.1');
    expect(echo.received).toHaveLength(2);
  });

  it('refuses a QUIC Initial in a datagram smaller than 1200 bytes (servers drop it, so it must not be judged)', async () => {
    const echo = await udpEcho();
    const { forwarder, policy, flows } = setup('quic.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const short = quicInitial((await clientHello('quic.example')).subarray(5), undefined, { pad: false });
    expect(short.length).toBeLessThan(1200);
    const req = new FakeUdpRequest(flowId('127.0.0.1', echo.port), short);
    forwarder.udp(req);
    await expect.poll(() => req.conn?.icmp).toEqual(['admin-prohibited']);
    expect(flows[0].reason).toMatch(/^malformed: QUIC Initial in a datagram of \d+ bytes \(clients pad them to 1200\)$/);
    expect(echo.received).toHaveLength(0);
  });

  it('reads every later Initial of a checked QUIC connection: contradicting CRYPTO data, or a second ClientHello for another name, resets it', async () => {
    const echo = await udpEcho();
    const { forwarder, policy, flows } = setup('quic.example\nevil.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const good = (await clientHello('quic.example')).subarray(5);
    const evil = (await clientHello('evil.example')).subarray(5);
    const req = new FakeUdpRequest(flowId('127.0.0.1', echo.port), quicInitial(good));
    forwarder.udp(req);
    await expect.poll(() => echo.received.length).toBe(1);
    // A retransmission of the same bytes passes; other bytes at the same offsets do not.
    req.conn!.fromSandbox(quicInitial(good));
    await expect.poll(() => echo.received.length).toBe(2);
    req.conn!.fromSandbox(quicInitial(evil));
    await expect.poll(() => req.conn!.icmp).toEqual(['admin-prohibited']);
    expect(flows[1].reason).toBe('malformed: QUIC CRYPTO data differs from data already received at the same offset');
    expect(echo.received).toHaveLength(2);
  });

  it("checks the ClientHello a QUIC client sends after a HelloRetryRequest, to the server's connection ID", async () => {
    // A stand-in server: answers with an Initial from its connection ID 5e5e5e5e (as a retry request would come).
    const server = dgram.createSocket('udp4');
    const received: Buffer[] = [];
    const answer = Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 1, 0, 4, 0x5e, 0x5e, 0x5e, 0x5e, 0, 30]), Buffer.alloc(30, 0x77)]);
    server.on('message', (m, r) => {
      received.push(m);
      server.send(answer, r.port, r.address);
    });
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const { forwarder, policy, flows } = setup('quic.example\nevil.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const good = (await clientHello('quic.example')).subarray(5);
    const good2 = (await clientHello('quic.example')).subarray(5);
    const evil = (await clientHello('evil.example')).subarray(5);
    const first = Buffer.from('0102030405060708', 'hex');
    const serverId = Buffer.from('5e5e5e5e', 'hex');
    const req = new FakeUdpRequest(flowId('127.0.0.1', server.address().port), quicInitial(good, first));
    forwarder.udp(req);
    await expect.poll(() => received.length).toBe(1);
    await expect.poll(() => req.conn!.sent.length).toBe(1);
    // The second ClientHello follows the first in the CRYPTO stream, protected with the first ID's keys.
    req.conn!.fromSandbox(quicInitial(good2, serverId, { offset: good.length, keysFrom: first }));
    await expect.poll(() => received.length).toBe(2);
    req.conn!.fromSandbox(quicInitial(evil, serverId, { offset: good.length + good2.length, keysFrom: first }));
    await expect.poll(() => req.conn!.icmp).toEqual(['admin-prohibited']);
    expect(flows[1].reason).toBe('malformed: a later QUIC ClientHello names evil.example, the first named quic.example');
    expect(received).toHaveLength(2);
  });

  it('lets 0-RTT packets through only when the ClientHello offered early data', async () => {
    const echo = await udpEcho();
    const { forwarder, policy, flows } = setup('quic.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const dcid = Buffer.from('0102030405060708', 'hex');
    const zeroRtt = Buffer.concat([Buffer.from([0xd0, 0, 0, 0, 1, 8]), dcid, Buffer.from([0, 0x40, 60]), Buffer.from('NOT QUIC: arbitrary payload to any port, secret=42 .........')]);
    const plain = (await clientHello('quic.example')).subarray(5);
    const req = new FakeUdpRequest(flowId('127.0.0.1', echo.port), quicInitial(plain, dcid));
    forwarder.udp(req);
    await expect.poll(() => echo.received.length).toBe(1);
    req.conn!.fromSandbox(zeroRtt);
    await expect.poll(() => req.conn!.icmp).toEqual(['admin-prohibited']);
    expect(flows[1].reason).toBe('malformed: QUIC 0-RTT packet, but no ClientHello offered early data');
    expect(echo.received).toHaveLength(1);
    // With early_data offered (a resumption), 0-RTT packets pass: their payload is encrypted for the server.
    const early = withExtension(await clientHello('quic.example'), 0x002a, Buffer.alloc(0)).subarray(5);
    const req2 = new FakeUdpRequest(flowId('127.0.0.1', echo.port), Buffer.concat([quicInitial(early, dcid), zeroRtt]));
    forwarder.udp(req2);
    await expect.poll(() => echo.received.length).toBe(2);
    expect(req2.conn!.icmp).toEqual([]);
  });

  it('lets short-header and Handshake packets through once the QUIC server answered, not before', async () => {
    // A stand-in QUIC server: answers every datagram with an Initial from its connection ID 5e5e5e5e.
    const server = dgram.createSocket('udp4');
    const received: Buffer[] = [];
    const answer = Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 1, 0, 4, 0x5e, 0x5e, 0x5e, 0x5e, 0, 30]), Buffer.alloc(30, 0x77)]);
    server.on('message', (m, r) => {
      received.push(m);
      server.send(answer, r.port, r.address);
    });
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const port = server.address().port;
    const { forwarder, policy, flows } = setup('quic.example\n');
    policy.pin('quic.example', '127.0.0.1', 60);
    const initial = quicInitial((await clientHello('quic.example')).subarray(5));
    const oneRtt = Buffer.concat([Buffer.from([0x41, 0x5e, 0x5e, 0x5e, 0x5e]), Buffer.alloc(40, 3)]);
    // Before any answer, a short-header packet can't be QUIC: refused with the first datagram.
    const early = new FakeUdpRequest(flowId('127.0.0.1', port), Buffer.concat([initial, oneRtt]));
    forwarder.udp(early);
    await expect.poll(() => early.conn?.icmp).toEqual(['admin-prohibited']);
    expect(flows[0].reason).toBe('malformed: QUIC short-header packet before the server answered');
    const req = new FakeUdpRequest(flowId('127.0.0.1', port), initial);
    forwarder.udp(req);
    await expect.poll(() => req.conn?.sent.length).toBe(1);
    // The client's Initial acknowledgements go to the server's ID; then Handshake and 1-RTT packets.
    const ack = quicInitialPacket(Buffer.from([0x02, 0, 0, 0, 0]), Buffer.from('5e5e5e5e', 'hex'), Buffer.from('0102030405060708', 'hex'));
    const handshake = Buffer.concat([Buffer.from([0xe0, 0, 0, 0, 1, 4, 0x5e, 0x5e, 0x5e, 0x5e, 0, 30]), Buffer.alloc(30, 2)]);
    req.conn!.fromSandbox(Buffer.concat([ack, handshake]));
    req.conn!.fromSandbox(oneRtt);
    await expect.poll(() => received.length).toBe(3);
    expect(received[2].equals(oneRtt)).toBe(true);
    expect(req.conn!.icmp).toEqual([]);
    expect(flows.map((f) => f.verdict)).toEqual(['deny', 'allow']);
  });
});

function readAllBuffer(s: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
}

function withExtension(record: Buffer, type: number, data: Buffer): Buffer {
  const body = record.subarray(9);
  let p = 2 + 32;
  p += 1 + body[p];
  p += 2 + body.readUInt16BE(p);
  p += 1 + body[p];
  const extLen = body.readUInt16BE(p);
  const ext = Buffer.concat([Buffer.from([type >> 8, type & 0xff, data.length >> 8, data.length & 0xff]), data]);
  const newBody = Buffer.concat([body.subarray(0, p), Buffer.from([(extLen + ext.length) >> 8, (extLen + ext.length) & 0xff]), body.subarray(p + 2, p + 2 + extLen), ext]);
  const hs = Buffer.concat([Buffer.from([1, newBody.length >> 16, (newBody.length >> 8) & 0xff, newBody.length & 0xff]), newBody]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01, hs.length >> 8, hs.length & 0xff]), hs]);
}

/** A protected QUIC v1 client Initial carrying `hello` in one CRYPTO frame at `offset` (RFC 9001 §5), padded to 1200 bytes unless `pad` is false. */
function quicInitial(hello: Buffer, dcid = Buffer.from('0102030405060708', 'hex'), o: { offset?: number; keysFrom?: Buffer; pad?: boolean } = {}): Buffer {
  const at = o.offset ?? 0;
  const frame = Buffer.concat([Buffer.from([0x06, 0x40 | (at >> 8), at & 0xff, 0x40 | (hello.length >> 8), hello.length & 0xff]), hello]);
  return quicInitialPacket(frame, dcid, o.keysFrom ?? dcid, o.pad ?? true);
}

/** A protected QUIC v1 client Initial with `frames`, addressed to `dcid`, protected with the keys of `keysFrom`. */
function quicInitialPacket(frames: Buffer, dcid: Buffer, keysFrom: Buffer, pad = true): Buffer {
  const headerLength = 6 + dcid.length + 1 + 1 + 2 + 4;
  const payload = Buffer.concat([frames, Buffer.alloc(pad ? Math.max(0, 1200 - headerLength - 16 - frames.length) : 0)]);
  const length = 4 + payload.length + 16;
  const header = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([0, 0, 0x40 | (length >> 8), length & 0xff, 0, 0, 0, 0])]);
  const keys = clientInitialKeys(keysFrom);
  const gcm = createCipheriv('aes-128-gcm', keys.key, keys.iv);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  const mask = createCipheriv('aes-128-ecb', keys.hp, null).update(sealed.subarray(0, 16));
  header[0] ^= mask[0] & 0x0f;
  for (let i = 0; i < 4; i++) header[header.length - 4 + i] ^= mask[1 + i];
  return Buffer.concat([header, sealed]);
}
