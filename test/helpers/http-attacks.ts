// Byte streams a client in the sandbox could send on a plain-HTTP flow pinned for good.example, each
// trying to make a server read a request the HTTP check did not see (for evil.example, or without a
// host). The differential test (test/integration/http-differential.test.ts) feeds them through the
// framer to real servers; the fuzz properties (test/unit/fuzz-inspect.test.ts) start from them.
import fc from 'fast-check';

const good = 'GET /good HTTP/1.1\r\nHost: good.example\r\n\r\n';
const evil = 'GET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n';
const upgrade = (proto: string) => `GET /up HTTP/1.1\r\nHost: good.example\r\nUpgrade: ${proto}\r\nConnection: Upgrade\r\n\r\n`;
const withBody = (method: string, body: string, extra = '') => `${method} /b HTTP/1.1\r\nHost: good.example\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;
const chunked = (method: string, body: string) => `${method} /c HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;

/** [what it tries, the bytes (latin1)] */
export const HTTP_ATTACKS: [string, string][] = [
  ['two good requests (baseline)', good + good],
  ['a pipelined request for another host', good + evil],
  ['GET with a Content-Length body holding a request', withBody('GET', evil)],
  ['HEAD with a Content-Length body holding a request', withBody('HEAD', evil)],
  ['TRACE with a body', withBody('TRACE', evil)],
  ['OPTIONS with a body (allowed: read by count)', withBody('OPTIONS', 'abc') + good],
  ['GET with a chunked body holding a request', chunked('GET', evil)],
  ['POST with a body holding a request (read by count by every server)', withBody('POST', evil) + good],
  ['POST chunked with a request in a chunk', chunked('POST', evil) + good],
  ['Upgrade: foo, then a request', upgrade('foo') + evil],
  ['Upgrade: foo, then an empty line and a request', upgrade('foo') + '\r\n' + evil],
  ['Upgrade: foo, then a bare LF and a request', upgrade('foo') + '\n' + evil],
  ['Upgrade: foo, then a leading space', upgrade('foo') + ' ' + evil],
  ['Upgrade: foo, then a leading tab', upgrade('foo') + '\t' + evil],
  ['Upgrade: foo, then VT between tokens', upgrade('foo') + 'GET\x0b/evil\x0bHTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['Upgrade: foo, then FF between tokens', upgrade('foo') + 'GET\x0c/evil\x0cHTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['Upgrade: foo, then NBSP between tokens', upgrade('foo') + 'GET\xa0/evil\xa0HTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['Upgrade: foo, then a request line without a version', upgrade('foo') + 'GET /evil\r\nHost: evil.example\r\n\r\n'],
  ['Upgrade: foo, then a NUL in the target', upgrade('foo') + 'GET /\x00 HTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['Upgrade: foo, then WebSocket-like bytes and a request', upgrade('foo') + '\x81\x85mask' + evil],
  ['Upgrade: websocket (servers here do not switch), then frames', upgrade('websocket') + '\x81\x85maskhello'],
  ['Upgrade: foo, then a non-HTTP protocol', upgrade('foo') + 'SSH-2.0-OpenSSH_9.2\r\n'],
  ['Upgrade with a body', withBody('GET', evil, 'Upgrade: foo\r\nConnection: Upgrade\r\n')],
  ['h2c upgrade', upgrade('h2c')],
  ['CONNECT (servers here refuse it), then a request', 'CONNECT good.example:443 HTTP/1.1\r\nHost: good.example:443\r\n\r\n' + evil],
  ['a bare LF request after a good one', good + 'GET /evil HTTP/1.1\nHost: evil.example\n\n'],
  ['a bare CR inside a head', 'GET /x HTTP/1.1\r\nHost: good.example\rHost: evil.example\r\n\r\n'],
  ['Host line folded', 'GET /x HTTP/1.1\r\nX: a\r\n Host: evil.example\r\nHost: good.example\r\n\r\n'],
  ['two Host headers', 'GET /x HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\r\n'],
  ['absolute-form target for another host', 'GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n'],
  ['userinfo in the Host', 'GET / HTTP/1.1\r\nHost: evil.example@good.example\r\n\r\n'],
  ['Content-Length and Transfer-Encoding', `POST /x HTTP/1.1\r\nHost: good.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${evil}`],
  ['two Content-Lengths', `POST /x HTTP/1.1\r\nHost: good.example\r\nContent-Length: 0\r\nContent-Length: ${evil.length}\r\n\r\n${evil}`],
  ['Content-Length with a sign', `POST /x HTTP/1.1\r\nHost: good.example\r\nContent-Length: +0\r\n\r\n${evil}`],
  ['Transfer-Encoding: chunked, identity', `POST /x HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${evil}`],
  ['Transfer-Encoding with a tab before chunked', `POST /x HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n${evil}`],
  ['Transfer-Encoding in HTTP/1.0', `POST /x HTTP/1.0\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n${evil}`],
  ['a chunk size with a bare LF', `POST /x HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n${evil}`],
  ['a chunk longer than its size', `POST /x HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n${evil}`],
  ['a header name with a space before the colon', 'GET /x HTTP/1.1\r\nHost : evil.example\r\nHost: good.example\r\n\r\n'],
  ['a tab between request-line tokens', 'GET\t/x\tHTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['two spaces between request-line tokens', 'GET  /x  HTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['HTTP/0.9 request line with headers', 'GET /evil\r\nHost: evil.example\r\n\r\n'],
  ['a request without Host', 'GET /x HTTP/1.0\r\n\r\n'],
  ['a leading space on the first request', ' ' + evil],
  ['leading empty lines before a good request', '\r\n\r\n' + good],
  ['HTTP/1.0 keep-alive pipelining', 'GET /a HTTP/1.0\r\nHost: good.example\r\nConnection: keep-alive\r\n\r\n' + evil],
  ['Expect: 100-continue with a body', withBody('PUT', 'data', 'Expect: 100-continue\r\n') + good],
  ['a lower-case method', 'get /x HTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['a NUL in the first target', 'GET /\x00 HTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['a non-HTTP protocol first', 'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n'],
  ['a line protocol first, then a request', 'EHLO client.example\r\n' + evil],
  ['VT-separated request first', 'GET\x0b/evil\x0bHTTP/1.1\r\nHost: evil.example\r\n\r\n'],
  ['a bare LF before the first request', '\n' + evil],
  ['git protocol line', '0032git-upload-pack /project.git\x00host=evil.example\x00'],
  ['HTTP/2 prior-knowledge preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
  ['h2c among other upgrades, upper case', 'GET / HTTP/1.1\r\nHost: good.example\r\nUpgrade: websocket, H2C\r\nConnection: Upgrade\r\n\r\n'],
  ['a fragment hiding userinfo in an absolute-form target', 'GET http://evil.example#@good.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n'],
  ['HTTP/1.2 request line', 'GET / HTTP/1.2\r\nHost: evil.example\r\n\r\n'],
  ['a Content-Length with leading zeros (read alike)', `POST /x HTTP/1.1\r\nHost: good.example\r\nContent-Length: 0003\r\n\r\nabc${good}`],
  ['a GET then a request hidden in a POST chunk extension', `${good}POST /x HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n3;x="\r\nGET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n"\r\nabc\r\n0\r\n\r\n`],
  ['Upgrade then a pipelined request before the answer', upgrade('websocket') + good + evil],
];

/** Bytes that some server reads leniently: line ends, whitespace of every kind, NUL, separators. */
const LENIENT = fc.constantFrom(0x0d, 0x0a, 0x20, 0x09, 0x0b, 0x0c, 0x00, 0x1c, 0x85, 0xa0, 0x3a, 0x2c, 0x3b, 0x40, 0x5c, 0x2f);

type Mutation = { at: number; kind: 'insert' | 'replace' | 'delete'; byte: number };
const mutation = fc.record({ at: fc.nat(), kind: fc.constantFrom<'insert' | 'replace' | 'delete'>('insert', 'replace', 'delete'), byte: fc.oneof(LENIENT, fc.integer({ min: 0, max: 255 })) });

function mutate(seed: Buffer, mutations: Mutation[]): Buffer {
  let b = Buffer.from(seed);
  for (const m of mutations) {
    const at = b.length ? m.at % (b.length + (m.kind === 'insert' ? 1 : 0)) : 0;
    if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([m.byte]), b.subarray(at)]);
    else if (b.length && m.kind === 'replace') b[at] = m.byte;
    else if (b.length) b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
  }
  return b;
}

const httpSeeds = HTTP_ATTACKS.map(([, text]) => Buffer.from(text, 'latin1'));
/** An attack stream mutated with lenient bytes: what the fuzzers feed the framer. */
export const mutatedHttp = fc.tuple(fc.constantFrom(...httpSeeds), fc.array(mutation, { maxLength: 4 })).map(([seed, ms]) => mutate(seed, ms));

