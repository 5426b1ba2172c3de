// TCP flows from the sandbox. Denied → RST at once (the program sees ECONNREFUSED, never a hang).
// Allowed → the host socket connects first, and the sandbox gets its SYN-ACK only once it did (refused
// → RST, timeout → host unreachable); then bytes are relayed both ways with backpressure, FINs
// kept as half-closes, and a reset on either side resets the other.
//
// Flows allowed only through a DNS pin are inspected too: the host is connected and the connection
// accepted as above, then the sandbox's first bytes are read, before any is relayed, until a full TLS
// ClientHello or HTTP/1 request head, whose SNI / Host must name an allowed name pinned to that address
// (a CDN address serves many names: the pin alone would open all of them). An encrypted ClientHello
// hides the real name and is refused. On plain HTTP every later request of the connection is framed
// and its Host checked the same way, the server's answers telling whether it switched protocols
// (inspect/http.ts); on TLS the handshake is followed while in clear, so that a second ClientHello
// (after a HelloRetryRequest) names the same server (inspect/tls-follow.ts). Other protocols pass only
// when the name's rule names the port explicitly (`git.example.com:22`): the user opened that port for
// that name knowingly.
// There the server may speak first (SSH, SMTP): its bytes are relayed while the client is silent, and
// the client's first bytes are still judged whenever they come.
//
// The host side is dialed by dialer.ts: directly, or through --upstream-proxy once the policy and the
// checks above said yes; a flow relayed without inspection and dialled directly gets a native host
// socket (host-socket.ts), the others a net.Socket. Flows to the gateway on a --host-loopback port go to the host's loopback
// (never through the proxy); flows to loopback or unspecified addresses are refused (host-loopback.ts).
import { writeSync } from 'node:fs';
import net from 'node:net';
import { Transform } from 'node:stream';
import type { Refusal, TcpConn, TcpForwarderRequest } from '../../../netstack/index.js';
import type { FlowEvent } from '../audit/events.js';
import { HttpRequestFramer } from '../inspect/http.js';
import { StreamSniffer, type StreamSniff } from '../inspect/sniff.js';
import { TlsHandshakeFollower } from '../inspect/tls-follow.js';
import { flowName, type FlowDecision } from '../policy/policy.js';
import { allowReason, type ForwarderContext } from './context.js';
import { dial, dialRelay, type DialOptions } from './dialer.js';
import { FirstBytesInspection, type Allowed, type Verdict } from './first-bytes.js';
import { hostLoopbackFor } from './host-loopback.js';
import { NativeHostSocket, type RelaySocket } from './host-socket.js';
import { forward, linkFates } from './linked.js';

export function forwardTcp(ctx: ForwarderContext, req: TcpForwarderRequest): void {
  const id = req.id;
  const by = ctx.attribute('tcp', id);
  switch (ctx.route(id, 'tcp')) {
    case 'dns':
      ctx.o.dns.serveTcp(req.accept(), by);
      return;
    case 'resolver-closed':
      req.reject('reset');
      ctx.deny('tcp', id, 'only port 53 is open on the resolver address');
      return;
    case 'gateway':
      req.reject('reset');
      ctx.deny('tcp', id, 'the gateway address does not lead to the host (open host loopback ports with --host-loopback PORT)');
      return;
    case 'host-internal':
      req.reject('reset');
      ctx.deny('tcp', id, 'loopback and unspecified addresses would reach the host itself; open host loopback ports with --host-loopback PORT');
      return;
    case 'host-loopback':
      if (!ctx.acquire()) {
        req.reject('reset');
        ctx.deny('tcp', id, `already ${ctx.maxFlows} flows open (the connection limit)`);
        return;
      }
      connectThenAccept(ctx, req, ctx.event(ctx.flowId(), 'tcp', id, 'allow', 'host loopback port (--host-loopback)'), hostLoopbackFor(id.family), false);
      return;
  }
  const decided = ctx.decide('tcp', id, by);
  // Ask mode holds the SYN while the user answers (the sandbox's stack retransmits it meanwhile).
  if (decided instanceof Promise) void decided.then((d) => (ctx.closed ? req.reject('reset') : admit(ctx, req, d)));
  else admit(ctx, req, decided);
}

