// Fuzz properties (fast-check) for the flow checks of src/egress/inspect/, seeded with the attacks of issue 11:
// the HTTP framer on the attack corpus (test/helpers/http-attacks.ts) mutated with the bytes servers
// read leniently, the TLS follower on record sequences mixing retries and other names, the QUIC reader
// on CRYPTO frames of two ClientHellos cut, reordered and retransmitted. The contract: no input makes
// a check throw; its answer doesn't depend on how the stream is cut; and nothing naming another host
// gets through. The differential test against real servers (test/integration/http-differential.test.ts)
// fuzzes the framer against them too. FUZZ_RUNS scales the runs.
import { createCipheriv } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { HttpRequestFramer } from '../../src/egress/inspect/http.js';
import { clientInitialKeys, QuicClientHelloReader, QuicSessionShape } from '../../src/egress/inspect/quic.js';
import { parseHandshakeMessage } from '../../src/egress/inspect/tls.js';
import { TlsHandshakeFollower } from '../../src/egress/inspect/tls-follow.js';
import { mutatedHttp } from '../helpers/http-attacks.js';
import { HRR_RANDOM, record, serverHello } from '../helpers/tls-records.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 500);

/** Runs a framer over `chunks` with `answers` from the server after each; the hosts checked, the refusal, and what went on. */
function frame(chunks: Buffer[], answers: Buffer[], sniffing: boolean) {
  const hosts: string[] = [];
  const f = new HttpRequestFramer((h) => (hosts.push(h), h === 'good.example' ? null : `${h} refused`), 4096, { sniffing });
  const out: Buffer[] = [];
  let refused: string | null = null;
  for (let i = 0; i < chunks.length && refused === null; i++) {
    refused = f.push(chunks[i]);
    if (refused === null && answers[i]) refused = f.pushResponse(answers[i]);
    if (refused === null) out.push(...f.drain());
  }
  return { hosts, refused, out: Buffer.concat(out) };
}

function cutAt(b: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set([0, ...cuts.map((c) => c % (b.length + 1)), b.length])].sort((x, y) => x - y);
  return at.slice(1).map((end, i) => b.subarray(at[i], end));
}

