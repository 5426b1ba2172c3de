// UDP sessions from the sandbox. Port 53 anywhere → the DNS proxy. Denied → ICMP administratively
// prohibited. Allowed → one connected host socket per session, datagrams relayed both ways; an
// ECONNREFUSED from the host becomes an ICMP port unreachable; the session's end closes the socket.
// On a link with a native UDP relay (the TAP, without pcap or link faults), a session whose every
// datagram need not be seen here is handed to it (UdpConn.relay): the addon then carries the
// datagrams both ways and counts them, with no JS per datagram; only QUIC-guarded sessions (below)
// keep a dgram socket in JS.
// The stack hands the first datagram to `onMessage` once it is set, so it is relayed (or inspected)
// like the others. Sessions allowed only through a DNS pin are inspected like TCP (see tcp.ts): the first datagrams
// must be QUIC Initial packets whose ClientHello names an allowed name pinned to the address, unless
// the name's rule names the port explicitly (NTP, games, ... on `udp:time.example.com:123`). Without
// such a rule, every later datagram must still be QUIC (QuicSessionGuard): a datagram of another shape
// resets the session, and the Initial of a connection not seen yet on it is held until its own
// ClientHello passed the same check.
import dgram from 'node:dgram';
import type { RelayedUdp, UdpConn, UdpForwarderRequest } from '../../../netstack/index.js';
import type { FlowEvent } from '../audit/events.js';
import { QuicClientHelloReader, QuicSessionShape, type QuicResult } from '../inspect/quic.js';
import { ipBytes, parseIp } from '../policy/address.js';
import { flowName, type FlowDecision } from '../policy/policy.js';
import { allowReason, type ForwarderContext } from './context.js';
import { FirstBytesInspection, type Allowed, type Verdict } from './first-bytes.js';
import { hostLoopbackFor } from './host-loopback.js';

/** Datagrams read at most looking for a complete QUIC ClientHello. */
const MAX_INSPECTED_DATAGRAMS = 8;
/** QUIC connections a session may start after its first. */
const MAX_LATER_CONNECTIONS = 8;


export function forwardUdp(ctx: ForwarderContext, req: UdpForwarderRequest): void {
  const id = req.id;
  const by = ctx.attribute('udp', id);
  switch (ctx.route(id, 'udp')) {
    case 'dns':
      ctx.o.dns.serveUdp(req.accept(), by);
      return;
    case 'resolver-closed':
      req.reject('port-unreachable');
      ctx.deny('udp', id, 'only port 53 is open on the resolver address');
      return;
    case 'gateway':
      req.reject('admin-prohibited');
      ctx.deny('udp', id, 'the gateway address does not lead to the host (open host loopback ports with --host-loopback PORT/udp)');
      return;
    case 'host-internal':
      req.reject('admin-prohibited');
      ctx.deny('udp', id, 'loopback and unspecified addresses would reach the host itself; open host loopback ports with --host-loopback PORT/udp');
      return;
    case 'host-loopback':
      if (!ctx.acquire()) {
        req.reject('admin-prohibited');
        ctx.deny('udp', id, `already ${ctx.o.policy.maxFlows} flows open (the connection limit)`);
        return;
      }
      openThenRelay(ctx, req, ctx.event(ctx.flowId(), 'udp', id, 'allow', 'host loopback port (--host-loopback)'), hostLoopbackFor(id.family));
      return;
  }
  const decided = ctx.decide('udp', id, by);
  // Ask mode holds the session's first datagrams while the user answers (at most 25 s: the session
  // lives 60 s without datagrams). Once tapbox is closing, the stack ends the session itself.
  if (decided instanceof Promise) void decided.then((d) => ctx.closed || admit(ctx, req, d));
  else admit(ctx, req, decided);
}

/** Refuses or starts a session by the policy's decision. */
function admit(ctx: ForwarderContext, req: UdpForwarderRequest, decision: FlowDecision): void {
  const id = req.id;
  if (decision.verdict === 'deny') {
    req.reject('admin-prohibited');
    ctx.deny('udp', id, decision.reason, decision);
    return;
  }
  if (!ctx.acquire()) {
    req.reject('admin-prohibited');
    ctx.deny('udp', id, `already ${ctx.maxFlows} flows open (the connection limit)`, decision);
    return;
  }
  if (ctx.o.sniCheck && decision.via === 'pin') inspectThenRelay(ctx, req, decision);
  else openThenRelay(ctx, req, ctx.event(ctx.flowId(), 'udp', id, 'allow', allowReason(decision), decision));
}