/** Refuses or starts a flow by the policy's decision. */
function admit(ctx: ForwarderContext, req: TcpForwarderRequest, decision: FlowDecision): void {
  const id = req.id;
  if (decision.verdict === 'deny') {
    req.reject('reset');
    ctx.deny('tcp', id, decision.reason, decision);
    return;
  }
  if (!ctx.acquire()) {
    req.reject('reset');
    ctx.deny('tcp', id, `already ${ctx.maxFlows} flows open (the connection limit)`, decision);
    return;
  }
  if (ctx.o.sniCheck && decision.via === 'pin') connectThenInspect(ctx, req, decision);
  else connectThenAccept(ctx, req, ctx.event(ctx.flowId(), 'tcp', req.id, 'allow', allowReason(decision), decision));
}

/** Audits `flow`, dials `target` (its destination unless told) and only then accepts the sandbox's SYN. */
function connectThenAccept(ctx: ForwarderContext, req: TcpForwarderRequest, flow: FlowEvent, target = flow.dst, viaProxy = true): void {
  ctx.o.auditor.flow(flow);
  const started = Date.now();
  dialRelay(target, flow.port, dialOptions(ctx, viaProxy)).then(
    (host) => {
      if (!ctx.closed) return relay(ctx, flow, req.accept(), host, Buffer.alloc(0), started);
      host.destroy();
      req.reject('reset');
      ended(ctx, flow, started, 0, 0, 'tapbox is shutting down');
    },
    (err: NodeJS.ErrnoException) => {
      req.reject(refusalFor(err));
      ended(ctx, flow, started, 0, 0, `host ${err.code ?? err.message}`);
    },
  );
}

/**
 * A pinned flow: like any allowed flow the host is dialled first (the address is pinned for an allowed
 * name, so a SYN to it is allowed, and a closed port reaches the sandbox as "connection refused"), and
 * the sandbox's SYN accepted once it connected. Then the sandbox's first bytes, whenever they come, are
 * read and judged before any of them reaches the host. Until then the host's bytes are held, except on
 * a port the rule names explicitly, where server-speaks-first protocols (SSH, SMTP) get the server's
 * greeting relayed: the client's first bytes are judged all the same when they come.
 */
function connectThenInspect(ctx: ForwarderContext, req: TcpForwarderRequest, decision: Allowed): void {
  const started = Date.now();
  const pending = ctx.event(ctx.flowId(), 'tcp', req.id, 'allow', allowReason(decision), decision);
  dial(pending.dst, pending.port, dialOptions(ctx, true)).then(
    (host) => {
      if (!ctx.closed) return inspectFirstBytes(ctx, req, decision, req.accept(), host, pending.flowId, started);
      host.destroy();
      req.reject('reset');
      ctx.release();
    },
    (err: NodeJS.ErrnoException) => {
      ctx.o.auditor.flow(pending);
      req.reject(refusalFor(err));
      ended(ctx, pending, started, 0, 0, `host ${err.code ?? err.message}`);
    },
  );
}

/**
 * Reads the sandbox's first bytes of a pinned flow (first-bytes.ts) and judges them: a relay starts
 * for a name that passes, the flow is reset for one that doesn't, both sides end if either leaves first.
 */
