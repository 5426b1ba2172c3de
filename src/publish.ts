// Published ports (`-p [ADDR:]HOSTPORT:SANDBOXPORT[/udp]`): the supervisor listens on the host
// (127.0.0.1 unless ADDR says otherwise) and carries each connection into the sandbox through our own
// stack. The sandbox has no other way in: nothing on the host can reach tap0 but the supervisor.
//
//   TCP: a host connection is accepted paused; the stack dials the sandbox from the gateway address
//        (TcpProtocol.connect: 10.0.2.2 → 10.0.2.100:SANDBOXPORT, fd00::2 → fd00::100 when ADDR is
//        IPv6). Connected → bytes relayed both ways with backpressure (pipe), FINs kept as
//        half-closes, a reset on either side resets the other. Refused (nothing listens in the
//        sandbox yet) or unanswered → the host connection is reset, so the client sees ECONNRESET.
//   UDP: one host socket; each host client (address, port) gets its own session into the sandbox
//        (UdpProtocol.open, from the gateway and an ephemeral port), whose replies go back to that
//        client. A session ends when idle, like any UDP session of the stack.
//
// Listeners are bound before the sandbox starts, so a busy port stops the run with one sentence.
// Connections that arrive before the stack runs are reset.
import dgram from 'node:dgram';
import net from 'node:net';
import type pino from 'pino';
import type { Family, TcpConn, UdpConn } from '../netstack/stack/forwarding.js';
import type { TcpProtocol } from '../netstack/transport/tcp/index.js';
import type { UdpProtocol } from '../netstack/transport/udp/index.js';
import { TapboxError } from './errors.js';

export interface PublishSpec {
  proto: 'tcp' | 'udp';
  /** Where the supervisor listens on the host. */
  hostAddr: string;
  hostPort: number;
  sandboxPort: number;
  /** The spec as given, for messages. */
  text: string;
}