/** Audits `flow`, accepts, and relays it to a host socket to `target` (its destination unless told). */
function openThenRelay(ctx: ForwarderContext, req: UdpForwarderRequest, flow: FlowEvent, target = flow.dst): void {
  ctx.o.auditor.flow(flow);
  openThenRelayAccepted(ctx, flow, req.accept(), target, [], null);
}

/**
 * Relays an accepted session (`held`: datagrams read before, sent first) to a host socket to `target`:
 * the link's native relay unless `guard` must see every datagram, else a dgram socket opened now.
 */
function openThenRelayAccepted(ctx: ForwarderContext, flow: FlowEvent, conn: UdpConn, target: string, held: Buffer[], guard: QuicSessionGuard | null): void {
  if (!guard) {
    let relayed: RelayedUdp | null;
    try {
      relayed = conn.relay(ipBytes(parseIp(target)!), flow.port, () => conn.sendIcmp('port-unreachable'));
    } catch (e) {
      if (!(e as NodeJS.ErrnoException).syscall) throw e; // a bug, not a socket that can't open
      conn.sendIcmp('host-unreachable');
      conn.close();
      ctx.release();
      return;
    }
    if (relayed) return relay(ctx, flow, conn, nativeHostEnd(relayed), held, null);
  }
  // Datagrams arriving while the host socket opens are held and sent (through the guard) first.
  let sessionEnded = false;
  conn.onMessage = (payload) => held.push(Buffer.from(payload));
  conn.onClose = () => (sessionEnded = true);
  openHostSocket(target, flow.port).then(
    (socket) => {
      if (!sessionEnded && !ctx.closed) return relay(ctx, flow, conn, dgramHostEnd(socket, conn, guard), held, guard);
      socket.close();
      ctx.release();
    },
    () => {
      conn.sendIcmp('host-unreachable');
      conn.close();
      ctx.release();
    },
  );
}

/** Reads a pinned session's first datagrams (first-bytes.ts) until a QUIC ClientHello is judged. */
function inspectThenRelay(ctx: ForwarderContext, req: UdpForwarderRequest, decision: Allowed): void {
  const conn = req.accept();
  const reader = new QuicClientHelloReader();
  // Without a udp: rule naming the port, the session must stay QUIC (QuicSessionGuard).
  const shape = decision.explicitPort ? null : new QuicSessionShape();
  const held: Buffer[] = [];
  const inspection = new FirstBytesInspection(ctx, {
    deadlineFromStart: true,
    timedOut: () => ({ ok: false, reason: 'no complete QUIC ClientHello to check the name of' }),
    settled(verdict) {
      conn.onMessage = null;
      conn.onClose = null;
      if (verdict === null) return ctx.release();
      admitSession(ctx, req, decision, conn, verdict, held, shape ? new QuicSessionGuard(shape, (r) => helloVerdict(ctx, decision, req.id.dstPort, r), reader) : null);
    },
    abort: () => conn.close(),
  });
  conn.onMessage = (payload) => {
    held.push(Buffer.from(payload));
    inspection.read(payload.length);
    const verdict = helloVerdict(ctx, decision, req.id.dstPort, reader.push(payload));
    if (verdict?.ok && shape) {
      // Datagrams about to be relayed as QUIC must be QUIC all through, as a client may send them once
      // its ClientHello was read (0-RTT only if it offered early data), not only their first packet.
      shape.admit(reader.dcid!.toString('hex'));
      if (reader.earlyData) shape.allowEarlyData();
      for (const d of held) {
        const wrong = shape.client(d);
        if (wrong !== null) return inspection.settle({ ok: false, reason: `malformed: ${typeof wrong === 'string' ? wrong : 'QUIC packets of two connections'}` });
      }
    }
    if (verdict) inspection.settle(verdict);
    else if (held.length >= MAX_INSPECTED_DATAGRAMS) inspection.settle({ ok: false, reason: `no complete QUIC ClientHello in ${held.length} datagrams` });
  };
  conn.onClose = () => inspection.settle(null);
}

/**
 * The verdict on a pinned session's first datagrams, applied: audited; refused with admin-prohibited,
 * or relayed (the `held` datagrams first) once the host socket opened — through `guard` when later
 * datagrams must stay QUIC.
 */
