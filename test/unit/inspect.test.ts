import { createCipheriv } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpRequestFramer, parseHttpHost } from '../../src/inspect/http.js';
import { clientInitialKeys, QuicClientHelloReader } from '../../src/inspect/quic.js';
import { sniffStream } from '../../src/inspect/sniff.js';
import { parseHandshakeMessage, parseTlsClientHello } from '../../src/inspect/tls.js';

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
function quicInitial(dcid: Buffer, frames: { offset: number; data: Buffer }[], pn: number): Buffer {
  let payload = Buffer.concat(frames.map((f) => Buffer.concat([Buffer.from([0x06]), varint(f.offset), varint(f.data.length), f.data])));
  if (payload.length < 1162) payload = Buffer.concat([payload, Buffer.alloc(1162 - payload.length)]);
  const pnBytes = Buffer.alloc(4);
  pnBytes.writeUInt32BE(pn);
  const header = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([0]), varint(0), varint(4 + payload.length + 16), pnBytes]);
  const keys = clientInitialKeys(dcid);
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

  it('ends inspection after a switch of protocols only when the next bytes are not HTTP', () => {
    const upgrade = 'GET /ws HTTP/1.1\r\nHost: good.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
    const switched = feed(upgrade + '\x81\x85mask' + 'GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n');
    expect(switched).toMatchObject({ result: null, done: true });
    // The server did not switch: the next request is framed and checked as usual.
    expect(feed(upgrade + '\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n').result).toBe('evil.example not allowed');
    expect(feed('CONNECT also.example:443 HTTP/1.1\r\nHost: also.example:443\r\n\r\n\x16\x03\x01').done).toBe(true);
    expect(feed('CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n').result).toBe('evil.example not allowed');
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

  it('sniffs a line protocol with a whole first line as unknown, and an HTTP request after empty lines as HTTP', () => {
    expect(sniffStream(Buffer.from('EHLO client.example\r\n'))).toEqual({ kind: 'unknown' });
    expect(sniffStream(Buffer.from('\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n'))).toEqual({ kind: 'http', host: 'evil.example' });
    expect(sniffStream(Buffer.from('get / HTTP/1.1\r\nHost: evil.example\r\n\r\n'))).toEqual({ kind: 'http', host: 'evil.example' });
    expect(sniffStream(Buffer.from('GET / HTTP/1.1\nHost: evil.example\n\n'))).toEqual({ kind: 'incomplete' });
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

  it('parses a bare handshake message as QUIC carries it', async () => {
    const hello = (await captureClientHello('bare.example.com')).subarray(5);
    expect(parseHandshakeMessage(hello)).toMatchObject({ status: 'ok', sni: 'bare.example.com' });
    expect(parseHandshakeMessage(hello.subarray(0, 50))).toEqual({ status: 'incomplete' });
  });
});
