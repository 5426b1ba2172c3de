// Follows the responses of an HTTP/1 connection, as the server sends them, far enough to tell whether
// the server switched protocols: a 101 to a request with Upgrade, a 2xx to a CONNECT (RFC 9110 §7.8,
// §9.3.6). Each response is framed by RFC 9112 §6.3: none for HEAD, 1xx, 204 and 304; chunked or
// Content-Length; else to the end of the connection. A response it can't frame makes it "lost": from
// then on no request counts as switched, so the client's bytes stay framed as requests (fail closed).

/** A request the framer let through, in the order sent. */
export interface SentRequest {
  method: string;
  /** It carried Upgrade, or is a CONNECT: its response may switch protocols. */
  maySwitch: boolean;
}

type State = 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'to-close' | 'switched' | 'lost';

const MAX_HEAD = 64 * 1024;
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?:[ \t].*)?$/;

export class HttpResponseTracker {
  private readonly queue: SentRequest[] = [];
  private state: State = 'head';
  private line = '';
  private lines: string[] = [];
  private headBytes = 0;
  private left = 0;

  /** `decided(switched)`: called once the response to a request that may switch is known (or never will be). */
  constructor(private readonly decided: (switched: boolean) => void) {}

  /** True when the server switched protocols: its later bytes are not HTTP. */
  get switched(): boolean {
    return this.state === 'switched';
  }

  /** Records a request sent to the server. */
  sent(request: SentRequest): void {
    this.queue.push(request);
    if (this.state === 'lost' || this.state === 'to-close') this.settleAll();
  }

  /** Marks the responses as impossible to follow (the server spoke before any request, say). */
  lose(): void {
    this.state = 'lost';
    this.settleAll();
  }

  /** Feeds the next bytes from the server. */
  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.state) {
        case 'switched':
        case 'lost':
        case 'to-close':
          return;
        case 'body':
        case 'chunk-data': {
          const n = Math.min(this.left, chunk.length - pos);
          pos += n;
          this.left -= n;
          if (this.left === 0) this.state = this.state === 'body' ? 'head' : 'chunk-end';
          break;
        }
        default: {
          const nl = chunk.indexOf(0x0a, pos);
          const end = nl < 0 ? chunk.length : nl + 1;
          this.headBytes += end - pos;
          if (this.headBytes > MAX_HEAD) return this.lose();
          this.line += chunk.toString('latin1', pos, end);
          pos = end;
          if (nl < 0) break;
          const line = this.line.replace(/\r?\n$/, '');
          this.line = '';
          this.onLine(line);
        }
      }
    }
  }

  private onLine(line: string): void {
    // The size limit is per head, per chunk line, per trailer section.
    if (this.state === 'chunk-size' || this.state === 'chunk-end') this.headBytes = 0;
    if (this.state === 'head') {
      if (line !== '' || this.lines.length === 0) {
        if (line !== '') this.lines.push(line);
        return;
      }
      const lines = this.lines;
      this.lines = [];
      this.headBytes = 0;
      return this.onHead(lines);
    }
    if (this.state === 'chunk-end') {
      if (line !== '') return this.lose();
      this.state = 'chunk-size';
    } else if (this.state === 'chunk-size') {
      const m = /^([0-9a-fA-F]{1,13})[ \t]*(?:;.*)?$/.exec(line);
      if (!m) return this.lose();
      this.left = parseInt(m[1], 16);
      this.state = this.left === 0 ? 'trailers' : 'chunk-data';
    } else if (line === '') {
      this.headBytes = 0;
      this.state = 'head';
    }
  }

  private onHead(lines: string[]): void {
    const status = STATUS_LINE.exec(lines[0]);
    const request = this.queue[0];
    if (!status || !request) return this.lose();
    const code = Number(status[1]);
    if (code === 101) {
      if (!request.maySwitch || request.method === 'CONNECT') return this.lose();
      this.state = 'switched';
      this.queue.shift();
      return this.decided(true);
    }
    if (code < 200) return; // an interim response: the final one follows
    this.queue.shift();
    if (request.method === 'CONNECT' && code < 300) {
      this.state = 'switched';
      return this.decided(true);
    }
    if (request.maySwitch) this.decided(false);
    const headers = lines.slice(1).map((l) => /^([^:]+):[ \t]*(.*?)[ \t]*$/.exec(l));
    if (headers.some((h) => h === null)) return this.lose();
    const values = (name: string) => headers.filter((h) => h![1].toLowerCase() === name).map((h) => h![2]);
    if (request.method === 'HEAD' || code === 204 || code === 304) return;
    const codings = values('transfer-encoding');
    const lengths = values('content-length');
    if (codings.length) {
      this.state = /(^|,)[ \t]*chunked[ \t]*$/i.test(codings.join(',')) ? 'chunk-size' : 'to-close';
    } else if (lengths.length) {
      if (new Set(lengths).size !== 1 || !/^\d{1,15}$/.test(lengths[0])) return this.lose();
      this.left = Number(lengths[0]);
      this.state = this.left > 0 ? 'body' : 'head';
    } else {
      this.state = 'to-close';
    }
    if (this.state === 'to-close') this.settleAll();
  }

  /** No further response can be followed: every request that may switch counts as not switched. */
  private settleAll(): void {
    const waiting = this.queue.splice(0).filter((r) => r.maySwitch);
    for (let i = 0; i < waiting.length; i++) this.decided(false);
  }
}
