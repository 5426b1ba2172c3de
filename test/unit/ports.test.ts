// Inbound ports and host services, below the sandbox: the -p / --host-loopback / --upstream-proxy
// parsers, the proxy dialers against test proxies written from the RFCs (test/helpers/servers/proxy.mjs),
// and the forwarder's routes to the host loopback and through a proxy.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Duplex } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowId, Refusal, TcpConn, TcpForwarderRequest } from '../../netstack/index.js';
import { Auditor } from '../../src/audit/auditor.js';
import type { FlowEvent } from '../../src/audit/events.js';
import { EgressStats } from '../../src/audit/summary.js';
import { DnsProxy } from '../../src/dns/proxy.js';
import { TapboxError } from '../../src/errors.js';
import { dial, parseProxyUrl, type ProxySpec } from '../../src/forwarder/dialer.js';
import { parseHostLoopback } from '../../src/forwarder/host-loopback.js';
import { createForwarder } from '../../src/forwarder/index.js';
import { resolveOptions } from '../../src/options.js';
import { parse } from '../../src/policy/allowlist.js';
import { Policy } from '../../src/policy/policy.js';
import { parsePublish, parsePublishList } from '../../src/publish.js';
import { httpConnectProxy, socks5Proxy } from '../helpers/servers/proxy.mjs';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function usageError(f: () => unknown): TapboxError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TapboxError);
    expect((e as TapboxError).code).toBe('EUSAGE');
    return e as TapboxError;
  }
  throw new Error('expected a usage error');
}

async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((r) => server.listen(0, host, r));
  cleanups.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** An echo server that also counts its connections. */
async function echoServer(host = '127.0.0.1') {
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    connections++;
    s.on('error', () => {});
    s.pipe(s);
  });
  return { port: await listen(server, host), connections: () => connections };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface ProxyRequest {
  proxy: string;
  target: string | null;
  auth: string | null;
  ok: boolean;
}

async function startProxy(kind: 'http' | 'socks5', auth: string | null = null) {
  const requests: ProxyRequest[] = [];
  const make = kind === 'http' ? httpConnectProxy : socks5Proxy;
  const server = make({ auth, onRequest: (r: ProxyRequest) => requests.push(r) }) as net.Server;
  const port = await listen(server);
  return { port, requests, url: (cred = '') => `${kind}://${cred}127.0.0.1:${port}` };
}

function roundTrip(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    socket.on('data', (c: Buffer) => (out += c.toString()));
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
    socket.resume();
    socket.end(text);
  });
}

describe('-p specs', () => {
  it('takes HOSTPORT:SANDBOXPORT on 127.0.0.1, an address, IPv6 in brackets, and /udp', () => {
    expect(parsePublish('8080:80')).toMatchObject({ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8080, sandboxPort: 80 });
    expect(parsePublish('0.0.0.0:8443:443/tcp')).toMatchObject({ proto: 'tcp', hostAddr: '0.0.0.0', hostPort: 8443, sandboxPort: 443 });
    expect(parsePublish('[::1]:8080:80')).toMatchObject({ proto: 'tcp', hostAddr: '::1', hostPort: 8080, sandboxPort: 80 });
    expect(parsePublish('5353:53/udp')).toMatchObject({ proto: 'udp', hostAddr: '127.0.0.1', hostPort: 5353, sandboxPort: 53 });
  });

  it('refuses bad specs with one sentence naming the form to use', () => {
    expect(usageError(() => parsePublish('8080')).message).toMatch(/^-p "8080" names one port only; give HOSTPORT:SANDBOXPORT or ADDR:HOSTPORT:SANDBOXPORT/);
    expect(usageError(() => parsePublish('localhost:8080:80')).message).toMatch(/write 127\.0\.0\.1/);
    expect(usageError(() => parsePublish('8080:0')).message).toMatch(/sandbox port 0, outside 1-65535/);
    expect(usageError(() => parsePublish('70000:80')).message).toMatch(/host port 70000/);
    expect(usageError(() => parsePublish('8080:80/sctp')).message).toMatch(/is not a port mapping/);
    expect(usageError(() => parsePublish('a:b')).message).toMatch(/is not a port mapping/);
    expect(usageError(() => parsePublishList(['8080:80', '127.0.0.1:8080:81'])).message).toMatch(/both listen on tcp port 8080 of 127\.0\.0\.1; give each host port once/);
    expect(parsePublishList(['8080:80', '8080:80/udp'])).toHaveLength(2);
  });

  it('turns the network to tap, and refuses them with --net none', () => {
    expect(resolveOptions({ publish: ['8080:80'] }).net).toBe('tap');
    expect(resolveOptions({ hostLoopback: [5432] }).net).toBe('tap');
    expect(usageError(() => resolveOptions({ net: 'none', upstreamProxy: 'http://127.0.0.1:3128' })).message).toMatch(/need --net tap, not --net none/);
  });
});

