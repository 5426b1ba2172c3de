// How the forwarder reaches an allowed destination: a direct host socket, or through an upstream proxy
// (`--upstream-proxy`) when the host may only go out that way. The policy has decided before any dial;
// a proxy only changes the road, never the verdict. A pinned flow is dialled before its SNI / Host check
// (tcp.ts), but nothing of the sandbox's is written to the socket unless the check passed.
//
//   http://[user:pass@]host:port     HTTP CONNECT (RFC 9110 §9.3.6): "CONNECT addr:port", a 2xx
//                                    status line and headers, then the tunnel
//   socks5://[user:pass@]host:port   SOCKS5 (RFC 1928, username/password RFC 1929): greeting, optional
//                                    auth, CONNECT with the address, a reply, then the tunnel
//
// A direct dial for a relay that only moves bytes takes a native socket (dialRelay, host-socket.ts): no
// Node stream per connection.
//
// We always hand the proxy the IP address the policy decided on, not a name: the proxy must not
// resolve the name anew to an address nobody allowed. Failures carry errno-like codes
// (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT, EPROXY) so the forwarder refuses the sandbox's
// connection the same way it does for a direct dial.
import net from 'node:net';
import { native } from '../../../native/addon/index.js';
import { TapboxError } from '../../errors.js';
import { ipBytes, parseIp, type IpAddr } from '../policy/address.js';
import { NativeHostSocket, type RelaySocket } from './host-socket.js';

export interface ProxySpec {
  kind: 'http' | 'socks5';
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** The URL as given, with the password masked: for logs and messages. */
  display: string;
}

/** Parses `--upstream-proxy URL`; throws TapboxError EUSAGE with the fix on a bad one. */
export function parseProxyUrl(text: string): ProxySpec {
  const bad = (why: string): never => {
    throw new TapboxError('EUSAGE', `--upstream-proxy "${text}" ${why}; give http://HOST:PORT (HTTP CONNECT) or socks5://HOST:PORT, optionally with USER:PASS@ before the host.`);
  };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return bad('is not a URL');
  }
  const kind = url.protocol === 'http:' ? 'http' : url.protocol === 'socks5:' || url.protocol === 'socks5h:' ? 'socks5' : null;
  if (!kind) return bad(`has the scheme "${url.protocol.replace(/:$/, '')}", which is not supported`);
  if (url.pathname && url.pathname !== '/' && url.pathname !== '') bad('has a path');
  if (url.search || url.hash) bad('has a query or fragment');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!host) bad('has no host');
  // URL drops the default port (80 for http:); socks5 has no default in URL, so it must be given.
  const port = url.port ? Number(url.port) : kind === 'http' ? 80 : bad('has no port');
  const username = url.username ? decodeURIComponent(url.username) : undefined;
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  if (kind === 'socks5' && ((username?.length ?? 0) > 255 || (password?.length ?? 0) > 255)) bad('has a user or password longer than 255 bytes (SOCKS5\'s limit)');
  const shown = new URL(text);
  if (shown.password) shown.password = '***';
  return { kind, host, port, username, password, display: shown.toString().replace(/\/$/, '') };
}

/**
 * TCP keepalive idle time of relayed host sockets (here, and the clients of published ports): a peer
 * that vanished without a FIN or RST (a dead host, a NAT that forgot the flow) is found out after this
 * much silence plus the kernel's probes (libuv: 10 probes 1 s apart), and the sandbox's side is reset
 * instead of waiting forever.
 */
export const HOST_KEEPALIVE_MS = 60_000;

export interface DialOptions {
  proxy?: ProxySpec;
  timeoutMs: number;
  /** Keepalive idle time of the socket (to the destination, or to the proxy), ms; default HOST_KEEPALIVE_MS. */
  keepAliveMs?: number;
  /**
   * Holds the connect's cancel function while it is in progress (a plain set rather than an
   * AbortSignal: one dial per relayed connection, and a signal costs more than the rest of the dial's
   * JS). Calling it abandons the dial (ECANCELED): tapbox is stopping and must not wait out the timeout.
   */
  cancellers?: Set<() => void>;
}

