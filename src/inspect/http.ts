// The host an HTTP/1 request names: its Host header, or the authority of an absolute-form or CONNECT
// target (RFC 9112 §3.2). Only the first request of a connection is read.

export type HostResult = { status: 'incomplete' } | { status: 'invalid'; reason: string } | { status: 'ok'; host: string };

const REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/;

/** True while `start` could still be the beginning of an HTTP/1 request line. */
export function looksLikeHttp(start: Buffer): boolean {
  const head = start.subarray(0, 16).toString('latin1');
  return /^[A-Z]{1,15}( |$)/.test(head) && (head.length < 16 || head.includes(' '));
}

export function parseHttpHost(stream: Buffer): HostResult {
  const end = stream.indexOf('\r\n\r\n');
  if (end < 0) return { status: 'incomplete' };
  const [requestLine, ...headerLines] = stream.subarray(0, end).toString('latin1').split('\r\n');
  const m = REQUEST_LINE.exec(requestLine);
  if (!m) return { status: 'invalid', reason: 'not an HTTP/1 request line' };
  const [, method, target] = m;

  const hostHeaders = headerLines.filter((l) => /^host\s*:/i.test(l)).map((l) => l.slice(l.indexOf(':') + 1).trim());
  if (hostHeaders.length > 1) return { status: 'invalid', reason: 'several Host headers' };
  const targetAuthority = method === 'CONNECT' ? target : /^[a-z][a-z0-9+.-]*:\/\/([^/?#]+)/i.exec(target)?.[1];

  const names = [hostHeaders[0], targetAuthority].filter((a): a is string => a !== undefined).map(hostOf);
  if (names.length === 0) return { status: 'invalid', reason: 'no Host header' };
  if (names.some((n) => n === null)) return { status: 'invalid', reason: 'malformed host' };
  if (names.length === 2 && names[0] !== names[1]) return { status: 'invalid', reason: 'Host header and request target name different hosts' };
  return { status: 'ok', host: names[0]! };
}

/** The host of an authority ("Example.com:8080" → "example.com", "[2001:db8::1]:80" → "2001:db8::1"). */
function hostOf(authority: string): string | null {
  const withoutUser = authority.slice(authority.lastIndexOf('@') + 1);
  const m = /^\[([0-9a-fA-F:.]+)\](?::\d*)?$/.exec(withoutUser) ?? /^([^:[\]\s]+)(?::\d*)?$/.exec(withoutUser);
  if (!m) return null;
  const host = m[1].toLowerCase();
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
