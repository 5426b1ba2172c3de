import { createCipheriv } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpRequestFramer, parseHttpHost } from '../../src/egress/inspect/http.js';
import { clientInitialKeys, QuicClientHelloReader, QuicSessionShape } from '../../src/egress/inspect/quic.js';
import { sniffStream, StreamSniffer } from '../../src/egress/inspect/sniff.js';
import { parseHandshakeMessage, parseTlsClientHello } from '../../src/egress/inspect/tls.js';

/** The bytes node:tls sends first when connecting with `servername` (a real ClientHello). */
async function captureClientHello(servername?: string): Promise<Buffer> {
  let captured = Buffer.alloc(0);
  const server = net.createServer();
  const done = new Promise<Buffer>((resolve) => {
    server.on('connection', (s) => {
      s.on('data', (c: Buffer) => {
        captured = Buffer.concat([captured, c]);
        if (captured.length >= 5 && captured.length >= 5 + captured.readUInt16BE(3)) {
          resolve(captured);
          s.destroy();
        }
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, rejectUnauthorized: false });
  client.on('error', () => {});
  const hello = await done;
  client.destroy();
  server.close();
  return hello;
}

/** Rebuilds a one-record ClientHello with one more extension appended. */
function withExtension(record: Buffer, type: number, data: Buffer): Buffer {
  const body = record.subarray(9);
  let p = 2 + 32;
  p += 1 + body[p];
  p += 2 + body.readUInt16BE(p);
  p += 1 + body[p];
  const extLen = body.readUInt16BE(p);
  const ext = Buffer.concat([Buffer.from([type >> 8, type & 0xff, data.length >> 8, data.length & 0xff]), data]);
  const newBody = Buffer.concat([body.subarray(0, p), u16(extLen + ext.length), body.subarray(p + 2, p + 2 + extLen), ext]);
  const hs = Buffer.concat([Buffer.from([1, newBody.length >> 16, (newBody.length >> 8) & 0xff, newBody.length & 0xff]), newBody]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs]);
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

function varint(n: number): Buffer {
  if (n < 64) return Buffer.from([n]);
  if (n < 16384) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n | 0x80000000);
  return b;
}

/** A protected QUIC v1 client Initial carrying CRYPTO frames, built as a client would (RFC 9001 §5). */
function quicInitial(dcid: Buffer, frames: { offset: number; data: Buffer }[], pn: number, o: { keysFrom?: Buffer; pad?: boolean } = {}): Buffer {
  let payload = Buffer.concat(frames.map((f) => Buffer.concat([Buffer.from([0x06]), varint(f.offset), varint(f.data.length), f.data])));
  const fill = 1200 - 16 - (14 + dcid.length); // the datagram reaches 1200 bytes
  if (payload.length < fill && o.pad !== false) payload = Buffer.concat([payload, Buffer.alloc(fill - payload.length)]);
  const pnBytes = Buffer.alloc(4);
  pnBytes.writeUInt32BE(pn);
  const header = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([0]), varint(0), varint(4 + payload.length + 16), pnBytes]);
  const keys = clientInitialKeys(o.keysFrom ?? dcid);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 4; i++) nonce[11 - i] ^= pnBytes[3 - i];
  const gcm = createCipheriv('aes-128-gcm', keys.key, nonce);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  const mask = createCipheriv('aes-128-ecb', keys.hp, null).update(sealed.subarray(0, 16));
  header[0] ^= mask[0] & 0x0f;
  for (let i = 0; i < 4; i++) header[header.length - 4 + i] ^= mask[1 + i];
  return Buffer.concat([header, sealed]);
}

/** A datagram padded with zeros to the 1200 bytes a client's Initial needs. */
function padded(datagram: Buffer): Buffer {
  return Buffer.concat([datagram, Buffer.alloc(Math.max(0, 1200 - datagram.length))]);
}

/** A long-header packet of any type with `length` bytes after the Length field (opaque here). */
function longPacket(first: number, version: number, dcid: Buffer, scid: Buffer, length: number, withToken: boolean): Buffer {
  const v = Buffer.alloc(4);
  v.writeUInt32BE(version);
  return Buffer.concat([Buffer.from([first]), v, Buffer.from([dcid.length]), dcid, Buffer.from([scid.length]), scid, withToken ? varint(0) : Buffer.alloc(0), varint(length), Buffer.alloc(length, 0x5a)]);
}