/** A connected socket to host:port, directly or through the proxy; allowHalfOpen is set. */
export function dial(host: string, port: number, o: DialOptions): Promise<net.Socket> {
  const keepAliveMs = o.keepAliveMs ?? HOST_KEEPALIVE_MS;
  if (!o.proxy) return connectNet(host, port, o.timeoutMs, keepAliveMs, o.cancellers);
  const proxy = o.proxy;
  const deadline = Date.now() + o.timeoutMs;
  return connectNet(proxy.host, proxy.port, o.timeoutMs, keepAliveMs, o.cancellers).then(
    (socket) => {
      const left = Math.max(1, deadline - Date.now());
      const handshake = proxy.kind === 'http' ? httpConnect(socket, proxy, host, port) : socks5Connect(socket, proxy, host, port);
      return withTimeout(handshake, left, socket).then(
        () => socket,
        (err: Error) => {
          socket.destroy();
          throw err;
        },
      );
    },
    (err: NodeJS.ErrnoException) => {
      throw proxyError('EPROXY', `cannot reach the upstream proxy ${proxy.display}: ${err.code ?? err.message}`);
    },
  );
}

/**
 * A connected socket for a relay that only moves bytes (no inspection): the native one (host-socket.ts)
 * when the dial is direct, else dial()'s.
 */
export function dialRelay(host: string, port: number, o: DialOptions): Promise<RelaySocket> {
  if (o.proxy || !native?.HostSockets) return dial(host, port, o);
  return connectTcp(() => NativeHostSocket.connect(host, port, o.keepAliveMs ?? HOST_KEEPALIVE_MS), o.timeoutMs, undefined, o.cancellers);
}

function connectNet(host: string, port: number, timeoutMs: number, keepAliveMs: number, cancellers?: Set<() => void>): Promise<net.Socket> {
  return connectTcp(() => net.connect({ host, port, allowHalfOpen: true }), timeoutMs, keepAliveMs, cancellers);
}

