import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TlsHandshakeFollower } from '../../src/egress/inspect/tls-follow.js';
import { HRR_RANDOM, record, serverHello, u16 } from '../helpers/tls-records.js';

/** The first record node:tls sends for `servername` (a real ClientHello). */
async function clientHello(servername: string, options: tls.ConnectionOptions = {}): Promise<Buffer> {
  const server = net.createServer();
  const captured = new Promise<Buffer>((resolve) => {
    server.on('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf.subarray(0, 5 + buf.readUInt16BE(3)));
          s.destroy();
        }
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, rejectUnauthorized: false, ...options });
  client.on('error', () => {});
  const hello = await captured;
  client.destroy();
  server.close();
  return hello;
}

/** `record` with one more extension in its ClientHello. */
function withExtension(rec: Buffer, type: number, data: Buffer): Buffer {
  const body = rec.subarray(9);
  let p = 2 + 32;
  p += 1 + body[p];
  p += 2 + body.readUInt16BE(p);
  p += 1 + body[p];
  const extLen = body.readUInt16BE(p);
  const ext = Buffer.concat([u16(type), u16(data.length), data]);
  const newBody = Buffer.concat([body.subarray(0, p), u16(extLen + ext.length), body.subarray(p + 2, p + 2 + extLen), ext]);
  return record(0x16, Buffer.concat([Buffer.from([1, newBody.length >> 16, (newBody.length >> 8) & 0xff, newBody.length & 0xff]), newBody]));
}

const CCS = record(0x14, Buffer.from([1]));
const appData = (n: number) => record(0x17, Buffer.alloc(n, 0xa5));

/** Plays the client's and server's records through a follower, in order; the first refusal, and what went to the server. */
function play(steps: (['client' | 'server', Buffer])[]): { error: string | null; relayed: Buffer; done: boolean } {
  const f = new TlsHandshakeFollower();
  const relayed: Buffer[] = [];
  let error: string | null = null;
  for (const [side, bytes] of steps) {
    error = side === 'client' ? f.push(bytes) : f.pushResponse(bytes);
    relayed.push(...f.drain());
    if (error) break;
  }
  return { error, relayed: Buffer.concat(relayed), done: f.done };
}

