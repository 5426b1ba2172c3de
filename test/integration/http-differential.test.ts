// The HTTP check against real servers: each attack stream goes through the framer the way the
// forwarder relays it (only the bytes it lets through reach the server, the server's answers are fed
// back to it, a refusal resets the connection) to Node's parser (strict and lenient), Python's
// http.server and nginx on loopback. Whatever a server then handled must be a request the framer
// checked: its host one the framer passed, and no more requests than the framer passed. Needs python3
// and nginx (Debian: nginx-light).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpRequestFramer } from '../../src/inspect/http.js';
import { HTTP_ATTACKS } from '../helpers/http-attacks.js';
import { startNginx, startNodeServer, startPythonServer, type LoggingServer, type SeenRequest } from '../helpers/http-servers.js';

/** The framer's side of one relayed connection. */
interface Relayed {
  passed: string[];
  refused: string | null;
}

/** Relays `stream` to the server on `port` through a framer, like src/forwarder/tcp.ts; resolves once the server closed. */
function relay(stream: Buffer, port: number, sniffing: boolean): Promise<Relayed> {
  const passed: string[] = [];
  const framer = new HttpRequestFramer((host) => (host === 'good.example' ? (passed.push(host), null) : `${host} is not allowed`), 32 * 1024, { sniffing });
  const result: Relayed = { passed, refused: null };
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
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
    socket.on('connect', () => forward(framer.push(stream)));
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

function hostName(host: string | null): string | null {
  if (host === null) return null;
  const m = /^\[([^\]]+)\](?::\d*)?$/.exec(host) ?? /^([^:]*)(?::\d*)?$/.exec(host);
  return m ? m[1].toLowerCase().replace(/\.$/, '') : host;
}

/** What the server handled that the framer did not pass: none may be. */
function unchecked(seen: SeenRequest[], r: Relayed): string[] {
  const problems = seen.filter((s) => hostName(s.host) === null || !r.passed.includes(hostName(s.host)!)).map((s) => `${s.method} ${JSON.stringify(s.target)} Host ${s.host}`);
  if (seen.length > r.passed.length) problems.push(`${seen.length} requests handled, ${r.passed.length} checked`);
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
      const failures: string[] = [];
      const outcomes: string[] = [];
      for (const [what, text] of HTTP_ATTACKS) {
        const stream = Buffer.from(text, 'latin1');
        for (const server of servers) {
          const before = server.seen().length;
          const r = await relay(stream, server.port, sniffing);
          const seen = server.seen().slice(before);
          for (const p of unchecked(seen, r)) failures.push(`${what} → ${server.name}: ${p}`);
          outcomes.push(`${what} → ${server.name}: ${r.refused ?? 'passed'}; handled ${seen.length}`);
        }
      }
      if (process.env.TAPBOX_DIFF_VERBOSE) console.log(outcomes.join('\n'));
      expect(failures, outcomes.join('\n')).toEqual([]);
    });
  }

  it('the baseline reaches every server, and the servers see the attacks (the corpus tests something)', async () => {
    for (const server of servers) {
      const before = server.seen().length;
      await relay(Buffer.from(HTTP_ATTACKS[0][1], 'latin1'), server.port, false);
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
