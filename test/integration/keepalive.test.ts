// TCP keepalive on the host sockets of relayed flows: a peer that vanishes without a FIN or RST must
// not leave the sandbox's side waiting forever. The peer is a test host (a network namespace) that is
// then black-holed (its link goes down: nothing comes back, not even an ICMP error); with the
// keepalive idle time set to 1 s (60 s by default) the kernel's probes (10, 1 s apart: libuv's) go
// unanswered, the host socket fails (ETIMEDOUT), and the sandbox's side is reset. Three roads: a
// direct dial, a dial through --upstream-proxy (the socket to the proxy), a published port's client.
// The sandbox's side is an in-memory stream pair standing in for the stack's connection.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { TcpProtocol, UdpProtocol } from '../../netstack/index.js';
import type { FlowEndEvent } from '../../src/egress/audit/events.js';
import { parseProxyUrl } from '../../src/egress/forwarder/dialer.js';
import { parsePublish, Publisher } from '../../src/egress/publish.js';
import { fakeEgress, FakeTcpRequest, streamPair, type SandboxConn } from '../helpers/forwarder-fakes.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const KEEPALIVE_MS = 1000;
/** Idle 1 s + 10 probes 1 s apart, with room to spare; a socket without keepalive would wait for hours. */
const DETECTED_WITHIN_MS = 40_000;
/**
 * How the host socket fails: ETIMEDOUT when the probes go unanswered, or EHOSTUNREACH when the test
 * host's address also stopped answering ARP meanwhile (the kernel reports the soft error it saw).
 */
const GAVE_UP = /^host (ETIMEDOUT|EHOSTUNREACH)$/;

function forwarderWith(opts: { upstreamProxy?: string }) {
  const { forwarder, events, ends } = fakeEgress('198.18.0.0/15\n', { sniCheck: false, keepAliveMs: KEEPALIVE_MS, upstreamProxy: opts.upstreamProxy ? parseProxyUrl(opts.upstreamProxy) : undefined });
  const ended = new Promise<FlowEndEvent>((resolve) => events.on('flowEnd', resolve));
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

describe.runIf(canMakeTestHost)('keepalive on relayed host sockets, against a test host that vanishes', () => {
  it.concurrent(
    'a direct flow: the sandbox side is reset once the destination stops answering',
    async () => {
      const host = new TestHost();
      hosts.push(host);
      await host.start('services.mjs', ['--tcp-echo', '7']);
      const { forwarder, ended } = forwarderWith({});
      const req = new FakeTcpRequest({ family: 4, srcAddr: '10.0.2.100', srcPort: 40001, dstAddr: host.ip4, dstPort: 7 });
      forwarder.tcp(req);
      const app = await req.accepted();
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
      const req = new FakeTcpRequest({ family: 4, srcAddr: '10.0.2.100', srcPort: 40002, dstAddr: host.ip4, dstPort: 7 });
      forwarder.tcp(req);
      const app = await req.accepted();
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
      const target = { gateway4: '10.0.2.2', gateway6: 'fd00::2', sandbox4: '10.0.2.100', sandbox6: 'fd00::100' };
      const tcp = {
        connect: async (family: 4 | 6, src: string, dst: string, port: number) => {
          const { app, conn } = streamPair({ family, srcAddr: src, srcPort: 50000, dstAddr: dst, dstPort: port });
          accepted(conn, app);
          return conn;
        },
      } as unknown as TcpProtocol;
      const probe = net.createServer();
      await new Promise<void>((r) => probe.listen(0, host.hostIp4, r));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise((r) => probe.close(r));
      const publisher = await Publisher.start([parsePublish(`${host.hostIp4}:${port}:8000`)], target, pino({ level: 'silent' }), { flows: forwarder.inbound, keepAliveMs: KEEPALIVE_MS });
      publisher.attach({ tcp, udp: {} as UdpProtocol }); // a TCP port: UDP is never asked
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
