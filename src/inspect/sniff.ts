// What the first bytes of a TCP stream say about where it is going: a TLS ClientHello's SNI, an HTTP/1
// request's host, or neither.
import { looksLikeHttp, parseHttpHost } from './http.js';
import { parseTlsClientHello } from './tls.js';

export type StreamSniff =
  | { kind: 'incomplete' }
  | { kind: 'tls'; sni: string | null; ech: boolean }
  | { kind: 'http'; host: string }
  | { kind: 'unknown' }
  | { kind: 'invalid'; reason: string };

export function sniffStream(start: Buffer): StreamSniff {
  if (start.length === 0) return { kind: 'incomplete' };
  if (start[0] === 0x16) {
    const hello = parseTlsClientHello(start);
    if (hello.status === 'ok') return { kind: 'tls', sni: hello.sni, ech: hello.ech };
    return hello.status === 'incomplete' ? { kind: 'incomplete' } : { kind: 'invalid', reason: hello.reason };
  }
  if (looksLikeHttp(start)) {
    const request = parseHttpHost(start);
    if (request.status === 'ok') return { kind: 'http', host: request.host };
    return request.status === 'incomplete' ? { kind: 'incomplete' } : { kind: 'invalid', reason: request.reason };
  }
  return { kind: 'unknown' };
}