describe('TLS ClientHello', () => {
  it('reads the SNI of a real ClientHello, and waits for all of it', async () => {
    const hello = await captureClientHello('API.Example.com');
    expect(parseTlsClientHello(hello)).toEqual({ status: 'ok', sni: 'api.example.com', ech: false });
    expect(parseTlsClientHello(hello.subarray(0, hello.length - 1))).toEqual({ status: 'incomplete' });
    expect(parseTlsClientHello(hello.subarray(0, 3))).toEqual({ status: 'incomplete' });
    expect(sniffStream(hello)).toEqual({ kind: 'tls', sni: 'api.example.com', ech: false });
  });

  it('reads a ClientHello split across two records', async () => {
    const hello = await captureClientHello('split.example.com');
    const hs = hello.subarray(5);
    const cut = 40;
    const twoRecords = Buffer.concat([Buffer.from([0x16, 3, 1]), u16(cut), hs.subarray(0, cut), Buffer.from([0x16, 3, 1]), u16(hs.length - cut), hs.subarray(cut)]);
    expect(parseTlsClientHello(twoRecords)).toMatchObject({ status: 'ok', sni: 'split.example.com' });
  });

  it('reports a ClientHello without SNI, and one with an encrypted_client_hello extension', async () => {
    const noSni = await captureClientHello();
    expect(parseTlsClientHello(noSni)).toEqual({ status: 'ok', sni: null, ech: false });
    const ech = withExtension(await captureClientHello('public.example.com'), 0xfe0d, Buffer.from([0, 1, 2, 3]));
    expect(parseTlsClientHello(ech)).toEqual({ status: 'ok', sni: 'public.example.com', ech: true });
  });

  it('rejects malformed input and never throws on arbitrary bytes', async () => {
    expect(parseTlsClientHello(Buffer.from('170303000501020304', 'hex'))).toMatchObject({ status: 'invalid' });
    expect(parseTlsClientHello(Buffer.from('16030100050200000100', 'hex'))).toMatchObject({ status: 'invalid', reason: 'first handshake message is not a ClientHello' });
    expect(parseTlsClientHello(Buffer.from('160301000501000001ff', 'hex'))).toMatchObject({ status: 'invalid', reason: 'truncated ClientHello' });
    const hello = await captureClientHello('x.example.com');
    const twoSni = withExtension(hello, 0, Buffer.from('000c00000979792e6578616d706c65', 'hex').subarray(0, 14));
    expect(parseTlsClientHello(twoSni)).toMatchObject({ status: 'invalid' });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const b = Buffer.from(bytes);
        parseTlsClientHello(b);
        parseTlsClientHello(Buffer.concat([Buffer.from([0x16, 3, 1]), u16(b.length + 4), Buffer.from([1, 0, b.length >> 8, b.length & 0xff]), b]));
        sniffStream(b);
      }),
    );
  });
});

