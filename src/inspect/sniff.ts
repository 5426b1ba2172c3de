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
  // Servers skip empty lines before a request line (RFC 9112 §2.2): so do we, or "\r\nGET ..." would
  // pass as another protocol.
  let skip = 0;
  while (skip < start.length && (start[skip] === 0x0d || start[skip] === 0x0a)) skip++;
  if (skip === start.length) return { kind: 'incomplete' };
  const text = start.subarray(skip);
  if (looksLikeHttp(text)) {
    const request = parseHttpHost(text);
    if (request.status === 'ok') return { kind: 'http', host: request.host };
    if (request.status === 'invalid') return { kind: 'invalid', reason: request.reason };
    // A whole first line without an HTTP version is another line-based protocol (SMTP's EHLO, FTP's
    // USER): an HTTP/1 server would not take it for a request naming a host.
    const nl = text.indexOf(0x0a);
    return nl >= 0 && !/HTTP\//i.test(text.toString('latin1', 0, nl)) ? { kind: 'unknown' } : { kind: 'incomplete' };
  }
  return { kind: 'unknown' };
}
