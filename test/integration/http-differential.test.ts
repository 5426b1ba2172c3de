// The HTTP check against real servers: each attack stream goes through the framer the way the
// forwarder relays it (only the bytes it lets through reach the server, the server's answers are fed
// back to it, a refusal resets the connection) to Node's parser (strict and lenient), Python's
// http.server and nginx on loopback. Whatever a server then handled must be a request the framer
// checked: its host one the framer passed, and no more requests than the framer passed. Needs python3
// and nginx (Debian: nginx-light).
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpRequestFramer } from '../../src/egress/inspect/http.js';
import { HTTP_ATTACKS, mutatedHttp } from '../helpers/http-attacks.js';
import { startNginx, startNodeServer, startPythonServer, type LoggingServer, type SeenRequest } from '../helpers/http-servers.js';

/** The framer's side of one relayed connection. */
interface Relayed {
  what: string;
  server: LoggingServer;
  /** The connection's local port: the servers log it with each request. */
  port: number;
  passed: string[];
  refused: string | null;
}

/** Relays `stream` to `server` through a framer, like src/egress/forwarder/tcp.ts; resolves once the connection closed. */
function relay(what: string, stream: Buffer, server: LoggingServer, sniffing: boolean): Promise<Relayed> {
  const passed: string[] = [];
  const framer = new HttpRequestFramer((host) => (host === 'good.example' ? (passed.push(host), null) : `${host} is not allowed`), 32 * 1024, { sniffing });
  const result: Relayed = { what, server, port: 0, passed, refused: null };
  return new Promise((resolve) => {
    const socket = net.connect(server.port, '127.0.0.1');
    // Bounds a server that neither answers nor closes; no assertion depends on it.
    const guard = setTimeout(() => socket.destroy(), 5000);
    let ended = false;
    const forward = (refused: string | null) => {
      for (const bytes of framer.drain()) socket.write(bytes);
      if (refused !== null) {
        result.refused = refused;
        socket.resetAndDestroy();
      } else if (!ended && !framer.waitingForServer) {
        ended = true;
        socket.end();
      }
    };
    socket.on('connect', () => {
      result.port = socket.localPort!;
      forward(framer.push(stream));
    });
    socket.on('data', (c: Buffer) => {
      if (!framer.done && result.refused === null) forward(framer.pushResponse(c));
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(guard);
      resolve(result);
    });
  });
}

/** One request and its answer on a fresh connection, so that the requests of connections that were reset have been logged. */
async function sync(server: LoggingServer): Promise<void> {
  await new Promise<void>((resolve) => {
    const s = net.connect(server.port, '127.0.0.1', () => s.end('GET /sync HTTP/1.1\r\nHost: sync.test\r\nConnection: close\r\n\r\n'));
    s.on('data', () => {});
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}

function hostName(host: string | null): string | null {
  if (host === null) return null;
  const m = /^\[([^\]]+)\](?::\d*)?$/.exec(host) ?? /^([^:]*)(?::\d*)?$/.exec(host);
  return m ? m[1].toLowerCase().replace(/\.$/, '') : host;
}

/**
 * What the servers handled that the framer did not pass, by connection: none may be. Requests are
 * matched to relayed connections by the client port the servers logged (connections that reused a
 * port are taken together).
 */
async function unchecked(relays: Relayed[], since: Map<LoggingServer, number>): Promise<string[]> {
  const problems: string[] = [];
  for (const server of new Set(relays.map((r) => r.server))) {
    await sync(server);
    const seen = server.seen().slice(since.get(server) ?? 0);
    const byPort = new Map<number, Relayed[]>();
    for (const r of relays.filter((x) => x.server === server)) byPort.set(r.port, [...(byPort.get(r.port) ?? []), r]);
    for (const [port, group] of byPort) {
      const what = group.map((r) => r.what).join(' | ');
      const passed = group.flatMap((r) => r.passed);
      const mine = seen.filter((s) => s.port === port);
      for (const s of mine.filter((s) => hostName(s.host) === null || !passed.includes(hostName(s.host)!))) problems.push(`${what} → ${server.name}: ${s.method} ${JSON.stringify(s.target)} Host ${s.host}`);
      if (mine.length > passed.length) problems.push(`${what} → ${server.name}: ${mine.length} requests handled, ${passed.length} checked`);
    }
  }
  return problems;
}

describe('HTTP check against real servers (differential)', () => {
  const servers: LoggingServer[] = [];

  beforeAll(async () => {
    servers.push(await startNodeServer(false), await startNodeServer(true), await startPythonServer(), await startNginx());
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  for (const sniffing of [false, true]) {
    it(`no server handles a request the framer did not check${sniffing ? ' (first bytes sniffed, as on a NAME:PORT rule)' : ''}`, async () => {
      const since = new Map(servers.map((x) => [x, x.seen().length]));
      const relays: Relayed[] = [];
      for (const [what, text] of HTTP_ATTACKS) for (const server of servers) relays.push(await relay(what, Buffer.from(text, 'latin1'), server, sniffing));
      const outcomes = relays.map((r) => `${r.what} → ${r.server.name}: ${r.refused ?? 'passed'}`);
      if (process.env.TAPBOX_DIFF_VERBOSE) console.log(outcomes.join('\n'));
      expect(await unchecked(relays, since), outcomes.join('\n')).toEqual([]);
    });
  }

  it('fuzz: the attacks mutated with bytes servers read leniently make no server handle an unchecked request', async () => {
    const since = new Map(servers.map((x) => [x, x.seen().length]));
    const relays: Relayed[] = [];
    await fc.assert(
      fc.asyncProperty(mutatedHttp, fc.boolean(), async (stream, sniffing) => {
        for (const server of servers) relays.push(await relay(JSON.stringify(stream.toString('latin1')) + (sniffing ? ' (sniffed)' : ''), stream, server, sniffing));
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300), seed: 11 },
    );
    expect(await unchecked(relays, since)).toEqual([]);
  });

  it('the baseline reaches every server, and the servers see the attacks (the corpus tests something)', async () => {
    for (const server of servers) {
      const before = server.seen().length;
      await relay('baseline', Buffer.from(HTTP_ATTACKS[0][1], 'latin1'), server, false);
      expect(server.seen().slice(before).map((s) => hostName(s.host)), server.name).toEqual(['good.example', 'good.example']);
    }
    // Without the framer, Python reads a GET body as the next request, and after an Upgrade it ignores
    // nginx and Python read the next one (Node closes a connection it can't upgrade).
    const raw = async (server: LoggingServer, text: string) => {
      const before = server.seen().length;
      await new Promise<void>((resolve) => {
        const s = net.connect(server.port, '127.0.0.1', () => s.end(Buffer.from(text, 'latin1')));
        s.on('data', () => {});
        s.on('error', () => {});
        s.on('close', () => resolve());
      });
      return server.seen().slice(before).map((s) => hostName(s.host));
    };
    const python = servers.find((s) => s.name.startsWith('python'))!;
    expect(await raw(python, HTTP_ATTACKS.find(([w]) => w.startsWith('GET with a Content-Length'))![1])).toContain('evil.example');
    for (const server of servers.filter((s) => !s.name.startsWith('node'))) expect(await raw(server, HTTP_ATTACKS.find(([w]) => w === 'Upgrade: foo, then a request')![1]), server.name).toContain('evil.example');
  });
});