describe('--host-loopback and --upstream-proxy values', () => {
  it('parses comma-separated ports, /udp, and refuses anything else', () => {
    expect(parseHostLoopback(['5432,6379', '53/udp', 5432])).toEqual([
      { proto: 'tcp', port: 5432 },
      { proto: 'tcp', port: 6379 },
      { proto: 'udp', port: 53 },
    ]);
    expect(usageError(() => parseHostLoopback(['0'])).message).toMatch(/^--host-loopback "0" is not a port; give ports from 1 to 65535/);
    expect(usageError(() => parseHostLoopback(['80-90'])).message).toMatch(/is not a port/);
  });

  it('parses proxy URLs and masks the password in what it shows', () => {
    expect(parseProxyUrl('http://proxy.example:3128')).toMatchObject({ kind: 'http', host: 'proxy.example', port: 3128, username: undefined });
    expect(parseProxyUrl('http://proxy.example')).toMatchObject({ port: 80 });
    const s = parseProxyUrl('socks5://al%40ice:s3cret@[::1]:1080');
    expect(s).toMatchObject({ kind: 'socks5', host: '::1', port: 1080, username: 'al@ice', password: 's3cret' });
    expect(s.display).not.toContain('s3cret');
    expect(usageError(() => parseProxyUrl('socks5://127.0.0.1')).message).toMatch(/has no port/);
    expect(usageError(() => parseProxyUrl('https://127.0.0.1:3128')).message).toMatch(/scheme "https", which is not supported; give http:\/\/HOST:PORT/);
    expect(usageError(() => parseProxyUrl('127.0.0.1:3128')).message).toMatch(/--upstream-proxy "127\.0\.0\.1:3128"/);
  });
});

describe('dialing through an upstream proxy', () => {
  for (const kind of ['http', 'socks5'] as const) {
    it(`${kind}: tunnels to the destination, IPv4 and IPv6, with and without credentials`, async () => {
      const echo4 = await echoServer();
      const echo6 = await echoServer('::1');
      const open = await startProxy(kind);
      const sock = await dial('127.0.0.1', echo4.port, { proxy: parseProxyUrl(open.url()), timeoutMs: 5000 });
      expect(await roundTrip(sock, 'hello over the proxy')).toBe('hello over the proxy');
      const sock6 = await dial('::1', echo6.port, { proxy: parseProxyUrl(open.url()), timeoutMs: 5000 });
      expect(await roundTrip(sock6, 'six')).toBe('six');
      expect(open.requests).toMatchObject([
        { target: `127.0.0.1:${echo4.port}`, ok: true },
        { target: `[${kind === 'http' ? '::1' : '0:0:0:0:0:0:0:1'}]:${echo6.port}`, ok: true },
      ]);

      const guarded = await startProxy(kind, 'user:pa ss');
      const authed = await dial('127.0.0.1', echo4.port, { proxy: parseProxyUrl(guarded.url('user:pa%20ss@')), timeoutMs: 5000 });
      expect(await roundTrip(authed, 'with credentials')).toBe('with credentials');
      expect(guarded.requests).toMatchObject([{ auth: 'user:pa ss', ok: true }]);
      expect(echo4.connections()).toBe(2);
    });

    it(`${kind}: reports a refused destination as ECONNREFUSED and bad credentials as EPROXY`, async () => {
      const proxy = await startProxy(kind, 'user:right');
      const closed = await freePort();
      await expect(dial('127.0.0.1', closed, { proxy: parseProxyUrl(proxy.url('user:right@')), timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      await expect(dial('127.0.0.1', closed, { proxy: parseProxyUrl(proxy.url('user:wrong@')), timeoutMs: 5000 })).rejects.toMatchObject({ code: 'EPROXY' });
      const missing = dial('127.0.0.1', closed, { proxy: parseProxyUrl(proxy.url()), timeoutMs: 5000 });
      await expect(missing).rejects.toMatchObject({ code: 'EPROXY' });
      await expect(missing).rejects.toThrow(kind === 'http' ? /407 \(proxy authentication required: put USER:PASS@ in the URL\)/ : /wants authentication: put USER:PASS@ in the URL/);
    });
  }

  it('says so when the proxy itself cannot be reached', async () => {
    const proxy: ProxySpec = parseProxyUrl(`http://127.0.0.1:${await freePort()}`);
    await expect(dial('192.0.2.1', 80, { proxy, timeoutMs: 5000 })).rejects.toThrow(/cannot reach the upstream proxy http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  });

  it('keeps tunnelled bytes that arrive in the same read as the CONNECT answer', async () => {
    // A proxy that answers and sends the server's greeting in one write, then echoes.
    const server = net.createServer((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nVia: test\r\n\r\nSSH-2.0-greeting\r\n');
        s.pipe(s);
      });
    });
    const port = await listen(server);
    const sock = await dial('192.0.2.1', 22, { proxy: parseProxyUrl(`http://127.0.0.1:${port}`), timeoutMs: 5000 });
    expect(await roundTrip(sock, 'client bytes')).toBe('SSH-2.0-greeting\r\nclient bytes');
  });
});

/** A forwarder request that records how it was answered; accepted flows get an in-memory pipe. */
class FakeTcpRequest implements TcpForwarderRequest {
  rejected: Refusal | null = null;
  app: Duplex | null = null;
  readonly outcome: Promise<'accepted' | Refusal>;
  private settle!: (v: 'accepted' | Refusal) => void;

  constructor(readonly id: FlowId) {
    this.outcome = new Promise((r) => (this.settle = r));
  }

  accept(): TcpConn {
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
    }) as Duplex & { id: FlowId; reset(): void };
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
    conn.id = this.id;
    conn.reset = () => conn.destroy();
    this.app = app;
    this.settle('accepted');
    return conn;
  }

  reject(how: Refusal): void {
    this.rejected = how;
    this.settle(how);
  }
}