describe('TLS handshake following (ClientHellos after a HelloRetryRequest)', () => {
  it('refuses a second ClientHello naming another server, after the retry request or pipelined before it', async () => {
    const good = await clientHello('good.example');
    const good2 = await clientHello('good.example');
    const evil = await clientHello('evil.example');
    const hrr = serverHello(HRR_RANDOM);
    expect(play([['client', good], ['server', hrr], ['client', evil]])).toMatchObject({ error: 'a later ClientHello names evil.example, the first named good.example', relayed: good });
    expect(play([['client', Buffer.concat([good, evil])]]).error).toMatch(/later ClientHello names evil\.example/);
    // Behind the compatibility ChangeCipherSpec, and cut in 1-byte records.
    expect(play([['client', good], ['server', hrr], ['client', CCS], ['client', evil]]).error).toMatch(/evil\.example/);
    const hs = evil.subarray(5);
    const tiny = Buffer.concat([...hs].map((b) => record(0x16, Buffer.from([b]))));
    expect(play([['client', good], ['server', hrr], ['client', tiny]])).toMatchObject({ error: expect.stringMatching(/evil\.example/), relayed: good });
    // One with ECH, or without a name.
    expect(play([['client', good], ['server', hrr], ['client', withExtension(good2, 0xfe0d, Buffer.from([0, 1, 2, 3]))]]).error).toMatch(/ECH/);
    expect(play([['client', good], ['server', hrr], ['client', await clientHello('')]]).error).toMatch(/names no server/);
    // Early data records between the two do not end the following before the server's answer.
    expect(play([['client', good], ['client', appData(50)], ['server', hrr], ['client', evil]]).error).toMatch(/evil\.example/);
  });

  it('lets a retry with the same name pass, and reads only record headers once the records are protected', async () => {
    const good = await clientHello('good.example');
    const good2 = await clientHello('good.example');
    const tls13 = serverHello(Buffer.alloc(32, 7));
    const r = play([['client', good], ['server', serverHello(HRR_RANDOM)], ['client', Buffer.concat([CCS, good2])], ['server', tls13], ['client', appData(80)], ['client', Buffer.concat([appData(3000), appData(20)])]]);
    expect(r).toMatchObject({ error: null, done: false });
    expect(r.relayed.equals(Buffer.concat([good, CCS, good2, appData(80), appData(3000), appData(20)]))).toBe(true);
    // TLS 1.3: a handshake record in clear after the ServerHello is refused (a server must refuse it
    // too), before or after the protected records began, cut anywhere.
    expect(play([['client', good], ['server', tls13], ['client', CCS], ['client', good2]]).error).toMatch(/in clear after the TLS 1\.3 ServerHello/);
    const late = Buffer.concat([appData(100), good2]);
    expect(play([['client', good], ['server', tls13], ['client', late.subarray(0, 50)], ['client', late.subarray(50, 106)], ['client', late.subarray(106)]])).toMatchObject({
      error: 'a TLS handshake record in clear after the TLS 1.3 keys',
      relayed: good, // records are held until whole while in clear; the chunk that starts the handshake record is not relayed
    });
    // TLS 1.2: handshake messages in clear until the client's ChangeCipherSpec, then encrypted records.
    const keyExchange = record(0x16, Buffer.from([16, 0, 0, 2, 0xaa, 0xbb]));
    const encryptedFinished = record(0x16, Buffer.alloc(40, 0x33));
    expect(play([['client', good], ['server', serverHello(Buffer.alloc(32, 1), null)], ['client', Buffer.concat([keyExchange, CCS, encryptedFinished, appData(20)])]])).toMatchObject({ error: null, done: true });
    // Without the server's answer, nothing but ClientHellos may be in clear.
    expect(play([['client', Buffer.concat([good, keyExchange])]]).error).toMatch(/before the server chose TLS 1\.2/);
  });

  it('gives the same answer however the streams are cut', async () => {
    const good = await clientHello('good.example');
    const evil = await clientHello('evil.example');
    const hrr = serverHello(HRR_RANDOM);
    const stream = Buffer.concat([good, CCS, evil]);
    fc.assert(
      fc.property(fc.array(fc.nat(stream.length), { maxLength: 6 }), (cuts) => {
        const at = [...new Set([0, ...cuts, stream.length])].sort((a, b) => a - b);
        const f = new TlsHandshakeFollower();
        let error: string | null = null;
        f.pushResponse(hrr);
        for (let i = 1; i < at.length && !error; i++) error = f.push(stream.subarray(at[i - 1], at[i]));
        expect(error).toMatch(/evil\.example/);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.uint8Array({ maxLength: 200 }), (client, server) => {
        const f = new TlsHandshakeFollower();
        f.push(good);
        f.pushResponse(Buffer.from(server));
        const r = f.push(Buffer.from(client));
        expect(r === null || typeof r === 'string').toBe(true);
      }),
    );
  });

  it('relays a real TLS 1.3 handshake with a HelloRetryRequest, both ways', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=good.example', '-days', '1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const key = readFileSync(join(dir, 'key.pem'));
    const cert = readFileSync(join(dir, 'cert.pem'));
    rmSync(dir, { recursive: true });
    // The server accepts only P-256, the client offers an X25519 key share first: the server asks for a retry.
    const server = tls.createServer({ key, cert, ecdhCurve: 'P-256', minVersion: 'TLSv1.3' }, (s) => s.pipe(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const follower = new TlsHandshakeFollower();
    const relay = net.createServer((client) => {
      const upstream = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      client.on('data', (c: Buffer) => {
        expect(follower.push(c)).toBeNull();
        for (const b of follower.drain()) upstream.write(b);
      });
      upstream.on('data', (c: Buffer) => {
        expect(follower.pushResponse(c)).toBeNull();
        client.write(c);
      });
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const socket = tls.connect({ host: '127.0.0.1', port: (relay.address() as net.AddressInfo).port, servername: 'good.example', ca: cert, ecdhCurve: 'X25519:P-256' });
    const echoed = await new Promise<string>((resolve, reject) => {
      socket.on('error', reject);
      socket.on('secureConnect', () => socket.write('ping'));
      socket.on('data', (c: Buffer) => resolve(c.toString()));
    });
    expect(echoed).toBe('ping');
    expect({ hellos: follower.hellos, server: follower.server }).toEqual({ hellos: 2, server: 'tls13' });
    socket.destroy();
    relay.close();
    server.close();
  });
});
