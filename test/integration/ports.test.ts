// Inbound ports and host services with a real sandbox: -p publishes a sandbox server on the host's
// loopback (TCP both ways, UDP, IPv6), --host-loopback opens listed host loopback ports at the gateway
// address and no others, --upstream-proxy sends allowed flows through an HTTP CONNECT or SOCKS5 proxy
// on a test host (and denied ones nowhere). tapbox runs as the unprivileged test user throughout.
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, tapbox, userTempDir, type RunResult } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');
const node = process.execPath;

async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Retries `attempt` until it resolves (the sandbox's server may not listen yet), or `run` ends. */
async function untilServed<T>(run: Promise<RunResult>, attempt: () => Promise<T>): Promise<T> {
  let finished = false;
  void run.then(() => (finished = true));
  for (;;) {
    try {
      return await attempt();
    } catch (e) {
      if (finished) {
        const r = await run;
        throw new Error(`tapbox ended (${r.code}) before it served: ${r.stdout} ${r.stderr}`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** POSTs `body` to 127.0.0.1-or-[::1]:port and resolves with the response body. */
function post(host: string, port: number, body: Buffer, path = '/echo'): Promise<{ from: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method: 'POST', path, headers: { 'content-length': body.length }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ from: String(res.headers['x-from']), body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// The sandbox's HTTP server: echoes request bodies, says who connected, exits on /quit.
const echoServer = (port: number) => `
const http = require('http');
const s = http.createServer((q, r) => {
  const chunks = [];
  q.on('data', (c) => chunks.push(c));
  q.on('end', () => {
    r.setHeader('x-from', q.socket.remoteAddress);
    r.end(Buffer.concat(chunks), () => q.url === '/quit' && s.close());
  });
});
s.listen(${port}, '::');
`;

describe('ports published with -p', () => {
  it('refuses a bad spec with one sentence and exit status 2', async () => {
    const r = await tapbox(['-p', '8080', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('tapbox: -p "8080" names one port only; give HOSTPORT:SANDBOXPORT or ADDR:HOSTPORT:SANDBOXPORT, with /udp for UDP, e.g. -p 8080:80 or -p 127.0.0.1:5353:53/udp.\n');
  });

  it('refuses a host port that is already taken before the sandbox starts', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const r = await tapbox(['-p', `${port}:80`, '--', 'sh', '-c', 'echo ran']);
      expect(r.code).toBe(2);
      expect(r.stdout, r.stderr).toBe('');
      expect(r.stderr).toContain(`tapbox: cannot publish -p "${port}:80": tcp 127.0.0.1:${port} is already in use on the host; pick another host port.`);
    } finally {
      taken.close();
    }
  });

  it('carries host connections on 127.0.0.1 and [::1] into a sandbox server, 2 MB each way byte-identical', async () => {
    const [p4, p6] = [await freePort(), await freePort('::1')];
    const run = tapbox(['--no-summary', '-p', `${p4}:8000`, '-p', `[::1]:${p6}:8000`, '--', node, '-e', echoServer(8000)], { timeoutMs: 60_000 });
    const body = Buffer.alloc(2 << 20);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
    // Until the server in the sandbox listens, connections are reset: retry only for that.
    await untilServed(run, () => post('127.0.0.1', p4, Buffer.from('ready?'), '/ready'));
    const four = await post('127.0.0.1', p4, body);
    const six = await post('::1', p6, body);
    await post('127.0.0.1', p4, Buffer.alloc(0), '/quit');
    const r = await run;
    expect(r.code).toBe(0);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(four.body.length).toBe(body.length);
    expect(sha(four.body)).toBe(sha(body));
    expect(sha(six.body)).toBe(sha(body));
    // The sandbox sees connections from the gateway address.
    expect(four.from).toBe('::ffff:10.0.2.2');
    expect(six.from).toBe('fd00::2');
  });

  it('resets a host connection when nothing listens on the sandbox port', async () => {
    const port = await freePort();
    const run = tapbox(['--no-summary', '-p', `${port}:9`, '--', 'sleep', '5']);
    const error = await untilServed(
      run,
      () =>
        new Promise<string>((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1');
          s.on('data', () => resolve('data'));
          s.on('end', () => resolve('end'));
          s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNREFUSED' ? reject(e) : resolve(e.code ?? e.message)));
        }),
    );
    expect(error).toBe('ECONNRESET');
    expect((await run).code).toBe(0);
  });

  it('relays UDP datagrams both ways (-p .../udp)', async () => {
    const port = await freePort();
    const server = `
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(Buffer.from('echo ' + m + ' from ' + r.address), r.port, r.address, () => s.close()));
s.bind(5353);`;
    const scratch = userTempDir();
    const report = join(scratch.dir, 'report.json');
    const run = tapbox(['--no-summary', '--report', report, '-p', `${port}:5353/udp`, '--', node, '-e', server]);
    const client = dgram.createSocket('udp4');
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        // Datagrams sent before the sandbox's socket is bound are lost, as UDP may lose them: resend.
        const timer = setInterval(() => client.send('ping', port, '127.0.0.1'), 200);
        client.on('message', (m) => {
          clearInterval(timer);
          resolve(m.toString());
        });
        void run.then((r) => {
          clearInterval(timer);
          reject(new Error(`tapbox ended first: ${r.stderr}`));
        });
      });
      expect(reply).toBe('echo ping from 10.0.2.2');
      expect((await run).code).toBe(0);
      // The client's session is an inbound flow (datagrams sent before the sandbox's socket was bound
      // went into the same session).
      const { destinations } = JSON.parse(readFileSync(report, 'utf8')) as { destinations: Record<string, unknown>[] };
      expect(destinations).toEqual([expect.objectContaining({ destination: '10.0.2.100:5353', verdict: 'inbound', connections: 1, bytesUp: reply.length })]);
    } finally {
      client.close();
      scratch.cleanup();
    }
  });
});

describe('published connections as flows', () => {
  // The sandbox's TCP echo server: echoes lines; "quit" ends the command.
  const lineEcho = (port: number) => `
require('net').createServer((s) => s.on('data', (d) => (String(d).startsWith('quit') ? process.exit(0) : s.write(d)))).listen(${port}, '::');
`;
  /** A connection to the published port that echoed one line, kept open. */
  const openEcho = (port: number) =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('hi\n'));
      s.once('data', () => resolve(s));
      s.on('error', reject);
      s.on('close', () => reject(new Error('closed before echoing')));
    });

  it('counts them in the report and the audit log as inbound flows of the sandbox port', async () => {
    const port = await freePort();
    const scratch = userTempDir();
    try {
      const report = join(scratch.dir, 'report.json');
      const run = tapbox(['--no-summary', '--report', report, '--log-format', 'json', '--log-level', 'debug', '-p', `${port}:8000`, '--', node, '-e', echoServer(8000)]);
      await untilServed(run, () => post('127.0.0.1', port, Buffer.from('ready?'), '/ready'));
      const body = Buffer.alloc(100_000, 7);
      expect((await post('127.0.0.1', port, body)).body.length).toBe(body.length);
      await post('127.0.0.1', port, Buffer.alloc(0), '/quit');
      const r = await run;
      expect(r.code, r.stderr).toBe(0);
      const { destinations, totals } = JSON.parse(readFileSync(report, 'utf8')) as { destinations: Record<string, unknown>[]; totals: Record<string, number> };
      // Connections tried before the server listened were reset, and count too: at least the three served.
      expect(destinations).toEqual([expect.objectContaining({ destination: '10.0.2.100:8000', verdict: 'inbound', denied: 0, lookups: 0 })]);
      const d = destinations[0] as { connections: number; bytesUp: number; bytesDown: number };
      expect(d.connections).toBeGreaterThanOrEqual(3);
      expect(d.bytesDown).toBeGreaterThan(body.length); // into the sandbox
      expect(d.bytesUp).toBeGreaterThan(body.length); // what it sent back
      expect(totals.connections).toBe(d.connections);
      const log = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const flows = log.filter((l) => l.event === 'flow');
      expect(flows.length).toBe(d.connections);
      for (const f of flows) expect(f).toMatchObject({ direction: 'inbound', verdict: 'allow', proto: 'tcp', src: '127.0.0.1', dst: '10.0.2.100', port: 8000 });
      expect(log.filter((l) => l.event === 'flowEnd' && l.direction === 'inbound').length).toBe(d.connections);
    } finally {
      scratch.cleanup();
    }
  });

  it('holds them to --max-flows: a second connection while one is open is reset, with a flows limit event', async () => {
    const port = await freePort();
    const run = tapbox(['--no-summary', '--log-format', 'json', '--max-flows', '1', '-p', `${port}:8000`, '--', node, '-e', lineEcho(8000)]);
    const held = await untilServed(run, () => openEcho(port));
    const second = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('data', () => resolve('data'));
      s.on('end', () => resolve('end'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(second).toBe('ECONNRESET');
    held.write('quit\n');
    const r = await run;
    held.destroy();
    expect(r.code, r.stderr).toBe(0);
    const log = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(log.filter((l) => l.event === 'limit').map((l) => [l.limit, l.value, l.count])).toEqual([['flows', 1, 1]]);
    expect(log.filter((l) => l.event === 'flow' && l.verdict === 'deny')).toEqual([
      expect.objectContaining({ direction: 'inbound', dst: '10.0.2.100', port: 8000, reason: 'already 1 flows open (the connection limit)' }),
    ]);
  });
});

describe('--host-loopback', () => {
  const servers: http.Server[] = [];
  let open = 0;
  let closed = 0;
  const hits: string[] = [];
  beforeAll(async () => {
    open = await freePort();
    closed = await freePort();
    for (const [port, host] of [[open, '127.0.0.1'], [open, '::1'], [closed, '127.0.0.1']] as const) {
      const s = http.createServer((q, r) => {
        hits.push(`${host} ${port}`);
        r.end(`host service on ${host}\n`);
      });
      await new Promise<void>((r) => s.listen(port, host, r));
      servers.push(s);
    }
  });
  afterAll(() => servers.forEach((s) => s.close()));

  it('reaches a listed host loopback port through 10.0.2.2 and fd00::2, audited; another port is refused', async () => {
    hits.length = 0;
    const r = await tapbox(
      ['--no-summary', '--log-format', 'json', '--log-level', 'debug', '--host-loopback', String(open), '--', 'sh', '-c',
        `curl -sS -m 10 http://10.0.2.2:${open}/ && curl -sS -m 10 "http://[fd00::2]:${open}/" && ${node} ${probe} tcp-connect 10.0.2.2 ${closed}`],
    );
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.slice(0, 2)).toEqual(['host service on 127.0.0.1', 'host service on ::1']);
    expect(JSON.parse(lines[2]!)).toMatchObject({ error: 'ECONNREFUSED' });
    expect(hits).toEqual([`127.0.0.1 ${open}`, `::1 ${open}`]);
    const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { event?: string; verdict?: string; dst?: string; port?: number; reason?: string });
    expect(events.filter((e) => e.event === 'flow').map((e) => [e.verdict, e.dst, e.port])).toEqual([
      ['allow', '10.0.2.2', open],
      ['allow', 'fd00::2', open],
      ['deny', '10.0.2.2', closed],
    ]);
  });

  it('relays UDP to a listed host loopback port (PORT/udp); the same port over TCP stays closed', async () => {
    const echo = dgram.createSocket('udp4');
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    const port = echo.address().port;
    const seen: string[] = [];
    echo.on('message', (m, rinfo) => {
      seen.push(m.toString());
      echo.send(m, rinfo.port, rinfo.address);
    });
    try {
      const r = await tapbox(['--no-summary', '--host-loopback', `${port}/udp`, '--', 'sh', '-c',
        `${node} ${probe} udp-echo 10.0.2.2 ${port} && ${node} ${probe} tcp-connect 10.0.2.2 ${port}`]);
      const [udp, tcp] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok?: boolean; error?: string });
      expect(udp).toMatchObject({ ok: true });
      expect(tcp).toMatchObject({ error: 'ECONNREFUSED' });
      expect(seen).toEqual(['ping over udp']);
    } finally {
      echo.close();
    }
  });

  it('is off by default: the gateway refuses at once, even with a rule for every address', async () => {
    hits.length = 0;
    const r = await tapbox(['--no-summary', '--allow', '0.0.0.0/0', '--allow', '::/0', '--', node, probe, 'tcp-connect', '10.0.2.2', String(open)]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: 'ECONNREFUSED' });
    expect(hits).toEqual([]);
  });
});