function inspectFirstBytes(ctx: ForwarderContext, req: TcpForwarderRequest, decision: Allowed, conn: TcpConn, host: net.Socket, flowId: number, started: number): void {
  const serverFirst = decision.explicitPort;
  const chunks: Buffer[] = [];
  const sniffer = new StreamSniffer(ctx.inspectMaxBytes, { allowGetBody: ctx.o.httpAllowGetBody });
  let down = 0;
  const countDown = (c: Buffer) => (down += c.length);
  const ignore = () => {}; // errors on either side end up in 'close'
  const inspection = new FirstBytesInspection(ctx, {
    // On an explicit port the client may stay silent as long as it likes (nothing it hasn't sent can
    // name a host); once it has begun, it must finish its ClientHello or request head in time.
    deadlineFromStart: !serverFirst,
    timedOut: (read) =>
      read === 0 && serverFirst
        ? { ok: true, reason: 'explicitly allowed port; the sandbox sent nothing', name: flowName(decision.names) }
        : { ok: false, reason: 'no complete TLS ClientHello or HTTP request to check the name of' },
    settled(verdict) {
      conn.pause();
      conn.off('data', onData).off('end', onEnd).off('close', onClose);
      host.off('close', onHostClose).off('error', ignore).off('data', countDown);
      if (verdict === null) {
        // The sandbox left before saying anything useful, or the host went away first.
        host.destroy();
        return ctx.release();
      }
      admitFirstBytes(ctx, req, decision, conn, host, Buffer.concat(chunks), verdict, { flowId, started, down, serverFirst });
    },
    abort: () => conn.destroy(),
  });
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    inspection.read(chunk.length);
    const sniff = sniffer.push(chunk);
    if (sniff.kind !== 'incomplete') inspection.settle(judge(ctx, req, decision, sniff));
    else if (inspection.bytes >= ctx.inspectMaxBytes) inspection.settle({ ok: false, reason: `no complete TLS ClientHello or HTTP request in the first ${inspection.bytes} bytes` });
  };
  const onEnd = () => inspection.timeOut();
  const onClose = () => inspection.settle(null);
  const onHostClose = () => {
    inspection.settle(null);
    conn.reset();
  };
  conn.on('error', ignore);
  host.on('error', ignore);
  if (serverFirst) host.on('data', countDown).pipe(conn);
  conn.on('data', onData).on('end', onEnd).on('close', onClose);
  host.on('close', onHostClose);
}

/**
 * The verdict on a pinned flow's first bytes (`first`), applied: the flow is audited, reset if refused,
 * else relayed — through an inspector that checks the rest of the HTTP requests or TLS handshake.
 */
function admitFirstBytes(
  ctx: ForwarderContext,
  req: TcpForwarderRequest,
  decision: Allowed,
  conn: TcpConn,
  host: net.Socket,
  first: Buffer,
  verdict: Verdict,
  o: { flowId: number; started: number; down: number; serverFirst: boolean },
): void {
  const read = first.length;
  let outcome = verdict;
  let inspector: FlowInspector | undefined;
  if (outcome.ok && outcome.protocol === 'http') {
    // Every later request on the connection is checked too (keep-alive, pipelining): from the start,
    // so that the framer knows where the first request's body ends. Only what it lets through goes
    // on: the start of a next request head waits for the rest of it.
    inspector = new HttpRequestFramer(hostCheck(ctx, req, decision), ctx.inspectMaxBytes, { allowGetBody: ctx.o.httpAllowGetBody });
  } else if (outcome.ok && outcome.protocol === 'tls') {
    // The handshake is followed while in clear: a ClientHello after a HelloRetryRequest must name the same server.
    inspector = new TlsHandshakeFollower();
  }
  if (inspector) {
    const refused = inspector.push(first);
    if (refused) outcome = { ok: false, reason: refused };
    else first = Buffer.concat(inspector.drain());
  }
  const flow = ctx.event(o.flowId, 'tcp', req.id, outcome.ok ? 'allow' : 'deny', outcome.reason, decision, outcome.ok ? outcome.name : undefined);
  ctx.o.auditor.flow(flow);
  if (!outcome.ok) {
    conn.reset();
    host.destroy();
    ctx.release();
    return;
  }
  relay(ctx, flow, conn, host, first, o.started, { inspector, down: o.down, hostPiped: o.serverFirst, read });
}

/** The check of the later requests of an HTTP flow: a name that passed once on the connection stays good. */
function hostCheck(ctx: ForwarderContext, req: TcpForwarderRequest, decision: Allowed): (name: string) => string | null {
  const query = { proto: 'tcp' as const, addr: decision.addr, port: req.id.dstPort };
  const passed = new Set<string>();
  return (name) => {
    if (passed.has(name)) return null;
    if (!ctx.o.policy.verifyName(name, query)) return `HTTP Host ${name} is not an allowed name resolved to ${decision.addr}`;
    passed.add(name);
    return null;
  };
}