function admitSession(ctx: ForwarderContext, req: UdpForwarderRequest, decision: Allowed, conn: UdpConn, verdict: Verdict, held: Buffer[], guard: QuicSessionGuard | null): void {
  const flow = ctx.event(ctx.flowId(), 'udp', req.id, verdict.ok ? 'allow' : 'deny', verdict.reason, decision, verdict.ok ? verdict.name : undefined);
  ctx.o.auditor.flow(flow);
  if (!verdict.ok) {
    conn.sendIcmp('admin-prohibited');
    conn.close();
    ctx.release();
    return;
  }
  openThenRelayAccepted(ctx, flow, conn, flow.dst, held, guard);
}

/** The verdict on what a QUIC reader read so far; null while the ClientHello is incomplete. */
function helloVerdict(ctx: ForwarderContext, decision: Allowed, port: number, r: QuicResult): Verdict | null {
  if (r.status === 'ok') {
    if (r.ech) return { ok: false, reason: 'encrypted ClientHello (ECH) hides the server name' };
    if (r.sni === null) return { ok: false, reason: 'QUIC ClientHello without a server name' };
    if (ctx.o.policy.verifyName(r.sni, { proto: 'udp', addr: decision.addr, port })) return { ok: true, reason: 'QUIC SNI matches an allowed name', name: r.sni };
    return { ok: false, reason: `QUIC SNI ${r.sni} is not an allowed name resolved to ${decision.addr}` };
  }
  if (r.status === 'not-quic') {
    if (decision.explicitPort) return { ok: true, reason: 'explicitly allowed port', name: flowName(decision.names) };
    return { ok: false, reason: 'not QUIC, so the name cannot be checked; allow udp:NAME:PORT to open other protocols' };
  }
  if (r.status === 'invalid') return { ok: false, reason: `malformed: ${r.reason}` };
  return null;
}

/**
 * Keeps a pinned QUIC session QUIC once its first ClientHello passed. Every datagram from the sandbox
 * must have the shape of QUIC packets that a client in its state may send (QuicSessionShape); the
 * Initial packets of checked connections are read on by their readers (a retransmission must agree
 * with what was read, a ClientHello after a HelloRetryRequest must name the same server);
 * short-header, Handshake and 0-RTT packets are encrypted with keys only the endpoints hold, so their
 * shape and the connection's state are all that can be checked. An Initial or 0-RTT packet addressed
 * to a connection ID neither the first connection's nor one the server chose starts another
 * connection (after a Retry, or a second connection from the same socket): its datagrams are held
 * until its own ClientHello passed. A datagram that may not pass ends the session.
 */
class QuicSessionGuard {
  private readonly pending = new Map<string, { reader: QuicClientHelloReader; held: Buffer[] }>();
  /** The connections whose first ClientHello passed: their later Initials are read on. */
  private readonly readers: QuicClientHelloReader[];
  private started = 0;

  constructor(
    private readonly shape: QuicSessionShape,
    private readonly verdictOf: (r: QuicResult) => Verdict | null,
    first: QuicClientHelloReader,
  ) {
    this.readers = [first];
  }

  /** Passes a datagram from the sandbox to `send`, now or once it may; why the session must end instead. */
  fromSandbox(datagram: Buffer, send: (datagram: Buffer) => void): string | null {
    const shape = this.shape.client(datagram);
    if (shape === null) {
      // An Initial of a connection already checked (a retransmission, the ClientHello after a
      // HelloRetryRequest): read like its first ones, so that no ClientHello passes unread.
      if (this.shape.lastHadInitial) {
        const reader = this.readers.find((r) => r.owns(datagram));
        if (!reader) return 'malformed: a QUIC Initial that no checked connection can have sent';
        const r = reader.push(datagram);
        if (r.status !== 'ok') return `malformed: ${r.status === 'invalid' ? r.reason : 'a QUIC Initial that is not one'}`;
      }
      send(datagram);
      return null;
    }
    if (typeof shape === 'string') return `malformed: ${shape}`;
    let next = this.pending.get(shape.dcid);
    if (!next) {
      if (++this.started > MAX_LATER_CONNECTIONS) return `more than ${MAX_LATER_CONNECTIONS} QUIC connections started on one session`;
      next = { reader: new QuicClientHelloReader(Buffer.from(shape.dcid, 'hex')), held: [] };
      this.pending.set(shape.dcid, next);
    }
    next.held.push(Buffer.from(datagram));
    const verdict = this.verdictOf(next.reader.push(datagram));
    if (verdict === null) return next.held.length >= MAX_INSPECTED_DATAGRAMS ? `no complete QUIC ClientHello in ${next.held.length} datagrams of a later connection` : null;
    if (!verdict.ok) return `later connection: ${verdict.reason}`;
    this.pending.delete(shape.dcid);
    this.shape.admit(shape.dcid);
    if (next.reader.earlyData) this.shape.allowEarlyData();
    this.readers.push(next.reader);
    // Checked again now that the connection is admitted (a 0-RTT packet needs early data offered).
    for (const d of next.held) {
      const wrong = this.shape.client(d);
      if (typeof wrong === 'string') return `malformed: ${wrong}`;
      if (wrong !== null) return 'malformed: QUIC packets of two connections';
    }
    next.held.forEach(send);
    return null;
  }

