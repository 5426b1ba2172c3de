// The host an HTTP/1 request names: its Host header, or the authority of an absolute-form or CONNECT
// target (RFC 9112 §3.2). parseHttpHost reads the first request of a connection; HttpRequestFramer
// follows all the requests after it (keep-alive, pipelining), so that each one's host is checked.
import { HttpResponseTracker } from './http-response.js';
import { RequestLineSniffer } from './request-line.js';

export type HostResult = { status: 'incomplete' } | { status: 'invalid'; reason: string } | { status: 'ok'; host: string };

const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.([01])$/;

export function parseHttpHost(stream: Buffer): HostResult {
  const end = stream.indexOf('\r\n\r\n');
  if (end < 0) return { status: 'incomplete' };
  const head = parseRequestHead(stream.subarray(0, end).toString('latin1'));
  return head.status === 'ok' ? { status: 'ok', host: head.host } : head;
}

/** The host of an authority ("Example.com:8080" → "example.com", "[2001:db8::1]:80" → "2001:db8::1"). */
function hostOf(authority: string): string | null {
  // Userinfo ("evil.test@good.test") or a backslash ("evil.test\@good.test": URL parsers end the
  // authority there) make parsers disagree on the host: refused outright.
  if (/[@\\]/.test(authority)) return null;
  const m = /^\[([0-9a-fA-F:.]+)\](?::\d*)?$/.exec(authority) ?? /^([^:[\]\s]+)(?::\d*)?$/.exec(authority);
  if (!m) return null;
  const host = m[1].toLowerCase();
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

/** The parts of a request head the framer needs: its host, how its body is framed, whether it may switch protocols. */
export type RequestHead =
  | { status: 'invalid'; reason: string }
  | { status: 'ok'; method: string; host: string; body: { kind: 'length'; length: number } | { kind: 'chunked' }; switches: boolean };

/** Methods whose body servers disagree about: many ignore it and read it as the next request (RFC 9110 §9.3). */
const BODYLESS = new Set(['GET', 'HEAD', 'TRACE', 'CONNECT']);
/** Of those, the ones `allowGetBody` lets carry a body (search APIs send GET with a JSON body). */
const GET_BODY = new Set(['GET', 'HEAD']);

export interface HeadOptions {
  /** Let GET and HEAD requests carry a body (framed by Content-Length or chunked); off by default. */
  allowGetBody?: boolean;
}

const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/;

/**
 * Parses a request head (without its final CRLFCRLF). Strict where servers disagree, so that the
 * framer and the server can't see different requests: lines end in CRLF only (a bare CR or LF is
 * refused), no obsolete line folding, one Host, one Content-Length of digits, Transfer-Encoding only
 * "chunked" and never with Content-Length or in HTTP/1.0. No body on GET, HEAD, TRACE or CONNECT (a
 * server that ignores it would read it as the next request; `allowGetBody` lets GET and HEAD have
 * one), nor on a request that may switch protocols (servers disagree where the new protocol starts).
 */
export function parseRequestHead(head: string, o: HeadOptions = {}): RequestHead {
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
  let body: { kind: 'length'; length: number } | { kind: 'chunked' };
  if (codings.length) {
    if (codings.length > 1 || codings[0].toLowerCase() !== 'chunked') return { status: 'invalid', reason: 'Transfer-Encoding other than chunked' };
    if (lengths.length) return { status: 'invalid', reason: 'both Transfer-Encoding and Content-Length' };
    if (minor === '0') return { status: 'invalid', reason: 'Transfer-Encoding in an HTTP/1.0 request' };
    body = { kind: 'chunked' };
  } else {
    if (lengths.length > 1) return { status: 'invalid', reason: 'several Content-Length headers' };
    if (lengths.length && !/^\d{1,15}$/.test(lengths[0])) return { status: 'invalid', reason: 'malformed Content-Length' };
    body = { kind: 'length', length: lengths.length ? Number(lengths[0]) : 0 };
  }
  const hasBody = body.kind === 'chunked' || body.length > 0;
  if (hasBody && switches) return { status: 'invalid', reason: 'a body on a request that may switch protocols' };
  if (hasBody && BODYLESS.has(method.toUpperCase()) && !(o.allowGetBody && GET_BODY.has(method.toUpperCase())))
    return { status: 'invalid', reason: `a body on a ${method} request (servers that ignore it read it as the next request; --http-allow-get-body allows it on GET and HEAD)` };
  return { status: 'ok', method, host: names[0]!, body, switches };
}

type FramerState = 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'await-switch' | 'passthrough' | 'failed';

export interface FramerOptions extends HeadOptions {
  /** The first bytes may be another protocol (sniffing a flow's first bytes). */
  sniffing?: boolean;
}

const MAX_LINE = 4096;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Follows the requests of an HTTP/1 connection as the client sends them, so that every request's
 * host is checked, not only the first one's (keep-alive, pipelining). The bytes a server could take
 * for a request head are held back until the whole head (up to its CRLFCRLF) has arrived and its
 * host passed: `drain()` gives the bytes that may go on. A bare LF or CR in a head, or in the chunked
 * framing, fails at once (lenient servers end lines there). Bodies are let through by count
 * (Content-Length, or chunk by chunk with their size lines and trailers), without copying them.
 * Anything that doesn't frame cleanly is an error: the forwarder resets the flow rather than guess
 * where the next request starts.
 *
 * After a request that may switch protocols (an Upgrade header, CONNECT), the client's next bytes are
 * held until the server's answer, which `pushResponse` follows (HttpResponseTracker): a 101, or a 2xx to
 * the CONNECT, ends inspection; any other answer means the server still reads requests, so the held
 * bytes are framed and checked as requests. HTTP/2 cleartext upgrades are refused: their requests could
 * name any host. When sniffing a flow's first bytes, they end inspection only when no common server
 * could read them as a request (RequestLineSniffer).
 */
export class HttpRequestFramer {
  private state: FramerState = 'head';
  /** Until the first line of the stream shows it is a request, the bytes may be another protocol. */
  private sniffing: RequestLineSniffer | null;
  private held: Buffer[] = [];
  private heldLen = 0;
  private out: Buffer[] = [];
  private cr = false;
  private lineLen = 0;
  private lines = 0;
  private line = '';
  private trailerBytes = 0;
  private left = 0;
  /** The server's answer to the last request that may switch protocols, once known. */
  private switched: boolean | null = null;
  private waiting: Buffer[] = [];
  private waitingLen = 0;
  private readonly responses = new HttpResponseTracker((switched) => (this.switched = switched));
  private readonly headOptions: HeadOptions;
  /** Bytes looked at one by one so far (for tests: each byte is scanned once). */
  scanned = 0;

  /** `check` answers null for a host the flow may name, else why not. */
  constructor(
    private readonly check: (host: string) => string | null,
    private readonly maxHead = 32 * 1024,
    o: FramerOptions = {},
  ) {
    this.sniffing = o.sniffing ? new RequestLineSniffer() : null;
    this.headOptions = { allowGetBody: o.allowGetBody };
  }

  /** True once inspection has ended (the bytes are not, or no longer, HTTP requests): later bytes need not be pushed. */
  get done(): boolean {
    return this.state === 'passthrough';
  }

  /** True while the client's bytes are held for the server's answer to a request that may switch protocols. */
  get waitingForServer(): boolean {
    return this.state === 'await-switch';
  }

  /** The bytes pushed so far that passed inspection and may be relayed, in order (views, not copies). */
  drain(): Buffer[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  /**
   * Feeds the next bytes from the server (the responses). Null, or the reason to reset when bytes
   * the client sent after a request that may switch protocols turn out, the server not having
   * switched, not to be requests that may pass. Drain afterwards: held bytes may have been released.
   */
  pushResponse(chunk: Buffer): string | null {
    if (this.state === 'passthrough' || this.state === 'failed') return null;
    this.responses.push(chunk);
    return this.resume();
  }

  /** The server spoke before the client's first request: its responses can't be followed. */
  responsesUnknown(): void {
    this.responses.lose();
  }

  /** Feeds the next bytes from the client; null while they frame and name allowed hosts, else the reason to reset. */
  push(chunk: Buffer): string | null {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.state) {
        case 'passthrough':
          this.out.push(chunk.subarray(pos));
          return null;
        case 'failed':
          return 'the connection already failed inspection';
        case 'await-switch':
          this.waiting.push(chunk.subarray(pos));
          this.waitingLen += chunk.length - pos;
          if (this.waitingLen > this.maxHead) return this.fail(`more than ${this.maxHead} bytes sent before the server answered a request to switch protocols`);
          return this.resume();
        case 'head': {
          const r = this.sniffing ? this.sniffHead(chunk, pos) : this.scanHead(chunk, pos);
          if (typeof r === 'string') return this.fail(r);
          pos = r;
          break;
        }
        case 'body':
        case 'chunk-data': {
          const n = Math.min(this.left, chunk.length - pos);
          this.out.push(chunk.subarray(pos, pos + n));
          pos += n;
          this.left -= n;
          if (this.left === 0) this.state = this.state === 'body' ? 'head' : 'chunk-end';
          break;
        }
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const nl = chunk.indexOf(LF, pos);
          const end = nl < 0 ? chunk.length : nl + 1;
          this.scanned += end - pos;
          this.line += chunk.toString('latin1', pos, Math.min(end, pos + MAX_LINE + 2));
          if (this.line.length > MAX_LINE + 1) return this.fail('chunk line too long');
          this.hold(chunk.subarray(pos, end));
          pos = end;
          if (nl < 0) break;
          const line = this.line;
          this.line = '';
          if (!line.endsWith('\r\n') || line.indexOf('\r') !== line.length - 2) return this.fail('bare CR or LF in chunked framing');
          const error = this.onLine(line.slice(0, -2));
          if (error) return this.fail(error);
          this.release();
          break;
        }
      }
    }
    return null;
  }

  /** Once the server answered a request that may switch protocols: passes or frames what waited. */
  private resume(): string | null {
    if (this.state !== 'await-switch' || this.switched === null) return null;
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingLen = 0;
    this.state = this.switched ? 'passthrough' : 'head';
    this.switched = null;
    for (const bytes of waiting) {
      const error = this.push(bytes);
      if (error) return error;
    }
    return null;
  }

  /** Reads the stream's first line until it shows whether it is a request; then frames it as one, or lets it all pass. */
  private sniffHead(chunk: Buffer, pos: number): number | string {
    const sniffer = this.sniffing!;
    const start = pos;
    for (; pos < chunk.length; pos++) {
      this.scanned++;
      if (this.heldLen + pos - start >= this.maxHead) return `request head longer than ${this.maxHead} bytes`;
      const verdict = sniffer.push(chunk[pos]);
      if (verdict === 'other') {
        this.hold(chunk.subarray(start));
        this.release();
        this.state = 'passthrough';
        return chunk.length;
      }
      if (verdict === 'request') {
        // Framed strictly from the start: leading whitespace other than CRLF fails there.
        this.sniffing = null;
        const replay = Buffer.concat([...this.held, chunk.subarray(start, pos + 1)]);
        this.held = [];
        this.heldLen = 0;
        const scanned = this.scanned;
        const r = this.scanHead(replay, 0);
        this.scanned = scanned;
        if (typeof r === 'string') return r;
        return pos + 1;
      }
    }
    this.hold(chunk.subarray(start));
    return pos;
  }

  /** Reads head bytes from `pos`; answers where it stopped, or why the head fails. */
  private scanHead(chunk: Buffer, pos: number): number | string {
    let start = pos;
    for (; pos < chunk.length; pos++) {
      this.scanned++;
      const b = chunk[pos];
      if (this.cr) {
        if (b !== LF) return 'bare CR in the request head';
        this.cr = false;
        if (this.lineLen > 0) {
          this.lines++;
          this.lineLen = 0;
          continue;
        }
        if (this.lines === 0) {
          // An empty line between requests: let it go on.
          this.hold(chunk.subarray(start, pos + 1));
          this.release();
          start = pos + 1;
          continue;
        }
        this.hold(chunk.subarray(start, pos + 1));
        return this.endHead(pos + 1);
      }
      if (this.heldLen + pos - start >= this.maxHead + 4) return `request head longer than ${this.maxHead} bytes`;
      if (b === CR) this.cr = true;
      else if (b === LF) return 'bare LF in the request head';
      else this.lineLen++;
    }
    this.hold(chunk.subarray(start, pos));
    return pos;
  }

  private endHead(pos: number): number | string {
    const text = Buffer.concat(this.held).toString('latin1');
    this.lines = 0;
    const error = this.onHead(text.slice(0, -4));
    if (error) return error;
    this.release();
    return pos;
  }

  private hold(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.held.push(bytes);
    this.heldLen += bytes.length;
  }

  private release(): void {
    for (const b of this.held) this.out.push(b);
    this.held = [];
    this.heldLen = 0;
  }

  private onHead(text: string): string | null {
    const head = parseRequestHead(text, this.headOptions);
    if (head.status === 'invalid') return `malformed HTTP request: ${head.reason}`;
    const refused = this.check(head.host);
    if (refused) return refused;
    if (head.switches) this.state = 'await-switch';
    else if (head.body.kind === 'chunked') this.state = 'chunk-size';
    else if (head.body.length > 0) {
      this.left = head.body.length;
      this.state = 'body';
    } else this.state = 'head';
    this.responses.sent({ method: head.method.toUpperCase(), maySwitch: head.switches });
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
      this.state = 'head';
    } else {
      this.trailerBytes += line.length + 2;
      if (this.trailerBytes > this.maxHead) return 'trailers too long';
      if (!HEADER_LINE.test(line)) return 'malformed trailer line';
    }
    return null;
  }

  private fail(reason: string): string {
    this.state = 'failed';
    this.held = [];
    this.out = [];
    this.waiting = [];
    return reason;
  }
}