/** Starts `open()`'s connect and waits for it, within `timeoutMs`; net.Socket's keepalive is set once connected. */
function connectTcp<S extends RelaySocket>(open: () => S, timeoutMs: number, keepAliveMs: number | undefined, cancellers?: Set<() => void>): Promise<S> {
  return new Promise((resolve, reject) => {
    const socket = open();
    const fail = (err: Error) => {
      clearTimeout(timer);
      cancellers?.delete(cancel);
      socket.destroy();
      reject(err);
    };
    const cancel = () => fail(proxyError('ECANCELED', 'the dial was abandoned: tapbox is stopping'));
    const timer = setTimeout(() => fail(proxyError('ETIMEDOUT', 'connect timed out')), timeoutMs);
    cancellers?.add(cancel);
    socket.once('error', fail);
    socket.once('connect', () => {
      clearTimeout(timer);
      cancellers?.delete(cancel);
      socket.off('error', fail);
      if (keepAliveMs !== undefined && socket instanceof net.Socket) socket.setKeepAlive(true, keepAliveMs);
      resolve(socket);
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, socket: net.Socket): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(proxyError('ETIMEDOUT', 'the upstream proxy did not answer in time'));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function proxyError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/**
 * Reads from `socket` until `complete(buffer)` returns how many bytes the answer took (or -1 for not
 * yet); what follows the answer (the first tunnelled bytes) is put back with unshift.
 */
function readAnswer(socket: net.Socket, complete: (buf: Buffer) => number, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const cleanup = () => {
      socket.off('data', onData).off('end', onEnd).off('error', onError).off('close', onEnd);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let used: number;
      try {
        used = complete(buf);
      } catch (e) {
        cleanup();
        return reject(e);
      }
      if (used < 0) {
        if (buf.length > maxBytes) {
          cleanup();
          reject(proxyError('EPROXY', `the upstream proxy answered more than ${maxBytes} bytes without finishing its reply`));
        }
        return;
      }
      cleanup();
      socket.pause();
      if (used < buf.length) socket.unshift(buf.subarray(used));
      resolve(buf.subarray(0, used));
    };
    const onEnd = () => {
      cleanup();
      reject(proxyError('EPROXY', 'the upstream proxy closed the connection during the handshake'));
    };
    const onError = (err: NodeJS.ErrnoException) => {
      cleanup();
      reject(proxyError('EPROXY', `upstream proxy: ${err.code ?? err.message}`));
    };
    socket.on('data', onData).on('end', onEnd).on('close', onEnd).on('error', onError);
    socket.resume(); // paused by the previous answer of the handshake
  });
}

async function httpConnect(socket: net.Socket, proxy: ProxySpec, host: string, port: number): Promise<void> {
  const authority = parseIp(host)?.family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
  if (proxy.username !== undefined) {
    head += `Proxy-Authorization: Basic ${Buffer.from(`${proxy.username}:${proxy.password ?? ''}`).toString('base64')}\r\n`;
  }
  socket.write(`${head}\r\n`);
  const answer = await readAnswer(socket, (buf) => {
    const end = buf.indexOf('\r\n\r\n');
    return end < 0 ? -1 : end + 4;
  }, 16 * 1024);
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer.toString('latin1'));
  if (!status) throw proxyError('EPROXY', 'the upstream proxy did not answer CONNECT with an HTTP status line');
  const code = Number(status[1]);
  if (code >= 200 && code < 300) return;
  // 502/503/504 are the proxy's "could not reach it"; 403/407 are its own refusals.
  const errno = code === 502 || code === 503 ? 'ECONNREFUSED' : code === 504 ? 'ETIMEDOUT' : 'EPROXY';
  throw proxyError(errno, `the upstream proxy answered CONNECT ${authority} with ${code}${code === 407 ? ' (proxy authentication required: put USER:PASS@ in the URL)' : ''}`);
}

const SOCKS_REPLIES: Record<number, [string, string]> = {
  1: ['EPROXY', 'general SOCKS server failure'],
  2: ['EPROXY', 'connection not allowed by ruleset'],
  3: ['ENETUNREACH', 'network unreachable'],
  4: ['EHOSTUNREACH', 'host unreachable'],
  5: ['ECONNREFUSED', 'connection refused'],
  6: ['ETIMEDOUT', 'TTL expired'],
  7: ['EPROXY', 'command not supported'],
  8: ['EPROXY', 'address type not supported'],
};

async function socks5Connect(socket: net.Socket, proxy: ProxySpec, host: string, port: number): Promise<void> {
  const withAuth = proxy.username !== undefined;
  socket.write(Buffer.from(withAuth ? [5, 2, 0, 2] : [5, 1, 0]));
  const choice = await readAnswer(socket, (b) => (b.length >= 2 ? 2 : -1), 2);
  if (choice[0] !== 5) throw proxyError('EPROXY', 'the upstream proxy does not speak SOCKS5');
  if (choice[1] === 2 && withAuth) {
    const user = Buffer.from(proxy.username ?? '');
    const pass = Buffer.from(proxy.password ?? '');
    socket.write(Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([pass.length]), pass]));
    const auth = await readAnswer(socket, (b) => (b.length >= 2 ? 2 : -1), 2);
    if (auth[1] !== 0) throw proxyError('EPROXY', 'the upstream SOCKS5 proxy refused the user and password');
  } else if (choice[1] !== 0) {
    throw proxyError('EPROXY', withAuth ? 'the upstream SOCKS5 proxy accepts neither user/password nor no authentication' : 'the upstream SOCKS5 proxy wants authentication: put USER:PASS@ in the URL');
  }
  const ip = parseIp(host);
  const addr = ip ? ipBytes(ip) : Buffer.from(host);
  const atyp = ip ? (ip.family === 4 ? 1 : 4) : 3;
  const request = Buffer.concat([
    Buffer.from([5, 1, 0, atyp]),
    ip ? addr : Buffer.from([addr.length]),
    ip ? Buffer.alloc(0) : addr,
    Buffer.from([port >> 8, port & 0xff]),
  ]);
  socket.write(request);
  await readAnswer(socket, (b) => {
    if (b.length < 5) return -1;
    if (b[0] !== 5) throw proxyError('EPROXY', 'the upstream proxy sent a malformed SOCKS5 reply');
    if (b[1] !== 0) {
      const [code, what] = SOCKS_REPLIES[b[1]!] ?? ['EPROXY', `reply ${b[1]}`];
      throw proxyError(code, `the upstream SOCKS5 proxy could not connect to ${host}:${port}: ${what}`);
    }
    const len = b[3] === 1 ? 4 : b[3] === 4 ? 16 : b[3] === 3 ? 1 + b[4]! : -1;
    if (len < 0) throw proxyError('EPROXY', 'the upstream proxy sent a malformed SOCKS5 reply');
    const total = 4 + len + 2;
    return b.length >= total ? total : -1;
  }, 4 + 1 + 255 + 2);
}