  /** Learns the server's connection IDs from a datagram it sent. */
  fromServer(datagram: Buffer): void {
    if ((datagram[0] & 0x80) !== 0) this.shape.server(datagram);
  }
}

function openHostSocket(dst: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const family = parseIp(dst)?.family === 6 ? 'udp6' : 'udp4';
    const socket = dgram.createSocket(family);
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.connect(port, dst, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/** The host end of a session: sends datagrams there, counts the bytes each way, closes. */
interface HostEnd {
  send(payload: Buffer): void;
  readonly bytesUp: number;
  readonly bytesDown: number;
  close(): void;
}

/** A dgram socket whose datagrams go to the sandbox (learned from by `guard`), counted here. */
function dgramHostEnd(socket: dgram.Socket, conn: UdpConn, guard: QuicSessionGuard | null): HostEnd {
  const end = {
    bytesUp: 0,
    bytesDown: 0,
    send(payload: Buffer) {
      end.bytesUp += payload.length;
      socket.send(payload);
    },
    close: () => socket.close(),
  };
  socket.on('message', (msg) => {
    end.bytesDown += msg.length;
    guard?.fromServer(msg);
    conn.send(msg);
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ECONNREFUSED') conn.sendIcmp('port-unreachable');
  });
  return end;
}

/** The link's native relay: it counts the bytes; the session's close() ends it. */
function nativeHostEnd(relayed: RelayedUdp): HostEnd {
  return {
    send: (payload) => relayed.send(payload),
    get bytesUp() {
      return relayed.bytesUp;
    },
    get bytesDown() {
      return relayed.bytesDown;
    },
    close: () => {},
  };
}

/** Relays datagrams until the stack ends the session; `held` were read during inspection. */
function relay(ctx: ForwarderContext, flow: FlowEvent, conn: UdpConn, host: HostEnd, held: Buffer[], guard: QuicSessionGuard | null): void {
  const started = Date.now();
  let closed = false;
  let error: string | undefined;
  const close = (byStack: boolean) => {
    if (closed) return;
    closed = true;
    ctx.closers.delete(closeFromHere);
    ctx.relayed.delete(flow.flowId);
    host.close();
    if (!byStack) conn.close();
    ctx.release();
    // Read after the close: a native relay's last figures.
    ctx.o.auditor.flowEnd({ flowId: flow.flowId, proto: 'udp', dst: flow.dst, port: flow.port, name: flow.name, bytesUp: host.bytesUp, bytesDown: host.bytesDown, durationMs: Date.now() - started, error });
  };
  const closeFromHere = () => close(false);
  ctx.closers.add(closeFromHere);
  const send = (payload: Buffer) => host.send(payload);
  // A refused datagram ends the session: logged as a denial, the sandbox gets admin-prohibited.
  const refuse = (reason: string) => {
    ctx.o.auditor.flow({ ...flow, verdict: 'deny', reason });
    error = `refused: ${reason}`;
    conn.sendIcmp('admin-prohibited');
    close(false);
  };
  ctx.relayed.set(flow.flowId, { flow, cut: refuse, bytes: () => ({ up: host.bytesUp, down: host.bytesDown }) });
  const fromSandbox = guard
    ? (payload: Buffer) => {
        if (closed) return;
        const reason = guard.fromSandbox(payload, send);
        if (reason !== null) refuse(reason);
      }
    : send;
  conn.onMessage = fromSandbox;
  conn.onClose = () => close(true);
  held.forEach(fromSandbox);
}