function judge(ctx: ForwarderContext, req: TcpForwarderRequest, decision: Allowed, sniff: StreamSniff): Verdict {
  const query = { proto: 'tcp' as const, addr: decision.addr, port: req.id.dstPort };
  switch (sniff.kind) {
    case 'tls':
      if (sniff.ech) return { ok: false, reason: 'encrypted ClientHello (ECH) hides the server name' };
      if (sniff.sni === null) return { ok: false, reason: 'TLS ClientHello without a server name' };
      return ctx.o.policy.verifyName(sniff.sni, query)
        ? { ok: true, reason: 'SNI matches an allowed name', name: sniff.sni, protocol: 'tls' }
        : { ok: false, reason: `SNI ${sniff.sni} is not an allowed name resolved to ${decision.addr}` };
    case 'http':
      return ctx.o.policy.verifyName(sniff.host, query)
        ? { ok: true, reason: 'Host matches an allowed name', name: sniff.host, protocol: 'http' }
        : { ok: false, reason: `HTTP Host ${sniff.host} is not an allowed name resolved to ${decision.addr}` };
    case 'unknown':
      // Neither TLS nor HTTP (SSH, SMTP, a database protocol...): nothing in it names a host the way SNI
      // or Host does, so it can't ask a shared CDN address for another tenant's site. It passes, then
      // uninspected, where the user opened the port for the name explicitly.
      return decision.explicitPort
        ? { ok: true, reason: 'explicitly allowed port', name: flowName(decision.names) }
        : { ok: false, reason: 'neither TLS nor HTTP, so the name cannot be checked; allow NAME:PORT to open other protocols' };
    case 'invalid':
      return { ok: false, reason: `malformed: ${sniff.reason}` };
    case 'incomplete':
      return { ok: false, reason: 'incomplete request' };
  }
}

/** How the host is dialled: directly, or through the upstream proxy when there is one (never for host loopback). */
function dialOptions(ctx: ForwarderContext, viaProxy: boolean): DialOptions {
  // A dial still in progress when the egress closes is abandoned (ctx.closers): its socket would
  // otherwise hold tapbox's exit for up to the connect timeout (a black-holed destination).
  // Keepalive on the host socket: a destination that vanishes silently ends in a reset of the sandbox's side.
  return { proxy: viaProxy ? ctx.o.upstreamProxy : undefined, timeoutMs: ctx.connectTimeoutMs, keepAliveMs: ctx.keepAliveMs, cancellers: ctx.closers };
}

function refusalFor(err: NodeJS.ErrnoException): Refusal {
  switch (err.code) {
    case 'ENETUNREACH':
      return 'net-unreachable';
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
      return 'host-unreachable';
    default:
      return 'reset';
  }
}

/** Checks what follows `first` on a pinned flow: later HTTP requests, or the rest of a TLS handshake. */
interface FlowInspector {
  /** Client bytes; null, or why to reset. What may go on comes from drain(). */
  push(chunk: Buffer): string | null;
  /** Server bytes (read, never changed); null, or why to reset. Drain afterwards. */
  pushResponse(chunk: Buffer): string | null;
  /** The server spoke before the inspector started. */
  responsesUnknown(): void;
  drain(): Buffer[];
  /** Inspection ended: later client bytes need not be pushed. */
  readonly done: boolean;
}

interface RelayOptions {
  inspector?: FlowInspector;
  /** Bytes the host sent during inspection (already relayed: `hostPiped`). */
  down?: number;
  hostPiped?: boolean;
  /** Bytes read from the sandbox during inspection, when more than `first` (held by the framer). */
  read?: number;
}