function flowTo(dstAddr: string, dstPort: number): FlowId {
  const v6 = dstAddr.includes(':');
  return { family: v6 ? 6 : 4, srcAddr: v6 ? 'fd00::100' : '10.0.2.100', srcPort: 40000 + Math.floor(Math.random() * 20000), dstAddr, dstPort };
}

function forwarderWith(rules: string, extra: { audit?: boolean; hostLoopback?: string[]; upstreamProxy?: string; loopbackIsRemote?: boolean } = {}) {
  const policy = Policy.fromAllowlists([parse(rules, 'test.allow')], { audit: extra.audit });
  const events = new EventEmitter();
  const flows: FlowEvent[] = [];
  events.on('flow', (e: FlowEvent) => flows.push(e));
  const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), extra.audit ?? false);
  const dns = new DnsProxy({ policy, upstream: { resolve: async () => null }, hostAddrs: new Set(), onEvent: (e) => auditor.dns(e) });
  const forwarder = createForwarder({
    policy,
    dns,
    auditor,
    sandbox: { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' },
    sniCheck: true,
    connectTimeoutMs: 3000,
    hostLoopback: parseHostLoopback(extra.hostLoopback ?? []),
    upstreamProxy: extra.upstreamProxy ? parseProxyUrl(extra.upstreamProxy) : undefined,
    refuseHostInternal: !extra.loopbackIsRemote,
  });
  cleanups.push(() => forwarder.close());
  return { forwarder, flows };
}

function readAll(s: Duplex): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('end', () => resolve(out));
  });
}

describe('forwarder routes to the host', () => {
  it('never opens loopback or unspecified destinations, whatever the rules or audit mode', async () => {
    const server = await echoServer();
    for (const opts of [{ audit: true }, { audit: false }]) {
      const { forwarder, flows } = forwarderWith('0.0.0.0/0\n::/0\n127.0.0.1\n', opts);
      for (const dst of ['127.0.0.1', '127.9.9.9', '0.0.0.0', '::1', '::', '::ffff:127.0.0.1']) {
        const req = new FakeTcpRequest(flowTo(dst, server.port));
        forwarder.tcp(req);
        expect(req.rejected).toBe('reset');
      }
      expect(flows.every((f) => f.verdict === 'deny' && /reach the host itself; open host loopback ports with --host-loopback PORT/.test(f.reason))).toBe(true);
      expect(flows).toHaveLength(6);
    }
    expect(server.connections()).toBe(0);
  });

  it('connects the gateway to the host loopback on listed ports only, and audits it', async () => {
    const server = await echoServer();
    const other = await echoServer();
    const { forwarder, flows } = forwarderWith('', { hostLoopback: [String(server.port)] });
    const req = new FakeTcpRequest(flowTo('10.0.2.2', server.port));
    forwarder.tcp(req);
    expect(await req.outcome).toBe('accepted');
    const reply = readAll(req.app!);
    req.app!.end('to the host');
    expect(await reply).toBe('to the host');

    const refused = new FakeTcpRequest(flowTo('10.0.2.2', other.port));
    forwarder.tcp(refused);
    expect(refused.rejected).toBe('reset');
    expect(other.connections()).toBe(0);
    expect(flows).toMatchObject([
      { verdict: 'allow', dst: '10.0.2.2', port: server.port, reason: 'host loopback port (--host-loopback)' },
      { verdict: 'deny', dst: '10.0.2.2', port: other.port },
    ]);
  });

  it('sends allowed flows through the upstream proxy, and denied ones nowhere', async () => {
    const server = await echoServer();
    for (const kind of ['http', 'socks5'] as const) {
      const proxy = await startProxy(kind);
      // 127.0.0.1 stands in for a remote destination here (as in forwarder.test.ts).
      const { forwarder, flows } = forwarderWith('127.0.0.1\n', { upstreamProxy: proxy.url(), loopbackIsRemote: true });
      const denied = new FakeTcpRequest(flowTo('127.0.0.2', server.port));
      forwarder.tcp(denied);
      expect(denied.rejected).toBe('reset');

      const allowed = new FakeTcpRequest(flowTo('127.0.0.1', server.port));
      forwarder.tcp(allowed);
      expect(await allowed.outcome).toBe('accepted');
      const reply = readAll(allowed.app!);
      allowed.app!.end(`through ${kind}`);
      expect(await reply).toBe(`through ${kind}`);
      expect(proxy.requests).toMatchObject([{ target: `127.0.0.1:${server.port}`, ok: true }]);
      expect(flows.map((f) => f.verdict)).toEqual(['deny', 'allow']);
    }
    expect(server.connections()).toBe(2);
  });
});