describe('HTTP/1 Host', () => {
  const req = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'));

  it('reads the Host header once the request head is complete', () => {
    expect(parseHttpHost(req('GET / HTTP/1.1\nHost: WWW.Example.com:8080\nAccept: */*\n\n'))).toEqual({ status: 'ok', host: 'www.example.com' });
    expect(parseHttpHost(req('GET / HTTP/1.1\nHost: [2001:db8::1]:80\n\n'))).toEqual({ status: 'ok', host: '2001:db8::1' });
    expect(parseHttpHost(req('GET / HTTP/1.1\nHost: example.com\n'))).toEqual({ status: 'incomplete' });
    expect(sniffStream(req('GET / HTTP/1.1\nHost: example.com\n\n'))).toEqual({ kind: 'http', host: 'example.com' });
    expect(sniffStream(req('GE'))).toEqual({ kind: 'incomplete' });
  });

  it('uses absolute-form and CONNECT targets, refusing conflicts and missing hosts', () => {
    expect(parseHttpHost(req('GET http://a.example.com/x HTTP/1.0\n\n'))).toEqual({ status: 'ok', host: 'a.example.com' });
    expect(parseHttpHost(req('CONNECT b.example.com:443 HTTP/1.1\nHost: b.example.com:443\n\n'))).toEqual({ status: 'ok', host: 'b.example.com' });
    expect(parseHttpHost(req('GET http://a.example.com/ HTTP/1.1\nHost: evil.example\n\n'))).toMatchObject({ status: 'invalid' });
    expect(parseHttpHost(req('GET / HTTP/1.1\nHost: a.example.com\nHost: evil.example\n\n'))).toMatchObject({ status: 'invalid', reason: 'several Host headers' });
    expect(parseHttpHost(req('GET / HTTP/1.0\n\n'))).toMatchObject({ status: 'invalid', reason: 'no Host header' });
    expect(parseHttpHost(req('HELLO\n\n'))).toMatchObject({ status: 'invalid' });
  });

  it('calls other protocols unknown', () => {
    expect(sniffStream(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).toEqual({ kind: 'unknown' });
    expect(sniffStream(Buffer.from([0, 1, 2, 3]))).toEqual({ kind: 'unknown' });
  });
});

describe('HTTP/1 request framer', () => {
  const allowed = new Set(['good.example', 'also.example']);
  const framer = () => {
    const hosts: string[] = [];
    const f = new HttpRequestFramer((h) => (hosts.push(h), allowed.has(h) ? null : `${h} not allowed`), 1024);
    return { f, hosts };
  };
  /** Feeds `text` one byte at a time, then whole: both must give the same answer. */
  const feed = (text: string) => {
    const whole = framer();
    const wholeResult = whole.f.push(Buffer.from(text, 'latin1'));
    const bytes = framer();
    let byteResult: string | null = null;
    for (let i = 0; i < text.length && byteResult === null; i++) byteResult = bytes.f.push(Buffer.from(text.slice(i, i + 1), 'latin1'));
    expect(byteResult).toBe(wholeResult);
    expect(bytes.hosts).toEqual(whole.hosts);
    return { result: wholeResult, hosts: whole.hosts, done: whole.f.done };
  };

  it('checks every pipelined request, skipping Content-Length bodies without reading them as headers', () => {
    const body = 'Host: evil.example\r\n\r\n';
    const text = `POST /a HTTP/1.1\r\nHost: good.example\r\nContent-Length: ${body.length}\r\n\r\n${body}` + 'GET /b HTTP/1.1\r\nhost: also.example\r\n\r\n' + '\r\nGET /c HTTP/1.0\r\nHost: good.example\r\n\r\n';
    expect(feed(text)).toEqual({ result: null, hosts: ['good.example', 'also.example', 'good.example'], done: false });
    expect(feed(text + 'GET /d HTTP/1.1\r\nHost: evil.example\r\n\r\n').result).toBe('evil.example not allowed');
  });

  it('skips chunked bodies by their sizes and trailers: a Host line inside a chunk is data', () => {
    const chunk = 'Host: evil.example\r\n\r\nGET / HTTP/1.1\r\n';
    const text =
      'POST /up HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n' +
      `${chunk.length.toString(16)};name=value\r\n${chunk}\r\n` +
      '3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n' +
      'GET /next HTTP/1.1\r\nHost: also.example\r\n\r\n';
    expect(feed(text)).toEqual({ result: null, hosts: ['good.example', 'also.example'], done: false });
    expect(feed(text + 'GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n').result).toBe('evil.example not allowed');
  });

  it('refuses framing it cannot follow exactly like a server would', () => {
    const head = 'POST / HTTP/1.1\r\nHost: good.example\r\n';
    const bad = [
      `${head}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n`,
      `${head}Transfer-Encoding: gzip, chunked\r\n\r\n`,
      `${head}Content-Length: 3\r\nContent-Length: 3\r\n\r\n`,
      `${head}Content-Length: +3\r\n\r\n`,
      `${head}Transfer-Encoding: chunked\r\n\r\nzz\r\n`,
      `${head}Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n`,
      `${head}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n`,
      `${head}X-Folded: a\r\n b\r\n\r\n`,
      `${head}Bad Header: a\r\n\r\n`,
      'GET / HTTP/1.1\r\nHost: good.example\nHost: evil.example\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: good.example\r\n\r\nSSH-2.0-x\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: good.example\r\nUpgrade: h2c\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: good.example\r\nX: ${'a'.repeat(2000)}\r\n\r\n`,
    ];
    for (const text of bad) expect(feed(text).result, JSON.stringify(text)).toMatch(/./);
  });

  /** The client's bytes, then the server's answer: what the framer says, and what it let through. */
  const exchange = (client: string, server?: string) => {
    const { f, hosts } = framer();
    let result = f.push(Buffer.from(client, 'latin1'));
    const out = [...f.drain()];
    if (result === null && server !== undefined) {
      result = f.pushResponse(Buffer.from(server, 'latin1'));
      out.push(...f.drain());
    }
    return { result, hosts, done: f.done, out: Buffer.concat(out).toString('latin1') };
  };

  it('after a request that may switch protocols, holds what follows until the server answered', () => {
    const upgrade = 'GET /ws HTTP/1.1\r\nHost: good.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
    const frames = '\x81\x85mask' + 'GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n';
    expect(exchange(upgrade + frames)).toEqual({ result: null, hosts: ['good.example'], done: false, out: upgrade });
    // The server switched: the rest is another protocol.
    expect(exchange(upgrade + frames, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n')).toMatchObject({ result: null, done: true, out: upgrade + frames });
    // It did not (an Upgrade it ignores): the held bytes are read as requests, and refused.
    expect(exchange(upgrade + frames, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok').result).toBe('malformed HTTP request: not an HTTP/1 request line');
    expect(exchange(upgrade + 'GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n', 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n').result).toBe('evil.example not allowed');
    expect(exchange(upgrade + 'GET / HTTP/1.1\r\nHost: also.example\r\n\r\n', 'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n')).toMatchObject({ result: null, hosts: ['good.example', 'also.example'] });
    // A 100 Continue is not the answer; a 101 to a request without Upgrade is not a switch.
    expect(exchange(upgrade + frames, 'HTTP/1.1 100 Continue\r\n\r\n')).toMatchObject({ result: null, done: false, out: upgrade });
    expect(exchange('GET / HTTP/1.1\r\nHost: good.example\r\n\r\n' + frames, 'HTTP/1.1 101 Switching Protocols\r\n\r\n').result).toMatch(/malformed/);
    // Responses to earlier pipelined requests are skipped by their framing, bodies included.
    const first = 'GET /a HTTP/1.1\r\nHost: good.example\r\n\r\nHEAD /b HTTP/1.1\r\nHost: good.example\r\n\r\n';
    const answers = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n12\r\nHTTP/1.1 101 x\r\n\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n';
    expect(exchange(first + upgrade + frames, answers + 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n').result).toMatch(/malformed/);
    expect(exchange(first + upgrade + frames, answers + 'HTTP/1.1 101 Switching Protocols\r\n\r\n')).toMatchObject({ result: null, done: true });
    // CONNECT: a 2xx opens the tunnel, anything else does not.
    const connect = 'CONNECT also.example:443 HTTP/1.1\r\nHost: also.example:443\r\n\r\n';
    expect(exchange(connect + '\x16\x03\x01', 'HTTP/1.1 200 Connection established\r\n\r\n')).toMatchObject({ result: null, done: true, out: connect + '\x16\x03\x01' });
    expect(exchange(connect + 'GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n', 'HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n').result).toBe('evil.example not allowed');
    expect(exchange('CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n').result).toBe('evil.example not allowed');
    // A long chunked response (its size lines far past the head limit) is followed to its end.
    const many = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + '1\r\na\r\n'.repeat(20000) + '0\r\n\r\n';
    expect(exchange('GET /big HTTP/1.1\r\nHost: good.example\r\n\r\n' + upgrade + frames, many + 'HTTP/1.1 101 Switching Protocols\r\n\r\n')).toMatchObject({ result: null, done: true });
    // A server whose responses can't be followed never counts as switched.
    expect(exchange(upgrade + frames, 'SSH-2.0-x\r\n\r\n').result).toMatch(/malformed/);
  });

  it('refuses a body on GET, HEAD, TRACE and CONNECT, and on a request that may switch protocols, unless GET bodies are allowed', () => {
    const evilRequest = 'GET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n';
    const withBody = (method: string, extra = '') => `${method} / HTTP/1.1\r\nHost: good.example\r\n${extra}Content-Length: ${evilRequest.length}\r\n\r\n${evilRequest}`;
    for (const method of ['GET', 'HEAD', 'TRACE', 'get']) expect(feed(withBody(method)).result, method).toMatch(new RegExp(`^malformed HTTP request: a body on a ${method} request`));
    expect(feed('GET / HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n').result).toMatch(/a body on a GET request/);
    expect(feed(withBody('GET', 'Upgrade: websocket\r\n')).result).toBe('malformed HTTP request: a body on a request that may switch protocols');
    expect(feed('GET / HTTP/1.1\r\nHost: good.example\r\nContent-Length: 0\r\n\r\n').result).toBeNull();
    expect(feed(withBody('POST')).result).toBeNull();
    // --http-allow-get-body: the body is read by its length, and what follows it is checked.
    const lenient = new HttpRequestFramer((h) => (allowed.has(h) ? null : `${h} not allowed`), 1024, { allowGetBody: true });
    expect(lenient.push(Buffer.from(withBody('GET')))).toBeNull();
    expect(lenient.push(Buffer.from(evilRequest))).toBe('evil.example not allowed');
    expect(new HttpRequestFramer(() => null, 1024, { allowGetBody: true }).push(Buffer.from(withBody('TRACE')))).toMatch(/a body on a TRACE request/);
  });

  it('sniffs as a request any first line a lenient server reads as one (leading whitespace, VT/FF/NBSP separators, no version, a NUL)', () => {
    const lenient = [
      ' GET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n',
      '\nGET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n',
      '\t\r\nGET /evil HTTP/1.1\r\nHost: evil.example\r\n\r\n',
      'GET\x0b/evil\x0bHTTP/1.1\r\nHost: evil.example\r\n\r\n',
      'GET\x0c/evil HTTP/1.1\r\nHost: evil.example\r\n\r\n',
      'GET\xa0/evil\xa0HTTP/1.1\r\nHost: evil.example\r\n\r\n',
      'GET /evil\r\nHost: evil.example\r\n\r\n',
      'GET /evil\nHost: evil.example\n\n',
      'POST\x1c/evil HTTP/1.1\r\nHost: evil.example\r\n\r\n',
      'FOO\x0b/evil\x0bHTTP/1.0\r\nHost: evil.example\r\n\r\n',
    ];
    for (const text of lenient) expect(sniffStream(Buffer.from(text, 'latin1')).kind, JSON.stringify(text)).toBe('invalid');
    expect(sniffStream(Buffer.from('GET /\0 HTTP/1.1\r\nHost: evil.example\r\n\r\n'))).toEqual({ kind: 'http', host: 'evil.example' });
    // What no server reads as a request still passes as another protocol on an explicit port.
    for (const other of ['SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n', 'EHLO client.example\r\n', '*2\r\n$3\r\nGET\r\n', '0032git-upload-pack /project.git\0host=x\0', '\x16\x03\x01'])
      expect(sniffStream(Buffer.from(other, 'latin1')).kind, JSON.stringify(other)).toBe(other.startsWith('\x16') ? 'incomplete' : 'unknown');
  });

  it('never throws on arbitrary bytes after a good request', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const { f } = framer();
        f.push(Buffer.from('GET / HTTP/1.1\r\nHost: good.example\r\n\r\n'));
        const r = f.push(Buffer.from(bytes));
        expect(r === null || typeof r === 'string').toBe(true);
      }),
    );
  });

  it('lets bytes through in order, the same however they are cut', () => {
    const piece = fc.constantFrom(
      'GET / HTTP/1.1\r\nHost: good.example\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: also.example\r\nContent-Length: 5\r\n\r\nabcde',
      'POST / HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: good.example\r\nUpgrade: websocket\r\n\r\n',
      '\r\n',
      '\x81\x85mask',
      'GET / HTTP/1.1\nHost: evil.example\n\n',
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (pieces, cuts) => {
        const input = Buffer.from(pieces.join(''), 'latin1');
        const run = (chunks: Buffer[]) => {
          const { f } = framer();
          const out: Buffer[] = [];
          let result: string | null = null;
          for (const c of chunks) {
            result = f.push(c);
            if (result !== null) break;
            out.push(...f.drain());
          }
          return { result, out: Buffer.concat(out) };
        };
        const whole = run([input]);
        const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
        const cut = run([0, ...at, input.length].slice(1).map((end, i, ends) => input.subarray(i === 0 ? 0 : ends[i - 1], end)));
        expect(cut.result).toBe(whole.result);
        expect(input.subarray(0, whole.out.length).equals(whole.out)).toBe(true);
        if (whole.result === null) expect(cut.out.equals(whole.out)).toBe(true);
      }),
    );
  });

  it('sniffs a line protocol with a whole first line as unknown, and an HTTP request after empty lines as HTTP', () => {
    expect(sniffStream(Buffer.from('EHLO client.example\r\n'))).toEqual({ kind: 'unknown' });
    expect(sniffStream(Buffer.from('\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n'))).toEqual({ kind: 'http', host: 'evil.example' });
    expect(sniffStream(Buffer.from('get / HTTP/1.1\r\nHost: evil.example\r\n\r\n'))).toEqual({ kind: 'http', host: 'evil.example' });
    expect(sniffStream(Buffer.from('GET / HTTP/1.1\nHost: evil.example\n\n'))).toEqual({ kind: 'invalid', reason: 'bare LF in the request head' });
  });

  it('reads a request line by its shape whatever the method length, on the first request and after an Upgrade', () => {
    const long = 'VERYLONGMETHODNAME /exfil HTTP/1.1\r\nHost: evil.example\r\n\r\n';
    expect(sniffStream(Buffer.from(long))).toEqual({ kind: 'http', host: 'evil.example' });
    expect(sniffStream(Buffer.from('VERYLONGMETHODNAME'))).toEqual({ kind: 'incomplete' });
    expect(sniffStream(Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n'))).toEqual({ kind: 'unknown' });
    expect(sniffStream(Buffer.from('0032git-upload-pack /project.git\0host=git.example\0'))).toEqual({ kind: 'unknown' });
    expect(sniffStream(Buffer.from('GET http://evil.example/\r\n\r\n'))).toMatchObject({ kind: 'invalid' });
    const upgrade = 'GET / HTTP/1.1\r\nHost: good.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
    const ignored = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    expect(exchange(upgrade + long, ignored)).toMatchObject({ result: 'evil.example not allowed', done: false });
    expect(exchange(upgrade + `${'X'.repeat(40)} / HTTP/1.1\r\nHost: good.example\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n`, ignored).result).toBe('evil.example not allowed');
    expect(exchange(upgrade + 'GET /x HTTP/1.1\nHost: evil.example\n\n', ignored).result).toBe('bare LF in the request head');
    expect(exchange(upgrade + 'GET /x HTTP/1.1 junk\r\n\r\n', ignored).result).toMatch(/malformed HTTP request/);
    // A tunnelled line protocol is not HTTP: inspection ends once the proxy opened the tunnel.
    expect(exchange('CONNECT good.example:22 HTTP/1.1\r\nHost: good.example:22\r\n\r\nSSH-2.0-OpenSSH_9.2p1 Debian\r\n', 'HTTP/1.1 200 OK\r\n\r\n')).toMatchObject({ result: null, done: true });
  });

  it('lets no byte of a request head through before the whole head was checked; a bare LF or CR fails at once', () => {
    const f = new HttpRequestFramer((h) => (allowed.has(h) ? null : `${h} not allowed`), 1024);
    const first = 'POST / HTTP/1.1\r\nHost: good.example\r\nContent-Length: 3\r\n\r\n';
    expect(f.push(Buffer.from(first + 'ab'))).toBeNull();
    expect(Buffer.concat(f.drain()).toString()).toBe(first + 'ab'); // the body streams by count
    expect(f.push(Buffer.from('cGET /next HTTP/1.1\r\nHost: go'))).toBeNull();
    expect(Buffer.concat(f.drain()).toString()).toBe('c');
    expect(f.push(Buffer.from('od.example\r\n\r'))).toBeNull();
    expect(f.drain()).toEqual([]);
    expect(f.push(Buffer.from('\n'))).toBeNull();
    expect(Buffer.concat(f.drain()).toString()).toBe('GET /next HTTP/1.1\r\nHost: good.example\r\n\r\n');
    // Lenient servers end lines at a bare LF: the request below is refused before its end, none of it relayed.
    const lf = new HttpRequestFramer(() => null, 1024);
    expect(lf.push(Buffer.from('GET /a HTTP/1.1\r\nHost: good.example\r\n\r\n'))).toBeNull();
    lf.drain();
    expect(lf.push(Buffer.from('GET /exfil HTTP/1.1\nHost: evil.example\n'))).toBe('bare LF in the request head');
    expect(lf.drain()).toEqual([]);
    expect(feed('GET / HTTP/1.1\r\nHost: good.example\rX: y\r\n\r\n').result).toBe('bare CR in the request head');
    expect(feed('\nGET / HTTP/1.1\r\nHost: good.example\r\n\r\n').result).toBe('bare LF in the request head');
  });

  it('refuses a target or Host with userinfo or a backslash', () => {
    expect(feed('GET http://evil.example\\@good.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n').result).toBe('malformed HTTP request: malformed host');
    expect(feed('GET http://evil.example@good.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n').result).toBe('malformed HTTP request: malformed host');
    expect(feed('GET / HTTP/1.1\r\nHost: evil.example@good.example\r\n\r\n').result).toBe('malformed HTTP request: malformed host');
    expect(feed('GET http://good.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n').result).toBeNull();
  });

  it('sniffs a stream cut anywhere with work linear in its length', async () => {
    // A ClientHello cut into 1-byte TLS records, delivered in 60-byte segments.
    const hello = (await captureClientHello('records.example.com')).subarray(5);
    const stream = Buffer.concat([...hello].map((b) => Buffer.from([0x16, 3, 1, 0, 1, b])));
    const sniffer = new StreamSniffer();
    let result: unknown;
    for (let o = 0; o < stream.length; o += 60) result = sniffer.push(stream.subarray(o, o + 60));
    expect(result).toEqual({ kind: 'tls', sni: 'records.example.com', ech: false });
    expect(sniffer.scanned).toBeLessThanOrEqual(2 * stream.length);
    // One that never ends (its length says 16 MiB), up to the 32 KiB limit.
    const endless = Buffer.alloc(5400);
    endless[0] = 1;
    endless.writeUIntBE(0xffffff, 1, 3);
    const long = Buffer.concat([...endless].map((b) => Buffer.from([0x16, 3, 1, 0, 1, b]))).subarray(0, 32 * 1024 - 1);
    const s2 = new StreamSniffer();
    for (let o = 0; o < long.length; o += 60) expect(s2.push(long.subarray(o, o + 60))).toEqual({ kind: 'incomplete' });
    expect(s2.scanned).toBeLessThanOrEqual(3 * long.length);
    // An HTTP head, one byte at a time.
    const head = Buffer.from(`GET / HTTP/1.1\r\nHost: good.example\r\nX: ${'a'.repeat(30000)}\r\n\r\n`);
    const s3 = new StreamSniffer();
    for (let i = 0; i < head.length; i++) result = s3.push(head.subarray(i, i + 1));
    expect(result).toEqual({ kind: 'http', host: 'good.example' });
    expect(s3.scanned).toBeLessThanOrEqual(head.length);
  });
});

describe('QUIC Initial', () => {
  it('derives the RFC 9001 Appendix A client keys', () => {
    const keys = clientInitialKeys(Buffer.from('8394c8f03e515708', 'hex'));
    expect(keys.key.toString('hex')).toBe('1f369613dd76d5467730efcbe3b1a22d');
    expect(keys.iv.toString('hex')).toBe('fa044b2f42a3fd3b46fb255c');
    expect(keys.hp.toString('hex')).toBe('9f50449e04a0e810283a1e9933adedd2');
  });

  it('decrypts an Initial and reads the SNI of its ClientHello', async () => {
    const hello = (await captureClientHello('quic.example.com')).subarray(5);
    const dcid = Buffer.from('0011223344556677', 'hex');
    const reader = new QuicClientHelloReader();
    expect(reader.push(quicInitial(dcid, [{ offset: 0, data: hello }], 0))).toEqual({ status: 'ok', sni: 'quic.example.com', ech: false });
  });

  it('assembles a ClientHello spread over two Initials arriving out of order', async () => {
    const hello = (await captureClientHello('split.quic.example.com')).subarray(5);
    const dcid = Buffer.from('a1a2a3a4a5a6a7a8a9', 'hex');
    const reader = new QuicClientHelloReader();
    const cut = 100;
    expect(reader.push(quicInitial(dcid, [{ offset: cut, data: hello.subarray(cut) }], 1))).toEqual({ status: 'incomplete' });
    expect(reader.push(quicInitial(dcid, [{ offset: 0, data: hello.subarray(0, cut) }], 0))).toMatchObject({ status: 'ok', sni: 'split.quic.example.com' });
  });

  it('tells non-QUIC datagrams and tampered Initials apart', async () => {
    expect(new QuicClientHelloReader().push(Buffer.from('0123456789abcdef', 'hex'))).toEqual({ status: 'not-quic' });
    expect(new QuicClientHelloReader().push(Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 2, 0, 0]), Buffer.alloc(40)]))).toEqual({ status: 'not-quic' });
    const hello = (await captureClientHello('t.example.com')).subarray(5);
    const packet = quicInitial(Buffer.from('0102030405060708', 'hex'), [{ offset: 0, data: hello }], 0);
    packet[packet.length - 1] ^= 1;
    expect(new QuicClientHelloReader().push(packet)).toEqual({ status: 'invalid', reason: 'QUIC Initial packet does not decrypt' });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1300 }), (bytes) => {
        new QuicClientHelloReader().push(Buffer.from(bytes));
        new QuicClientHelloReader().push(Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1]), Buffer.from(bytes)]));
      }),
    );
  });

  it('keeps the first CRYPTO bytes at an offset, like a server, and refuses different ones', async () => {
    const dcid = Buffer.from('0102030405060708', 'hex');
    const evil = (await captureClientHello('evil.example.com')).subarray(5);
    const good = (await captureClientHello('good.example.com')).subarray(5);
    // One datagram, two Initials of one connection: a server reads the first ClientHello.
    const coalesced = Buffer.concat([quicInitial(dcid, [{ offset: 0, data: evil }], 0), quicInitial(dcid, [{ offset: 0, data: good }], 1)]);
    expect(new QuicClientHelloReader().push(coalesced)).toEqual({ status: 'invalid', reason: 'QUIC CRYPTO data differs from data already received at the same offset' });
    // A first datagram with the start of one ClientHello, a second with all of another.
    const reader = new QuicClientHelloReader();
    expect(reader.push(quicInitial(dcid, [{ offset: 0, data: evil.subarray(0, 100) }], 0))).toEqual({ status: 'incomplete' });
    expect(reader.push(quicInitial(dcid, [{ offset: 0, data: good }], 1))).toMatchObject({ status: 'invalid' });
    // A retransmission of the same bytes, overlapping what arrived, is fine.
    const again = new QuicClientHelloReader();
    expect(again.push(quicInitial(dcid, [{ offset: 0, data: good.subarray(0, 120) }], 0))).toEqual({ status: 'incomplete' });
    expect(again.push(quicInitial(dcid, [{ offset: 50, data: good.subarray(50) }, { offset: 0, data: good.subarray(0, 60) }], 1))).toMatchObject({ status: 'ok', sni: 'good.example.com' });
    expect(again.dcid).toEqual(dcid);
  });

  it('reads one connection: Initials of another connection in the same datagrams are refused', async () => {
    const good = (await captureClientHello('good.example.com')).subarray(5);
    const two = Buffer.concat([
      quicInitial(Buffer.from('0102030405060708', 'hex'), [{ offset: 0, data: good }], 0),
      quicInitial(Buffer.from('a1a2a3a4a5a6a7a8', 'hex'), [{ offset: 0, data: good }], 0),
    ]);
    expect(new QuicClientHelloReader().push(two)).toEqual({ status: 'invalid', reason: 'QUIC Initial packets of two connections' });
  });

  it('checks the shape of every packet of a datagram, and reports Initials of new connections', async () => {
    const dcid = Buffer.from('0102030405060708', 'hex');
    const initial = quicInitial(dcid, [{ offset: 0, data: (await captureClientHello('s.example.com')).subarray(5) }], 0);
    const session = new QuicSessionShape();
    expect(session.client(initial)).toEqual({ dcid: '0102030405060708' });
    session.admit('0102030405060708');
    expect(session.client(initial)).toBeNull();
    expect(session.client(Buffer.concat([initial, Buffer.alloc(30)]))).toBeNull(); // padding
    expect(session.client(Buffer.from('plain datagram'))).toBe('QUIC short-header packet too short'); // 'p' has the fixed bit
    expect(session.client(Buffer.from('\x01 a datagram of another protocol'))).toBe('QUIC fixed bit not set');
    expect(session.client(Buffer.concat([initial, Buffer.from('\x01 a datagram of another protocol')]))).toBe('QUIC fixed bit not set');
    expect(session.client(Buffer.from([0x40, 1, 2, 3]))).toBe('QUIC short-header packet too short');
    expect(session.client(Buffer.concat([initial.subarray(0, 5), Buffer.from([0, 0, 0, 2]), initial.subarray(9)]))).toBe('QUIC packet too short for header protection');
    expect(session.client(initial.subarray(0, initial.length - 1))).toBe('QUIC packet length does not fit the datagram');
    const v3 = Buffer.from(initial);
    v3.writeUInt32BE(3, 1);
    expect(session.client(v3)).toBe('QUIC version 0x3 is not 1 or 2');
    const retry = Buffer.from(initial);
    retry[0] |= 0x30;
    expect(session.client(retry)).toBe('QUIC Retry packet from the client');
    // Before the server answered, a client has no keys but the Initial ones (and 0-RTT).
    const short = Buffer.concat([Buffer.from([0x41]), Buffer.alloc(40, 7)]);
    expect(session.client(short)).toBe('QUIC short-header packet before the server answered');
    // 'NOT-QUIC...' starts with 0x4e: the shape of a short-header packet.
    expect(session.client(Buffer.from('NOT-QUIC: arbitrary datagram, secret=42'))).toBe('QUIC short-header packet before the server answered');
    const handshake = longPacket(0xe0, 1, dcid, Buffer.alloc(0), 30, false);
    expect(session.client(handshake)).toBe('QUIC Handshake packet before the server answered');
    const zeroRtt = longPacket(0xd0, 1, dcid, Buffer.alloc(0), 30, false);
    // 0-RTT only once a ClientHello offered early data (RFC 9001 §4.6.1).
    expect(session.client(Buffer.concat([initial, zeroRtt]))).toBe('QUIC 0-RTT packet, but no ClientHello offered early data');
    session.allowEarlyData();
    expect(session.client(Buffer.concat([initial, zeroRtt]))).toBeNull();
    expect(session.client(longPacket(0xd0, 1, Buffer.from('cccc', 'hex'), Buffer.alloc(0), 30, false))).toEqual({ dcid: 'cccc' });
    // Version 2 numbers the long-header types differently: 0b01 is its Initial, 0b11 its Handshake (RFC 9369).
    expect(session.client(padded(longPacket(0xc0 | (1 << 4), 0x6b3343cf, Buffer.from('bbbb', 'hex'), Buffer.alloc(0), 30, true)))).toEqual({ dcid: 'bbbb' });
    expect(session.client(longPacket(0xc0 | (3 << 4), 0x6b3343cf, dcid, Buffer.alloc(0), 30, false))).toBe('QUIC Handshake packet before the server answered');
    // The server answers (to the client's empty source ID): Handshake and short headers may pass now,
    // and the client's Initials to the ID the server chose.
    session.server(Buffer.concat([longPacket(0xc0, 1, Buffer.alloc(0), Buffer.from('5e5e5e5e', 'hex'), 40, true), longPacket(0xe0, 1, Buffer.alloc(0), Buffer.from('5e5e5e5e', 'hex'), 40, false)]));
    expect(session.client(short)).toBeNull();
    expect(session.client(Buffer.concat([handshake, short]))).toBeNull();
    expect(session.client(padded(longPacket(0xc0, 1, Buffer.from('5e5e5e5e', 'hex'), Buffer.alloc(0), 30, true)))).toBeNull();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1300 }), (bytes) => {
        session.client(Buffer.from(bytes));
        session.client(Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1]), Buffer.from(bytes)]));
        new QuicSessionShape().server(Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1]), Buffer.from(bytes)]));
      }),
    );
  });

  it("learns the server's connection IDs only from its Initial and Handshake packets, not from a Retry or an echo", () => {
    const fresh = () => {
      const s = new QuicSessionShape();
      s.admit('aaaa');
      expect(s.client(padded(longPacket(0xc0, 1, Buffer.from('aaaa', 'hex'), Buffer.from('c1', 'hex'), 30, true)))).toBeNull();
      return s;
    };
    const toServerId = padded(longPacket(0xc0, 1, Buffer.from('5e5e', 'hex'), Buffer.from('c1', 'hex'), 30, true));
    // A Retry: the client's next Initial, to the Retry's ID, is a new connection whose ClientHello must be read.
    const retried = fresh();
    retried.server(Buffer.concat([Buffer.from([0xf0, 0, 0, 0, 1, 1, 0xc1, 2, 0x5e, 0x5e]), Buffer.alloc(30, 9)]));
    expect(retried.client(toServerId)).toEqual({ dcid: '5e5e' });
    // A host echoing the client's own packet back teaches nothing.
    const echoed = fresh();
    echoed.server(longPacket(0xc0, 1, Buffer.from('aaaa', 'hex'), Buffer.from('c1', 'hex'), 30, true));
    expect(echoed.client(Buffer.concat([Buffer.from([0x41]), Buffer.alloc(40, 7)]))).toBe('QUIC short-header packet before the server answered');
    // A server's Initial to the client's source ID does.
    const answered = fresh();
    answered.server(longPacket(0xc0, 1, Buffer.from('c1', 'hex'), Buffer.from('5e5e', 'hex'), 30, true));
    expect(answered.client(toServerId)).toBeNull();
    expect(answered.client(Buffer.concat([Buffer.from([0x41]), Buffer.alloc(40, 7)]))).toBeNull();
  });

  it('refuses a first Initial to a short ID or in a datagram under 1200 bytes, and reads every later ClientHello of the connection', async () => {
    const dcid = Buffer.from('0102030405060708', 'hex');
    const good = (await captureClientHello('good.example.com')).subarray(5);
    const good2 = (await captureClientHello('good.example.com')).subarray(5);
    const evil = (await captureClientHello('evil.example.com')).subarray(5);
    expect(new QuicClientHelloReader().push(quicInitial(Buffer.from('0102030405', 'hex'), [{ offset: 0, data: good }], 0))).toEqual({
      status: 'invalid',
      reason: 'QUIC first Initial to a 5-byte connection ID (clients choose at least 8)',
    });
    const short = quicInitial(dcid, [{ offset: 0, data: good }], 0, { pad: false });
    expect(new QuicClientHelloReader().push(short)).toEqual({ status: 'invalid', reason: `QUIC Initial in a datagram of ${short.length} bytes (clients pad them to 1200)` });
    // After a HelloRetryRequest, the second ClientHello follows the first, to the server's ID with the first ID's keys.
    const serverId = Buffer.from('5e5e5e5e', 'hex');
    const reader = new QuicClientHelloReader();
    expect(reader.push(quicInitial(dcid, [{ offset: 0, data: good }], 0))).toMatchObject({ status: 'ok', sni: 'good.example.com' });
    const retry = quicInitial(serverId, [{ offset: good.length, data: good2 }], 1, { keysFrom: dcid });
    expect(reader.owns(retry)).toBe(true);
    expect(reader.owns(quicInitial(serverId, [{ offset: 0, data: good }], 0))).toBe(false);
    expect(reader.push(retry)).toEqual({ status: 'ok', sni: 'good.example.com', ech: false });
    expect(reader.push(quicInitial(serverId, [{ offset: good.length + good2.length, data: evil }], 2, { keysFrom: dcid }))).toEqual({
      status: 'invalid',
      reason: 'a later QUIC ClientHello names evil.example.com, the first named good.example.com',
    });
    // Cut anywhere, a later ClientHello is read once whole.
    const cut = new QuicClientHelloReader();
    cut.push(quicInitial(dcid, [{ offset: 0, data: good }], 0));
    expect(cut.push(quicInitial(serverId, [{ offset: good.length, data: evil.subarray(0, 30) }], 1, { keysFrom: dcid }))).toMatchObject({ status: 'ok' });
    expect(cut.push(quicInitial(serverId, [{ offset: good.length + 30, data: evil.subarray(30) }], 2, { keysFrom: dcid }))).toMatchObject({ status: 'invalid' });
    // Whether the first ClientHello offers early data (0-RTT may follow only then).
    expect(reader.earlyData).toBe(false);
    const early = new QuicClientHelloReader();
    early.push(quicInitial(dcid, [{ offset: 0, data: withExtension(await captureClientHello('good.example.com'), 0x002a, Buffer.alloc(0)).subarray(5) }], 0));
    expect(early.earlyData).toBe(true);
  });

  it('parses a bare handshake message as QUIC carries it', async () => {
    const hello = (await captureClientHello('bare.example.com')).subarray(5);
    expect(parseHandshakeMessage(hello)).toMatchObject({ status: 'ok', sni: 'bare.example.com' });
    expect(parseHandshakeMessage(hello.subarray(0, 50))).toEqual({ status: 'incomplete' });
  });
});