const SPEC = /^(?:(\[[^\]]*\]|[^:[\]]+):)?(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/i;

/** Parses one `-p` value; throws TapboxError EUSAGE with the fix on a bad one. */
export function parsePublish(text: string): PublishSpec {
  const bad = (why: string): never => {
    throw new TapboxError('EUSAGE', `-p "${text}" ${why}; give HOSTPORT:SANDBOXPORT or ADDR:HOSTPORT:SANDBOXPORT, with /udp for UDP, e.g. -p 8080:80 or -p 127.0.0.1:5353:53/udp.`);
  };
  const m = SPEC.exec(text.trim());
  if (!m) return bad(/^\d+(\/(tcp|udp))?$/i.test(text.trim()) ? 'names one port only' : 'is not a port mapping');
  const addrText = m[1] === undefined ? '127.0.0.1' : m[1].replace(/^\[|\]$/g, '');
  if (net.isIP(addrText) === 0) bad(`has "${addrText}" where an IP address of the host belongs (a name such as localhost is not taken: write 127.0.0.1 or [::1])`);
  if (m[1] !== undefined && net.isIP(addrText) === 6 && !m[1].startsWith('[')) bad('has an IPv6 address without brackets');
  const hostPort = Number(m[2]);
  const sandboxPort = Number(m[3]);
  for (const [what, port] of [['host port', hostPort], ['sandbox port', sandboxPort]] as const) {
    if (port < 1 || port > 65535) bad(`has the ${what} ${port}, outside 1-65535`);
  }
  return { proto: (m[4]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp', hostAddr: addrText, hostPort, sandboxPort, text };
}

/** Parses every `-p` value; the same host address, port and protocol twice is an error. */
export function parsePublishList(texts: readonly string[]): PublishSpec[] {
  const specs = texts.map(parsePublish);
  const seen = new Map<string, string>();
  for (const s of specs) {
    const key = `${s.proto} ${s.hostAddr} ${s.hostPort}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) throw new TapboxError('EUSAGE', `-p "${s.text}" and -p "${earlier}" both listen on ${s.proto} port ${s.hostPort} of ${s.hostAddr}; give each host port once.`);
    seen.set(key, s.text);
  }
  return specs;
}

/** Where published connections go: the stack's transports (null before it runs), and the link's addresses. */
export interface PublishTarget {
  readonly tcp: TcpProtocol | null;
  readonly udp: UdpProtocol | null;
  /** Our address on the link (the gateway) and the sandbox's, per family, without prefix length. */
  gateway4: string;
  gateway6: string;
  sandbox4: string;
  sandbox6: string;
}

export class Publisher {
  private readonly closers = new Set<() => void>();

  private constructor(private readonly logger: pino.Logger) {}

  /** Binds every listener; throws TapboxError EUSAGE when one cannot be bound. */
  static async start(specs: readonly PublishSpec[], target: PublishTarget, logger: pino.Logger): Promise<Publisher> {
    const p = new Publisher(logger);
    try {
      for (const spec of specs) {
        await (spec.proto === 'tcp' ? p.listenTcp(spec, target) : p.listenUdp(spec, target));
        logger.info({ event: 'publish', ...spec }, `published ${spec.proto} ${hostPort(spec)} → sandbox port ${spec.sandboxPort}`);
      }
    } catch (e) {
      p.close();
      throw e;
    }
    return p;
  }

  /** Stops listening and ends every published connection and session. */
  close(): void {
    for (const close of [...this.closers]) close();
    this.closers.clear();
  }

  private listenTcp(spec: PublishSpec, target: PublishTarget): Promise<void> {
    const family: Family = net.isIP(spec.hostAddr) === 6 ? 6 : 4;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => this.acceptTcp(spec, target, family, client));
    const stop = () => server.close();
    this.closers.add(stop);
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        this.closers.delete(stop);
        reject(bindError(spec, err));
      });
      server.listen({ host: spec.hostAddr, port: spec.hostPort, ipv6Only: family === 6 }, () => resolve());
    });
  }

  private acceptTcp(spec: PublishSpec, target: PublishTarget, family: Family, client: net.Socket): void {
    client.on('error', () => {}); // reported through 'close'
    const tcp = target.tcp;
    const from = `${client.remoteAddress}:${client.remotePort}`;
    if (!tcp) {
      client.resetAndDestroy();
      return;
    }
    const abort = () => client.resetAndDestroy();
    this.closers.add(abort);
    const gateway = family === 4 ? target.gateway4 : target.gateway6;
    const sandbox = family === 4 ? target.sandbox4 : target.sandbox6;
    tcp.connect(family, gateway, sandbox, spec.sandboxPort).then(
      (conn) => {
        this.closers.delete(abort);
        if (client.destroyed) return conn.reset();
        this.relayTcp(spec, from, client, conn);
      },
      (err: NodeJS.ErrnoException) => {
        this.closers.delete(abort);
        this.logger.debug({ event: 'inbound', proto: 'tcp', from, port: spec.sandboxPort, error: err.code }, `inbound tcp from ${from} to sandbox port ${spec.sandboxPort}: ${err.code ?? err.message}`);
        client.resetAndDestroy();
      },
    );
  }

  /** The same relay as the forwarder's (forwarder/tcp.ts), the other way round. */
  private relayTcp(spec: PublishSpec, from: string, client: net.Socket, conn: TcpConn): void {
    let up = 0;
    let down = 0;
    let open = 2;
    const closeBoth = () => {
      conn.destroy();
      client.destroy();
    };
    this.closers.add(closeBoth);
    const onClosed = () => {
      if (--open > 0) return;
      this.closers.delete(closeBoth);
      this.logger.debug({ event: 'inbound', proto: 'tcp', from, port: spec.sandboxPort, bytesIn: up, bytesOut: down }, `inbound tcp from ${from} to sandbox port ${spec.sandboxPort} closed: ${up} B in, ${down} B out`);
    };
    conn.on('data', (c: Buffer) => (down += c.length));
    client.on('data', (c: Buffer) => (up += c.length));
    conn.pipe(client);
    client.pipe(conn);
    client.resume();
    client.on('error', () => conn.reset());
    conn.on('error', () => client.resetAndDestroy());
    // A side that closes without having ended its stream went away abruptly: reset the other.
    client.on('close', () => {
      if (!conn.destroyed && !conn.writableEnded) conn.reset();
      onClosed();
    });
    conn.on('close', () => {
      if (!client.destroyed && !client.writableEnded) client.resetAndDestroy();
      onClosed();
    });
  }

  private listenUdp(spec: PublishSpec, target: PublishTarget): Promise<void> {
    const family: Family = net.isIP(spec.hostAddr) === 6 ? 6 : 4;
    const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    const clients = new Map<string, UdpConn>();
    const stop = () => {
      for (const conn of clients.values()) conn.close();
      clients.clear();
      socket.close();
    };
    socket.on('message', (msg, rinfo) => {
      const key = `${rinfo.address} ${rinfo.port}`;
      let conn = clients.get(key);
      if (!conn) {
        const opened = target.udp?.open(family, family === 4 ? target.gateway4 : target.gateway6, family === 4 ? target.sandbox4 : target.sandbox6, spec.sandboxPort);
        if (!opened) return; // the stack is not running yet, or at its session cap: dropped, as UDP may be
        conn = opened;
        clients.set(key, opened);
        opened.onMessage = (reply) => socket.send(reply, rinfo.port, rinfo.address);
        opened.onClose = () => {
          if (clients.get(key) === opened) clients.delete(key);
        };
      }
      conn.send(msg);
    });
    return new Promise((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        socket.close();
        reject(bindError(spec, err));
      });
      socket.bind({ address: spec.hostAddr, port: spec.hostPort }, () => {
        socket.removeAllListeners('error');
        socket.on('error', () => {}); // a send to a client that went away
        this.closers.add(stop);
        resolve();
      });
    });
  }
}

function hostPort(spec: PublishSpec): string {
  return net.isIP(spec.hostAddr) === 6 ? `[${spec.hostAddr}]:${spec.hostPort}` : `${spec.hostAddr}:${spec.hostPort}`;
}

function bindError(spec: PublishSpec, err: NodeJS.ErrnoException): TapboxError {
  const where = `${spec.proto} ${hostPort(spec)}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return new TapboxError('EUSAGE', `cannot publish -p "${spec.text}": ${where} is already in use on the host; pick another host port.`);
    case 'EACCES':
      return new TapboxError('EUSAGE', `cannot publish -p "${spec.text}": ${where} needs privileges on the host; pick a host port of 1024 or above.`);
    case 'EADDRNOTAVAIL':
      return new TapboxError('EUSAGE', `cannot publish -p "${spec.text}": ${spec.hostAddr} is not an address of this host; use 127.0.0.1 (the default) or one of the host's addresses.`);
    default:
      return new TapboxError('EUSAGE', `cannot publish -p "${spec.text}": listening on ${where} failed with ${err.code ?? err.message}; pick another host address or port.`);
  }
}
