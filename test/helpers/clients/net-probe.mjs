// Runs inside a sandbox: one network action, its outcome as one JSON line on stdout.
//   tcp-upload HOST PORT BYTES [random]  send BYTES of a fixed pattern (random bytes: no two chunks
//                                   alike) to a --tcp-sink, half-close, read its "<bytes> <sha256>"
//                                   reply → {ok, bytes, sha256Match}
//   tcp-download HOST PORT BYTES    ask a --tcp-source for BYTES, read to EOF → {ok, bytes, sha256Match}
//   tcp-connect HOST PORT           connect and close → {ok} or {error: CODE}
//   tcp-read HOST PORT              connect, read until the end → {ok, bytes} or {error: CODE, bytes}
//   tcp-many HOST PORT N            N concurrent connections to an echo server, each sends and checks a
//                                   unique line → {ok, completed}
//   udp-echo HOST PORT              one datagram to an echo server → {ok} or {error}
//   dns-query SERVER NAME           an A query straight to SERVER (not the resolv.conf one)
//                                   → {ok, addresses} or {error}
//   tls-late HOST PORT SNI          connect, stay silent 1.5 s, then a TLS handshake naming SNI and
//                                   GET / → {ok, body} or {error}
//   http-two HOST PORT NAME1 NAME2  one keep-alive connection: GET /one with Host NAME1, read its
//                                   response, then GET /two with Host NAME2 → {first, second, error}
//   http-raw HOST PORT JSON         one connection: sends each request of the JSON array of raw
//                                   strings once the previous one was answered
//                                   → {responses, error}
//   tls-retry HOST PORT SNI1 SNI2  a TLS 1.3 handshake naming SNI1 whose first ClientHello offers only an
//                                   X25519 key share (a P-256-only server asks for a retry), relayed by
//                                   hand: the second ClientHello is rewritten to name SNI2 (same length),
//                                   then GET / → {ok, hellos, body} or {error, hellos}
//   quic-two NAME1 NAME2 PORT [short]  to a UDP echo server: a QUIC v1 Initial naming NAME1 (under
//                                   1200 bytes with 'short'), then, once echoed, one to the same
//                                   connection ID naming NAME2 (the first again, a retransmission,
//                                   when NAME2 is NAME1) → {echoes, error}
//   quic-then NAME PORT             to a UDP echo server: a QUIC v1 Initial whose ClientHello names
//                                   NAME, sent twice (each echo awaited), then a datagram of another
//                                   protocol → {echoes, error} (error: how the third one failed)
// Every outcome includes ms (elapsed).
import net from 'node:net';
import dgram from 'node:dgram';
import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { promises as dns } from 'node:dns';
import tls from 'node:tls';
import { Duplex } from 'node:stream';

const [action, host, portText, countText] = process.argv.slice(2);
const port = Number(portText);
const started = Date.now();
const done = (result) => {
  console.log(JSON.stringify({ ...result, ms: Date.now() - started }));
  process.exit(0);
};

function pattern(bytes, onChunk) {
  const chunk = Buffer.alloc(65536);
  for (let j = 0; j < chunk.length; j++) chunk[j] = (j * 7 + 3) & 0xff;
  const hash = createHash('sha256');
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    const part = n === chunk.length ? chunk : chunk.subarray(0, n);
    hash.update(part);
    onChunk?.(part);
    left -= n;
  }
  return hash.digest('hex');
}