/** Relays until both sides closed; `first` are bytes read from the sandbox during inspection. */
function relay(ctx: ForwarderContext, flow: FlowEvent, conn: TcpConn, host: RelaySocket, first: Buffer, started: number, o: RelayOptions = {}): void {
  let up = o.read ?? first.length;
  let down = o.down ?? 0;
  let error: string | undefined;
  let open = 2;
  const closeBoth = () => {
    conn.destroy();
    host.destroy();
  };
  ctx.closers.add(closeBoth);
  const cut = (reason: string) => {
    error ??= `reset: ${reason}`;
    conn.reset();
    host.resetAndDestroy();
  };
  ctx.relayed.set(flow.flowId, { flow, cut, bytes: () => ({ up, down }) });
  const onClosed = () => {
    if (--open > 0) return;
    ctx.closers.delete(closeBoth);
    ctx.relayed.delete(flow.flowId);
    ended(ctx, flow, started, up, down, error);
  };

  if (first.length) host.write(first);
  const checker = o.inspector && !o.inspector.done ? o.inspector : undefined;
  // The sandbox may have half-closed while its first bytes were inspected.
  if (checker) {
    // Bytes pass through untouched (no copy), request heads (or ClientHellos) once whole and checked;
    // one that frames badly or names a host not allowed here resets both sides before any of it
    // reaches the host.
    const inspector = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (checker.done) return done(null, chunk);
        const refused = checker.push(chunk);
        if (refused !== null) return done(Object.assign(new Error(refused), { code: 'EINSPECT' }));
        for (const bytes of checker.drain()) this.push(bytes);
        done();
      },
    });
    inspector.on('error', (err: Error) => {
      if (error === undefined) ctx.o.auditor.flow({ ...flow, verdict: 'deny', reason: err.message });
      error ??= `refused: ${err.message}`;
      conn.reset();
      host.resetAndDestroy();
    });
    // The server's answers tell whether it switched protocols after an Upgrade or CONNECT (the client's
    // bytes held since then either pass or are framed as requests), or which TLS version it chose.
    if (down > 0) checker.responsesUnknown();
    host.on('data', (c: Buffer) => {
      if (checker.done || inspector.destroyed) return;
      const refused = checker.pushResponse(c);
      if (refused !== null) return void inspector.destroy(Object.assign(new Error(refused), { code: 'EINSPECT' }));
      for (const bytes of checker.drain()) inspector.push(bytes);
    });
    conn.pipe(inspector).pipe(host as net.Socket); // inspected flows dial a net.Socket
    if (conn.readableEnded) inspector.end();
  } else {
    forward(conn, host, (n) => (up += n));
    if (conn.readableEnded) host.end();
    conn.sink = directWriter(host, (n) => (up += n));
  }
  if (checker) conn.on('data', (c: Buffer) => (up += c.length));
  if (!o.hostPiped) forward(host, conn, (n) => (down += n));
  else host.on('data', (c: Buffer) => (down += c.length));
  linkFates(conn, host, (text) => (error ??= text), onClosed);
}

/**
 * The sandbox's bytes straight from the stack's receive ring into the host socket (TcpConn.sink): one
 * write(2), no copy into a Buffer of their own and no trip through the streams, which cost about a
 * quarter of the supervisor's CPU on a bulk upload. Only while nothing is queued for the socket
 * (net.Socket's writableLength counts what is in flight too), so the bytes keep their order; what the
 * kernel does not take, and any error, goes the usual way (write(), where errors are reported).
 */
function directWriter(host: RelaySocket, wrote: (n: number) => void): ((bytes: Buffer) => number) | null {
  if (host instanceof NativeHostSocket) {
    return (bytes) => {
      const n = host.writeDirect(bytes);
      wrote(n);
      return n;
    };
  }
  // Node's TCP handle has kept its descriptor in `fd` on Unix through every version we support.
  const fd = (host as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  return (bytes) => {
    if (host.writableLength > 0 || host.destroyed || host.writableEnded) return 0;
    let n: number;
    try {
      n = writeSync(fd, bytes);
    } catch {
      return 0; // EAGAIN, or an error the stream's own write will report
    }
    wrote(n);
    return n;
  };
}

function ended(ctx: ForwarderContext, flow: FlowEvent, started: number, bytesUp: number, bytesDown: number, error?: string): void {
  ctx.release();
  ctx.o.auditor.flowEnd({
    flowId: flow.flowId,
    proto: 'tcp',
    dst: flow.dst,
    port: flow.port,
    name: flow.name,
    bytesUp,
    bytesDown,
    durationMs: Date.now() - started,
    error,
  });
}
