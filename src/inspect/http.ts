// The host an HTTP/1 request names: its Host header, or the authority of an absolute-form or CONNECT
// target (RFC 9112 §3.2). parseHttpHost reads the first request of a connection; HttpRequestFramer
// follows all the requests after it (keep-alive, pipelining), so that each one's host is checked.

export type HostResult = { status: 'incomplete' } | { status: 'invalid'; reason: string } | { status: 'ok'; host: string };

const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.([01])$/;

/** True while `start` could still be the beginning of an HTTP/1 request line. */
export function looksLikeHttp(start: Buffer): boolean {
  const head = start.subarray(0, 16).toString('latin1');
  // A method is any token (RFC 9110 §9.1): some servers take lower-case or unusual ones.
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,15}( |$)/.test(head) && (head.length < 16 || head.includes(' '));
}

export function parseHttpHost(stream: Buffer): HostResult {
  const end = stream.indexOf('\r\n\r\n');
  if (end < 0) return { status: 'incomplete' };
  const head = parseRequestHead(stream.subarray(0, end).toString('latin1'));
  return head.status === 'ok' ? { status: 'ok', host: head.host } : head;
}

/** The host of an authority ("Example.com:8080" → "example.com", "[2001:db8::1]:80" → "2001:db8::1"). */
function hostOf(authority: string): string | null {
  const withoutUser = authority.slice(authority.lastIndexOf('@') + 1);
  const m = /^\[([0-9a-fA-F:.]+)\](?::\d*)?$/.exec(withoutUser) ?? /^([^:[\]\s]+)(?::\d*)?$/.exec(withoutUser);
  if (!m) return null;
  const host = m[1].toLowerCase();
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

/** The parts of a request head the framer needs: its host, how its body is framed, whether it may switch protocols. */
export type RequestHead =
  | { status: 'invalid'; reason: string }
  | { status: 'ok'; host: string; body: { kind: 'length'; length: number } | { kind: 'chunked' }; switches: boolean };

const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/;

/**
 * Parses a request head (without its final CRLFCRLF). Strict where servers disagree, so that the
 * framer and the server can't see different requests: lines end in CRLF only (a bare CR or LF is
 * refused), no obsolete line folding, one Host, one Content-Length of digits, Transfer-Encoding only
 * "chunked" and never with Content-Length or in HTTP/1.0.
 */
export function parseRequestHead(head: string): RequestHead {
  const lines = head.split('\r\n');
  if (lines.some((l) => l.includes('\r') || l.includes('\n'))) return { status: 'invalid', reason: 'bare CR or LF in the request head' };
  const m = REQUEST_LINE.exec(lines[0]);
  if (!m) return { status: 'invalid', reason: 'not an HTTP/1 request line' };
  const [, method, target, minor] = m;
  const hosts: string[] = [];
  const lengths: string[] = [];
  const codings: string[] = [];
  let upgrade = false;
  for (const line of lines.slice(1)) {
    const h = HEADER_LINE.exec(line);
    if (!h) return { status: 'invalid', reason: 'malformed header line' };
    const name = h[1].toLowerCase();
    if (name === 'host') hosts.push(h[2]);
    else if (name === 'content-length') lengths.push(h[2]);
    else if (name === 'transfer-encoding') codings.push(h[2]);
    else if (name === 'upgrade') {
      if (/(^|[\s,])h2c(\s|,|$)/i.test(h[2])) return { status: 'invalid', reason: 'HTTP/2 cleartext upgrade (its requests could name any host unseen)' };
      upgrade = true;
    }
  }
  if (hosts.length > 1) return { status: 'invalid', reason: 'several Host headers' };
  const targetAuthority = method === 'CONNECT' ? target : /^[a-z][a-z0-9+.-]*:\/\/([^/?#]+)/i.exec(target)?.[1];
  const names = [hosts[0], targetAuthority].filter((a): a is string => a !== undefined).map(hostOf);
  if (names.length === 0) return { status: 'invalid', reason: 'no Host header' };
  if (names.some((n) => n === null)) return { status: 'invalid', reason: 'malformed host' };
  if (names.length === 2 && names[0] !== names[1]) return { status: 'invalid', reason: 'Host header and request target name different hosts' };
  const switches = upgrade || method === 'CONNECT';
  if (codings.length) {
    if (codings.length > 1 || codings[0].toLowerCase() !== 'chunked') return { status: 'invalid', reason: 'Transfer-Encoding other than chunked' };
    if (lengths.length) return { status: 'invalid', reason: 'both Transfer-Encoding and Content-Length' };
    if (minor === '0') return { status: 'invalid', reason: 'Transfer-Encoding in an HTTP/1.0 request' };
    return { status: 'ok', host: names[0]!, body: { kind: 'chunked' }, switches };
  }
  if (lengths.length > 1) return { status: 'invalid', reason: 'several Content-Length headers' };
  if (lengths.length && !/^\d{1,15}$/.test(lengths[0])) return { status: 'invalid', reason: 'malformed Content-Length' };
  return { status: 'ok', host: names[0]!, body: { kind: 'length', length: lengths.length ? Number(lengths[0]) : 0 }, switches };
}

type FramerState = 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'switch-pending' | 'passthrough' | 'failed';

const MAX_LINE = 4096;

/**
 * Follows the requests of an HTTP/1 connection as the client sends them, so that every request's
 * host is checked, not only the first one's (keep-alive, pipelining). Request heads are collected up
 * to their CRLFCRLF and checked; bodies are skipped by count (Content-Length, or chunk by chunk with
 * their size lines and trailers), without copying them. Anything that doesn't frame cleanly is an
 * error: the forwarder resets the flow rather than guess where the next request starts.
 *
 * After a request that may switch protocols (an Upgrade header, CONNECT) and whose host passed, the
 * next bytes decide: if they start like an HTTP request the server did not switch and framing goes
 * on; otherwise (WebSocket frames, a tunnelled TLS stream) inspection ends. HTTP/2 cleartext upgrades
 * are refused: their requests could name any host.
 */
export class HttpRequestFramer {
  private state: FramerState = 'head';
  private head = '';
  private line = '';
  private trailerBytes = 0;
  private left = 0;
  private pending: RequestHead & { status: 'ok' } = { status: 'ok', host: '', body: { kind: 'length', length: 0 }, switches: false };

  /** `check` answers null for a host the flow may name, else why not. */
  constructor(
    private readonly check: (host: string) => string | null,
    private readonly maxHead = 32 * 1024,
  ) {}

  /** True once inspection has ended (the connection switched protocols): later bytes need not be pushed. */
  get done(): boolean {
    return this.state === 'passthrough';
  }

  /** Feeds the next bytes from the client; null while they frame and name allowed hosts, else the reason to reset. */
  push(chunk: Buffer): string | null {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.state) {
        case 'passthrough':
          return null;
        case 'failed':
          return 'the connection already failed inspection';
        case 'head': {
          const before = this.head.length;
          const room = this.maxHead + 4 - before;
          const end = Math.min(chunk.length, pos + room);
          this.head += chunk.toString('latin1', pos, end);
          const at = this.head.indexOf('\r\n\r\n', Math.max(0, before - 3));
          if (at < 0) {
            if (this.head.length > this.maxHead) return this.fail(`request head longer than ${this.maxHead} bytes`);
            pos = end;
            break;
          }
          pos += at + 4 - before;
          const head = this.head.slice(0, at).replace(/^(\r\n)+/, '');
          this.head = '';
          if (head === '') break; // empty lines between requests
          const error = this.onHead(head);
          if (error) return this.fail(error);
          break;
        }
        case 'body':
        case 'chunk-data': {
          const n = Math.min(this.left, chunk.length - pos);
          pos += n;
          this.left -= n;
          if (this.left === 0) this.state = this.state === 'body' ? this.afterRequest() : 'chunk-end';
          break;
        }
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const nl = chunk.indexOf(0x0a, pos);
          const end = nl < 0 ? chunk.length : nl + 1;
          this.line += chunk.toString('latin1', pos, Math.min(end, pos + MAX_LINE + 2));
          if (this.line.length > MAX_LINE + 1) return this.fail('chunk line too long');
          pos = end;
          if (nl < 0) break;
          const line = this.line;
          this.line = '';
          if (!line.endsWith('\r\n') || line.indexOf('\r') !== line.length - 2) return this.fail('bare CR or LF in chunked framing');
          const error = this.onLine(line.slice(0, -2));
          if (error) return this.fail(error);
          break;
        }
        case 'switch-pending': {
          // Empty lines mean more HTTP; the first other bytes tell whether the protocol switched.
          while (pos < chunk.length && this.line === '' && (chunk[pos] === 0x0d || chunk[pos] === 0x0a)) pos++;
          if (pos === chunk.length) break;
          const take = Math.min(chunk.length, pos + 16 - this.line.length);
          this.line += chunk.toString('latin1', pos, take);
          pos = take;
          const start = Buffer.from(this.line, 'latin1');
          if (!looksLikeHttp(start)) {
            this.line = '';
            this.state = 'passthrough';
            return null;
          }
          if (this.line.length < 16 && !this.line.includes(' ')) break; // undecided: wait for more
          // The server did not switch: frame on, from the bytes held here.
          this.line = '';
          this.state = 'head';
          const error = this.push(start);
          if (error) return error;
          break;
        }
      }
    }
    return null;
  }

  private onHead(text: string): string | null {
    const head = parseRequestHead(text);
    if (head.status === 'invalid') return `malformed HTTP request: ${head.reason}`;
    const refused = this.check(head.host);
    if (refused) return refused;
    this.pending = head;
    if (head.body.kind === 'chunked') this.state = 'chunk-size';
    else if (head.body.length > 0) {
      this.left = head.body.length;
      this.state = 'body';
    } else this.state = this.afterRequest();
    return null;
  }

  private onLine(line: string): string | null {
    if (this.state === 'chunk-end') {
      if (line !== '') return 'chunk data longer than its size';
      this.state = 'chunk-size';
    } else if (this.state === 'chunk-size') {
      const m = /^([0-9a-fA-F]{1,13})[ \t]*(;.*)?$/.exec(line);
      if (!m) return 'malformed chunk size';
      const size = parseInt(m[1], 16);
      if (size === 0) {
        this.trailerBytes = 0;
        this.state = 'trailers';
      } else {
        this.left = size;
        this.state = 'chunk-data';
      }
    } else if (line === '') {
      this.state = this.afterRequest();
    } else {
      this.trailerBytes += line.length + 2;
      if (this.trailerBytes > this.maxHead) return 'trailers too long';
      if (!HEADER_LINE.test(line)) return 'malformed trailer line';
    }
    return null;
  }

  private afterRequest(): FramerState {
    return this.pending.switches ? 'switch-pending' : 'head';
  }

  private fail(reason: string): string {
    this.state = 'failed';
    return reason;
  }
}