describe('fuzz: HTTP framer', () => {
  it('never throws, and answers the same however the stream and the answers are cut', () => {
    const answer = fc.constantFrom('', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    fc.assert(
      fc.property(mutatedHttp, fc.array(fc.nat(), { maxLength: 6 }), answer, fc.boolean(), (stream, cuts, reply, sniffing) => {
        const whole = frame([stream], [Buffer.from(reply)], sniffing);
        // The server's answer comes once all the client's bytes were pushed, in both runs.
        const pieces = cutAt(stream, cuts);
        const cut = frame(pieces, pieces.map((_, i) => (i === pieces.length - 1 ? Buffer.from(reply) : Buffer.alloc(0))), sniffing);
        expect(cut.refused).toBe(whole.refused);
        expect(cut.hosts).toEqual(whole.hosts);
        if (whole.refused === null) expect(cut.out.equals(whole.out)).toBe(true);
        expect(stream.subarray(0, whole.out.length).equals(whole.out)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('what it lets through, framed again, is the same requests (no request hides in what passed unread)', () => {
    fc.assert(
      fc.property(mutatedHttp, (stream) => {
        const first = frame([stream], [], false);
        const again = frame([first.out], [], false);
        expect(again.refused).toBeNull();
        expect(again.hosts.every((h) => h === 'good.example')).toBe(true);
        if (first.refused === null) expect(again.hosts).toEqual(first.hosts);
        expect(again.out.equals(first.out)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: TLS handshake following', () => {
  let good: Buffer;
  let evil: Buffer;
  beforeAll(async () => {
    [good, evil] = [await clientHello('good.example'), await clientHello('evil.example')];
  });

  it('relays no ClientHello naming another server while the records are in clear, in any order of records and answers', () => {
    const step = fc.constantFrom('evil', 'good', 'ccs', 'appdata', 'alert', 'hrr', 'sh13', 'sh12', 'junk');
    fc.assert(
      fc.property(fc.array(step, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 4 }), (steps, cuts) => {
        const f = new TlsHandshakeFollower();
        const relayed: Buffer[] = [];
        let refused: string | null = f.push(good);
        relayed.push(...f.drain());
        let tls12 = false;
        for (const s of steps) {
          if (refused !== null || f.done) break;
          // After a TLS 1.2 ServerHello and the client's ChangeCipherSpec the server decrypts what follows.
          if (tls12 && s === 'ccs') break;
          if (s === 'sh12') tls12 = true;
          if (s === 'hrr' || s === 'sh13' || s === 'sh12') {
            f.pushResponse(serverHello(s === 'hrr' ? HRR_RANDOM : Buffer.alloc(32, 1), s === 'sh12' ? null : 0x0304));
            continue;
          }
          const bytes = { evil, good, ccs: record(0x14, Buffer.from([1])), appdata: record(0x17, Buffer.alloc(30, 7)), alert: record(0x15, Buffer.from([1, 0])), junk: Buffer.from('GET / HTTP/1.1\r\n') }[s];
          for (const piece of cutAt(bytes, cuts)) {
            if (refused !== null || f.done) break;
            refused = f.push(piece);
            relayed.push(...f.drain());
          }
        }
        const before = Buffer.concat(relayed);
        expect(before.indexOf(evil.subarray(5))).toBe(-1);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: QUIC ClientHello reader', () => {
  let good: Buffer;
  let evil: Buffer;
  beforeAll(async () => {
    [good, evil] = [(await clientHello('good.example')).subarray(5), (await clientHello('evil.example')).subarray(5)];
  });
  const dcid = Buffer.from('0102030405060708', 'hex');

  it('answers "ok" only when every ClientHello a server would reassemble names the server it judged', () => {
    // A CRYPTO stream of two ClientHellos (a retry), sent as random pieces, in any order, some retransmitted with other bytes.
    const piece = fc.record({ start: fc.nat(), length: fc.integer({ min: 1, max: 400 }), second: fc.boolean(), forged: fc.boolean() });
    fc.assert(
      fc.property(fc.boolean(), fc.array(piece, { minLength: 1, maxLength: 10 }), (secondEvil, pieces) => {
        const stream = Buffer.concat([good, secondEvil ? evil : good]);
        const other = Buffer.concat([evil, good]);
        const reader = new QuicClientHelloReader();
        // What a server keeps: the first bytes received at each offset.
        const kept = Buffer.alloc(stream.length);
        const have = new Uint8Array(stream.length);
        let result: ReturnType<QuicClientHelloReader['push']> = { status: 'incomplete' };
        let pn = 0;
        for (const p of pieces) {
          const start = p.start % stream.length;
          const data = (p.forged ? other : stream).subarray(start, Math.min(stream.length, start + p.length));
          result = reader.push(initial(dcid, start, data, pn++));
          if (result.status === 'invalid') return;
          for (let i = 0; i < data.length; i++) if (!have[start + i]) (have[start + i] = 1), (kept[start + i] = data[i]);
        }
        // A server reads whole ClientHellos from the start of what it kept: if we said ok, each names the server we judged.
        let contiguous = 0;
        while (contiguous < stream.length && have[contiguous]) contiguous++;
        if (result.status !== 'ok') return;
        for (let at = 0; at + 4 <= contiguous; ) {
          const length = 4 + kept.readUIntBE(at + 1, 3);
          if (at + length > contiguous) break;
          expect(parseHandshakeMessage(kept.subarray(at, at + length))).toMatchObject({ status: 'ok', sni: result.sni });
          at += length;
        }
      }),
      { numRuns: RUNS / 5 },
    );
  });

  it('never throws on datagrams of any shape, before or after a connection was admitted', () => {
    const shape = new QuicSessionShape();
    shape.admit(dcid.toString('hex'));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), fc.constantFrom(0xc0, 0xd0, 0xe0, 0xf0, 0x40, 0x00), (bytes, first) => {
        const d = Buffer.concat([Buffer.from([first, 0, 0, 0, 1, 8]), dcid, Buffer.from(bytes)]);
        new QuicClientHelloReader().push(d);
        new QuicClientHelloReader(dcid).push(Buffer.from(bytes));
        shape.client(d);
        shape.server(d);
      }),
      { numRuns: RUNS },
    );
  });
});

/** A client Initial with one CRYPTO frame, padded to 1200 bytes. */
function initial(dcid: Buffer, offset: number, data: Buffer, pn: number): Buffer {
  const varint = (n: number) => (n < 64 ? Buffer.from([n]) : Buffer.from([0x40 | (n >> 8), n & 0xff]));
  const frame = Buffer.concat([Buffer.from([0x06]), varint(offset), varint(data.length), data]);
  const fill = 1200 - 16 - (14 + dcid.length);
  const payload = Buffer.concat([frame, Buffer.alloc(Math.max(0, fill - frame.length))]);
  const pnBytes = Buffer.alloc(4);
  pnBytes.writeUInt32BE(pn);
  const length = 4 + payload.length + 16;
  const header = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([0, 0, 0x40 | (length >> 8), length & 0xff]), pnBytes]);
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

/** The first record node:tls sends for `servername`. */
async function clientHello(servername: string): Promise<Buffer> {
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
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, rejectUnauthorized: false });
  client.on('error', () => {});
  const hello = await captured;
  client.destroy();
  server.close();
  return hello;
}
