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
//
// Each connection and UDP session is a flow (forwarder/inbound.ts): it takes a slot under the flow
// cap (at the cap a TCP client is reset, a new UDP client's datagram dropped) and is audited as an
// inbound 'flow' / 'flowEnd', so the summary, the report and --progress count it. The clients' TCP
// sockets have keepalive on (HOST_KEEPALIVE_MS): one that vanishes silently resets the sandbox's side.
import dgram from 'node:dgram';
import net from 'node:net';
import type { AuditLog } from './audit/logger.js';
import type { Family, TcpConn, TcpProtocol, UdpConn, UdpProtocol } from '../../netstack/index.js';
import { TapboxError } from '../errors.js';
import { HOST_KEEPALIVE_MS } from './forwarder/dialer.js';
import type { InboundFlow, InboundFlows } from './forwarder/inbound.js';
import { forward, linkFates } from './forwarder/linked.js';

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

/** Where published connections go: our address on the link (the gateway) and the sandbox's, per family, without prefix length. */
export interface PublishTarget {
  gateway4: string;
  gateway6: string;
  sandbox4: string;
  sandbox6: string;
}

export interface PublisherOptions {
  /** Counts each connection and UDP session under the flow cap and in the audit (egress.inbound); default: not counted. */
  flows?: InboundFlows;
  /** TCP keepalive idle time of the host clients' sockets, ms (default HOST_KEEPALIVE_MS, 60 s). */
  keepAliveMs?: number;
}

/** Nothing counted, nothing refused: for a Publisher without an egress. */
const UNCOUNTED: InboundFlows = { open: () => ({ end: () => {} }) };

/** The stack's transports, which carry published connections into the sandbox once it runs. */
export interface PublishTransports {
  tcp: TcpProtocol;
  udp: UdpProtocol;
}

export class Publisher {
  private readonly closers = new Set<() => void>();
  /** Null until the stack runs: a connection before that is reset, a datagram dropped. */
  private transports: PublishTransports | null = null;
  private readonly flows: InboundFlows;
  private readonly keepAliveMs: number;

  private constructor(o: PublisherOptions) {
    this.flows = o.flows ?? UNCOUNTED;
    this.keepAliveMs = o.keepAliveMs ?? HOST_KEEPALIVE_MS;
  }

  /** Binds every listener; throws TapboxError EUSAGE when one cannot be bound. */
  static async start(specs: readonly PublishSpec[], target: PublishTarget, logger: AuditLog, o: PublisherOptions = {}): Promise<Publisher> {
    const p = new Publisher(o);
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

  /** The stack runs: published connections now reach the sandbox through its transports. */
  attach(transports: PublishTransports): void {
    this.transports = transports;
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
    const tcp = this.transports?.tcp;
    if (!tcp) {
      client.resetAndDestroy();
      return;
    }
    const gateway = family === 4 ? target.gateway4 : target.gateway6;
    const sandbox = family === 4 ? target.sandbox4 : target.sandbox6;
    // A slot under the flow cap, and the audit: at the cap the client is reset (a 'flows' limit hit).
    const flow = this.flows.open('tcp', { addr: client.remoteAddress ?? '', port: client.remotePort ?? 0 }, { addr: sandbox, port: spec.sandboxPort }, `published port (-p ${spec.text})`);
    if (!flow) {
      client.resetAndDestroy();
      return;
    }
    // A client that vanishes without a FIN or RST is found out, and the sandbox's side reset.
    client.setKeepAlive(true, this.keepAliveMs);
    const abort = () => client.resetAndDestroy();
    this.closers.add(abort);
    tcp.connect(family, gateway, sandbox, spec.sandboxPort).then(
      (conn) => {
        this.closers.delete(abort);
        if (client.destroyed) {
          conn.reset();
          return flow.end(0, 0, 'host client went away');
        }
        this.relayTcp(client, conn, flow);
      },
      (err: NodeJS.ErrnoException) => {
        this.closers.delete(abort);
        flow.end(0, 0, `sandbox ${err.code ?? err.message}`);
        client.resetAndDestroy();
      },
    );
  }

  /** The same relay as the forwarder's (forwarder/tcp.ts), the other way round. */
  private relayTcp(client: net.Socket, conn: TcpConn, flow: InboundFlow): void {
    let fromSandbox = 0;
    let toSandbox = 0;
    let error: string | undefined;
    let open = 2;
    const closeBoth = () => {
      conn.destroy();
      client.destroy();
    };
    this.closers.add(closeBoth);
    const onClosed = () => {
      if (--open > 0) return;
      this.closers.delete(closeBoth);
      flow.end(fromSandbox, toSandbox, error);
    };
    forward(conn, client, (n) => (fromSandbox += n));
    forward(client, conn, (n) => (toSandbox += n));
    linkFates(conn, client, (text) => (error ??= text), onClosed);
  }

  private listenUdp(spec: PublishSpec, target: PublishTarget): Promise<void> {
    const family: Family = net.isIP(spec.hostAddr) === 6 ? 6 : 4;
    const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    /** One session per host client, counted as an inbound flow (bytes: sent by the sandbox, to it). */
    interface Session {
      conn: UdpConn;
      flow: InboundFlow;
      fromSandbox: number;
      toSandbox: number;
    }
    const clients = new Map<string, Session>();
    const finish = (key: string, s: Session) => {
      if (clients.get(key) === s) clients.delete(key);
      s.flow.end(s.fromSandbox, s.toSandbox);
    };
    const stop = () => {
      for (const [key, s] of [...clients]) {
        s.conn.close();
        finish(key, s);
      }
      socket.close();
    };
    socket.on('message', (msg, rinfo) => {
      const key = `${rinfo.address} ${rinfo.port}`;
      let session = clients.get(key);
      if (!session) {
        const udp = this.transports?.udp;
        if (!udp) return; // the stack is not running yet: dropped, as UDP may be
        const sandbox = family === 4 ? target.sandbox4 : target.sandbox6;
        const flow = this.flows.open('udp', { addr: rinfo.address, port: rinfo.port }, { addr: sandbox, port: spec.sandboxPort }, `published port (-p ${spec.text})`);
        if (!flow) return; // at the flow cap: dropped
        const opened = udp.open(family, family === 4 ? target.gateway4 : target.gateway6, sandbox, spec.sandboxPort);
        if (!opened) return flow.end(0, 0, 'UDP sessions at the cap'); // dropped
        const s: Session = { conn: opened, flow, fromSandbox: 0, toSandbox: 0 };
        session = s;
        clients.set(key, s);
        opened.onMessage = (reply) => {
          s.fromSandbox += reply.length;
          socket.send(reply, rinfo.port, rinfo.address);
        };
        opened.onClose = () => finish(key, s);
      }
      session.toSandbox += msg.length;
      session.conn.send(msg);
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
