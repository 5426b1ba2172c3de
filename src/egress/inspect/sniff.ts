// What the first bytes of a TCP stream say about where it is going: a TLS ClientHello's SNI, an HTTP/1
// request's host, or neither. StreamSniffer reads them as they arrive, each byte once.
import { HttpRequestFramer, type HeadOptions } from './http.js';
import { TlsClientHelloReader } from './tls.js';

export type StreamSniff =
  | { kind: 'incomplete' }
  | { kind: 'tls'; sni: string | null; ech: boolean }
  | { kind: 'http'; host: string }
  | { kind: 'unknown' }
  | { kind: 'invalid'; reason: string };

export function sniffStream(start: Buffer, maxHead?: number, o?: HeadOptions): StreamSniff {
  return new StreamSniffer(maxHead, o).push(start);
}

/**
 * Sniffs a stream pushed in pieces. A first byte 0x16 is a TLS record; anything else is read as an
 * HTTP/1 request by the framer (HttpRequestFramer) unless its first line shows that no common server
 * would read it as one (RequestLineSniffer: SSH's banner, SMTP's EHLO, git's pkt-line are other
 * protocols; leading whitespace, VT or NBSP between words, a version-less "GET /x" are requests, which
 * must then frame strictly). A bare LF or CR in a request head is invalid at once.
 */
export class StreamSniffer {
  private tls: TlsClientHelloReader | null = null;
  private http: HttpRequestFramer | null = null;
  private host: string | null = null;
  private result: StreamSniff = { kind: 'incomplete' };

  /** `o`: how request heads are judged (HeadOptions: whether GET may carry a body). */
  constructor(
    private readonly maxHead = 32 * 1024,
    private readonly o: HeadOptions = {},
  ) {}

  /** Bytes looked at so far (for tests: each byte once, however the stream is cut). */
  get scanned(): number {
    return (this.tls?.scanned ?? 0) + (this.http?.scanned ?? 0);
  }

  push(chunk: Buffer): StreamSniff {
    if (this.result.kind !== 'incomplete' || chunk.length === 0) return this.result;
    if (!this.tls && !this.http) {
      if (chunk[0] === 0x16) this.tls = new TlsClientHelloReader();
      else this.http = new HttpRequestFramer((host) => ((this.host ??= host), null), this.maxHead, { ...this.o, sniffing: true });
    }
    if (this.tls) {
      const hello = this.tls.push(chunk);
      if (hello.status === 'ok') this.result = { kind: 'tls', sni: hello.sni, ech: hello.ech };
      else if (hello.status === 'invalid') this.result = { kind: 'invalid', reason: hello.reason };
      return this.result;
    }
    const http = this.http!;
    const error = http.push(chunk);
    http.drain(); // nothing is relayed from here: the forwarder frames the bytes again
    if (this.host !== null) this.result = { kind: 'http', host: this.host };
    else if (error) this.result = { kind: 'invalid', reason: error.replace(/^malformed HTTP request: /, '') };
    else if (http.done) this.result = { kind: 'unknown' };
    return this.result;
  }
}