if (action === 'tcp-upload') {
  const bytes = Number(countText);
  const random = process.argv[6] === 'random';
  const sent = createHash('sha256');
  const expected = random ? null : pattern(bytes);
  const s = net.connect({ host, port, allowHalfOpen: true }, () => {
    const chunk = Buffer.alloc(65536);
    for (let j = 0; j < chunk.length; j++) chunk[j] = (j * 7 + 3) & 0xff;
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        const part = random ? randomBytes(n) : n === chunk.length ? chunk : chunk.subarray(0, n);
        if (random) sent.update(part);
        if (!s.write(part)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  let reply = '';
  s.on('data', (d) => (reply += d));
  s.on('end', () => {
    const [got, sha] = reply.trim().split(' ');
    done({ ok: true, bytes: Number(got), sha256Match: sha === (expected ?? sent.digest('hex')) });
  });
  s.on('error', (e) => done({ error: e.code }));
} else if (action === 'tcp-download') {
  const bytes = Number(countText);
  const expected = pattern(bytes);
  const hash = createHash('sha256');
  let got = 0;
  const s = net.connect({ host, port }, () => s.write(`${bytes}\n`));
  s.on('data', (d) => {
    got += d.length;
    hash.update(d);
  });
  s.on('end', () => done({ ok: true, bytes: got, sha256Match: hash.digest('hex') === expected }));
  s.on('error', (e) => done({ error: e.code }));
} else if (action === 'tcp-connect') {
  const s = net.connect({ host, port }, () => {
    s.destroy();
    done({ ok: true });
  });
  s.on('error', (e) => done({ error: e.code }));
} else if (action === 'tcp-read') {
  let got = 0;
  const s = net.connect({ host, port });
  s.on('data', (d) => (got += d.length));
  s.on('end', () => done({ ok: true, bytes: got }));
  s.on('error', (e) => done({ error: e.code, bytes: got }));
} else if (action === 'tcp-many') {
  const n = Number(countText);
  let completed = 0;
  let failed = 0;
  const finish = () => completed + failed === n && done({ ok: failed === 0, completed, failed });
  for (let i = 0; i < n; i++) {
    const line = `connection ${i} of ${n}\n`;
    let echoed = '';
    const s = net.connect({ host, port }, () => s.end(line));
    s.on('data', (d) => (echoed += d));
    s.on('end', () => (echoed === line ? completed++ : failed++, finish()));
    s.on('error', () => (failed++, finish()));
  }
} else if (action === 'udp-echo') {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const payload = Buffer.from('ping over udp');
  sock.on('message', (m) => done({ ok: m.equals(payload) }));
  sock.on('error', (e) => done({ error: e.code }));
  sock.connect(port, host, () => sock.send(payload));
  setTimeout(() => done({ error: 'TIMEOUT' }), 5000);
} else if (action === 'dns-query') {
  const resolver = new dns.Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([host]);
  resolver.resolve4(portText).then(
    (addresses) => done({ ok: true, addresses }),
    (e) => done({ error: e.code }),
  );
} else if (action === 'tls-late') {
  const s = net.connect({ host, port }, () =>
    setTimeout(() => {
      const t = tls.connect({ socket: s, servername: countText, rejectUnauthorized: false }, () => t.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      let body = '';
      t.on('data', (d) => (body += d));
      t.on('end', () => done({ ok: true, body: body.slice(body.indexOf('\r\n\r\n') + 4) }));
      t.on('error', (e) => done({ error: e.code }));
    }, 1500),
  );
  s.on('error', (e) => done({ error: e.code }));
} else if (action === 'http-two') {
  const names = [countText, process.argv[6]];
  let buf = '';
  let first = null;
  const s = net.connect({ host, port }, () => s.write(`GET /one HTTP/1.1\r\nHost: ${names[0]}\r\n\r\n`));
  s.on('data', (d) => {
    buf += d;
    if (first === null && buf.includes('/one')) {
      first = buf;
      buf = '';
      s.write(`GET /two HTTP/1.1\r\nHost: ${names[1]}\r\n\r\n`);
    } else if (first !== null && buf.includes('/two')) {
      done({ first, second: buf });
    }
  });
  s.on('end', () => done({ first, second: buf }));
  s.on('error', (e) => done({ first, second: buf, error: e.code }));
} else if (action === 'http-raw') {
  const requests = JSON.parse(countText);
  const responses = [];
  let buf = '';
  const s = net.connect({ host, port }, () => s.write(requests.shift()));
  s.on('data', (d) => {
    buf += d;
    if (!buf.includes('\r\n\r\n')) return;
    responses.push(buf);
    buf = '';
    if (requests.length) s.write(requests.shift());
    else done({ responses });
  });
  s.on('end', () => done({ responses: buf ? [...responses, buf] : responses, error: 'EOF' }));
  s.on('error', (e) => done({ responses, error: e.code }));
  setTimeout(() => done({ responses, error: 'TIMEOUT' }), 8000);
} else if (action === 'tls-retry') {
  const [sni, rewritten] = [countText, process.argv[6]];
  // A real TLS client over an in-memory stream; this relays its bytes, rewriting its later ClientHellos.
  const raw = net.connect({ host, port });
  let hellos = 0;
  const inner = new Duplex({
    read() {},
    write(chunk, _e, cb) {
      let bytes = Buffer.from(chunk);
      // Every write naming SNI1 carries a ClientHello in clear (after the first, the retry's).
      if (bytes.includes(sni) && hellos++ > 0) bytes = Buffer.from(bytes.toString('latin1').replaceAll(sni, rewritten), 'latin1');
      raw.write(bytes);
      cb();
    },
  });
  raw.on('data', (d) => inner.push(d));
  raw.on('end', () => inner.push(null));
  raw.on('error', (e) => done({ error: e.code, hellos }));
  raw.on('connect', () => {
    const t = tls.connect({ socket: inner, servername: sni, ecdhCurve: 'X25519:P-256', minVersion: 'TLSv1.3', rejectUnauthorized: false }, () =>
      t.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    let body = '';
    t.on('data', (d) => (body += d));
    t.on('end', () => done({ ok: true, hellos, body: body.slice(body.indexOf('\r\n\r\n') + 4) }));
    t.on('error', (e) => setTimeout(() => done({ error: e.code, hellos }), 200));
  });
} else if (action === 'quic-two') {
  const [second, udpPort, short] = process.argv.slice(4);
  const [address] = await dns.resolve4(host);
  const dcid = Buffer.from('0102030405060708', 'hex');
  const first = quicInitial(dcid, await clientHello(host), short !== 'short');
  const sends = [first, second === host ? first : quicInitial(dcid, await clientHello(second))];
  const sock = dgram.createSocket('udp4');
  let echoes = 0;
  sock.on('message', () => {
    echoes++;
    if (echoes < sends.length) sock.send(sends[echoes]);
    else done({ echoes });
  });
  sock.on('error', (e) => done({ echoes, error: e.code }));
  sock.connect(Number(udpPort), address, () => sock.send(sends[0]));
  setTimeout(() => done({ echoes, error: 'TIMEOUT' }), 3000);
} else if (action === 'quic-then') {
  const [address] = await dns.resolve4(host);
  const initial = quicInitial(Buffer.from('0102030405060708', 'hex'), await clientHello(host));
  const sock = dgram.createSocket('udp4');
  const sends = [initial, initial, Buffer.from('\x01 another protocol: secret=42')];
  let echoes = 0;
  sock.on('message', () => {
    echoes++;
    if (echoes < sends.length) sock.send(sends[echoes]);
    else done({ echoes });
  });
  sock.on('error', (e) => done({ echoes, error: e.code }));
  sock.connect(port, address, () => sock.send(sends[0]));
  setTimeout(() => done({ echoes, error: 'TIMEOUT' }), 8000);
} else {
  console.error(`net-probe: unknown action ${action}`);
  process.exit(2);
}

/** A ClientHello handshake message naming `servername`, as node:tls writes it (record header removed). */
async function clientHello(servername) {
  const server = net.createServer();
  const hello = new Promise((resolve) =>
    server.on('connection', (s) => {
      let got = Buffer.alloc(0);
      s.on('data', (c) => {
        got = Buffer.concat([got, c]);
        if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
          resolve(got.subarray(5, 5 + got.readUInt16BE(3)));
          s.destroy();
        }
      });
    }),
  );
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const c = tls.connect({ host: '127.0.0.1', port: server.address().port, servername, rejectUnauthorized: false });
  c.on('error', () => {});
  const h = await hello;
  c.destroy();
  server.close();
  return h;
}

/** A protected QUIC v1 client Initial carrying `hello` in one CRYPTO frame (RFC 9001 §5). */
function quicInitial(dcid, hello, pad = true) {
  const label = (l, n) => {
    const f = Buffer.from(`tls13 ${l}`);
    return Buffer.concat([Buffer.from([n >> 8, n & 255, f.length]), f, Buffer.from([0])]);
  };
  const expand = (secret, l, n) => createHmac('sha256', secret).update(Buffer.concat([label(l, n), Buffer.from([1])])).digest().subarray(0, n);
  const secret = Buffer.from(hkdfSync('sha256', dcid, Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex'), label('client in', 32), 32));
  const key = expand(secret, 'quic key', 16);
  const iv = expand(secret, 'quic iv', 12);
  const hp = expand(secret, 'quic hp', 16);
  const frame = Buffer.concat([Buffer.from([0x06, 0x00, 0x40 | (hello.length >> 8), hello.length & 0xff]), hello]);
  const payload = Buffer.concat([frame, Buffer.alloc(pad ? Math.max(0, 1162 - frame.length) : 0)]);
  const length = 4 + payload.length + 16;
  const header = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([0, 0, 0x40 | (length >> 8), length & 0xff, 0, 0, 0, 0])]);
  const gcm = createCipheriv('aes-128-gcm', key, iv);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  const mask = createCipheriv('aes-128-ecb', hp, null).update(sealed.subarray(0, 16));
  header[0] ^= mask[0] & 0x0f;
  for (let i = 0; i < 4; i++) header[header.length - 4 + i] ^= mask[1 + i];
  return Buffer.concat([header, sealed]);
}