describe.runIf(canMakeTestHost)('--upstream-proxy to a proxy on a test host', () => {
  let host: TestHost;
  const requests: { proxy: string; target: string; ok: boolean }[] = [];
  const allowTestHost = ['--no-summary', '--allow', '198.18.0.0/15'];
  let scratch: { dir: string; cleanup: () => void };
  beforeAll(async () => {
    scratch = userTempDir();
    host = new TestHost();
    await host.start('proxy.mjs', ['--http-connect', '3128', '--socks5', '1080', '--whoami', '8081'], (line) => requests.push(JSON.parse(line)));
    const zoneFile = join(scratch.dir, 'zone.json');
    writeFileSync(zoneFile, JSON.stringify({ 'app.tapbox.test': { A: [host.ip4] } }));
    await host.start('services.mjs', ['--dns', '53', zoneFile]);
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  it('without a proxy, the destination sees the host (the baseline)', async () => {
    const r = await tapbox([...allowTestHost, '--', 'curl', '-sS', '-m', '10', `http://${host.ip4}:8081/`]);
    expect(r.stdout, r.stderr).toBe(`you are ${host.hostIp4}\n`);
  });

  for (const [kind, url] of [['HTTP CONNECT', 'http://IP:3128'], ['SOCKS5', 'socks5://IP:1080']] as const) {
    it(`${kind}: the destination sees the connection come from the proxy; a denied destination is not proxied`, async () => {
      requests.length = 0;
      const proxy = url.replace('IP', host.ip4);
      const r = await tapbox([...allowTestHost, '--upstream-proxy', proxy, '--', 'sh', '-c',
        `curl -sS -m 10 http://${host.ip4}:8081/ && ${node} ${probe} tcp-connect 198.51.100.1 80`]);
      expect(r.code, r.stderr).toBe(0);
      const [answer, denied] = r.stdout.trim().split('\n');
      // The proxy runs on the test host and connects to its own address: the source is the test host.
      expect(answer).toBe(`you are ${host.ip4}`);
      expect(JSON.parse(denied!)).toMatchObject({ error: 'ECONNREFUSED' });
      expect(requests).toMatchObject([{ proxy: kind === 'SOCKS5' ? 'socks5' : 'http', target: `${host.ip4}:8081`, ok: true }]);
    });
  }

  it('still checks the HTTP Host of a flow allowed by name before any of its bytes go through the proxy', async () => {
    requests.length = 0;
    const r = await tapbox(['--no-summary', '--dns-upstream', host.ip4, '--allow', 'app.tapbox.test', '--upstream-proxy', `http://${host.ip4}:3128`, '--', 'sh', '-c',
      `curl -sS -m 10 http://app.tapbox.test:8081/; echo "rc=$?"; curl -sS -m 10 -H 'Host: other.tapbox.test' http://app.tapbox.test:8081/; echo "rc=$?"`]);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(`you are ${host.ip4}`);
    expect(lines[1]).toBe('rc=0');
    expect(lines[2]).toMatch(/^rc=(52|56)$/); // the connection is reset once the Host is read
    // Like a direct socket, the tunnel to the pinned address is opened before the check (a closed port
    // is then refused as such); the refused request never goes through it.
    expect(requests).toMatchObject([
      { proxy: 'http', target: `${host.ip4}:8081`, ok: true },
      { proxy: 'http', target: `${host.ip4}:8081`, ok: true },
    ]);
  });

  it('refuses the sandbox\'s connection when the proxy cannot reach the destination', async () => {
    requests.length = 0;
    const r = await tapbox([...allowTestHost, '--upstream-proxy', `http://${host.ip4}:3128`, '--', node, probe, 'tcp-connect', host.ip4, '1']);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: 'ECONNREFUSED' });
    expect(requests).toMatchObject([{ target: `${host.ip4}:1`, ok: false }]);
  });
});
