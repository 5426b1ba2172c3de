// Test proxies for --upstream-proxy, written from the RFCs (not with tapbox's own dialer code):
//   --http-connect PORT   HTTP CONNECT proxy (RFC 9110 §9.3.6)
//   --socks5 PORT         SOCKS5 proxy, CONNECT only (RFC 1928; user/password RFC 1929)
//   --auth USER:PASS      both proxies then demand these credentials (407 / SOCKS method 2)
//   --whoami PORT         HTTP server answering "you are <the client's address>\n"
// It binds on :: (v4 and v6), prints "ready", then one JSON line per proxy request:
//   {"proxy": "http"|"socks5", "target": "HOST:PORT", "auth": "USER:PASS"|null, "ok": true|false}
// Imported, it exports the two proxy servers for unit tests.
import net from 'node:net';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

/** An HTTP CONNECT proxy; `onRequest` hears every CONNECT. */
export function httpConnectProxy({ auth = null, onRequest = () => {} } = {}) {
  return net.createServer({ allowHalfOpen: true }, (client) => {
    client.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      client.pause();
      const lines = head.subarray(0, end).toString('latin1').split('\r\n');
      const rest = head.subarray(end + 4);
      const [method, target] = lines[0].split(' ');
      const header = lines.find((l) => /^proxy-authorization:/i.test(l));
      const given = header ? Buffer.from(header.replace(/^proxy-authorization:\s*basic\s+/i, ''), 'base64').toString() : null;
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target ?? '');
      if (method !== 'CONNECT' || !m) {
        onRequest({ proxy: 'http', target, auth: given, ok: false });
        return client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      }
      if (auth && given !== auth) {
        onRequest({ proxy: 'http', target, auth: given, ok: false });
        return client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n');
      }
      const upstream = net.connect({ host: m[1], port: Number(m[2]), allowHalfOpen: true });
      upstream.once('error', (err) => {
        onRequest({ proxy: 'http', target, auth: given, ok: false, error: err.code });
        client.end(err.code === 'ECONNREFUSED' ? 'HTTP/1.1 502 Bad Gateway\r\n\r\n' : 'HTTP/1.1 504 Gateway Timeout\r\n\r\n');
      });
      upstream.once('connect', () => {
        onRequest({ proxy: 'http', target, auth: given, ok: true });
        upstream.on('error', () => client.destroy());
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (rest.length) upstream.write(rest);
        upstream.pipe(client);
        client.pipe(upstream);
        client.resume();
      });
    };
    client.on('data', onData);
  });
}

/** A SOCKS5 proxy (CONNECT only); `onRequest` hears every request. */
export function socks5Proxy({ auth = null, onRequest = () => {} } = {}) {
  return net.createServer({ allowHalfOpen: true }, (client) => {
    client.on('error', () => {});
    let buf = Buffer.alloc(0);
    let stage = 'greeting';
    let given = null;
    const need = (n) => (buf.length >= n ? true : false);
    const take = (n) => {
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    };
    const step = () => {
      if (stage === 'greeting') {
        if (!need(2) || !need(2 + buf[1])) return;
        const methods = [...take(2 + buf[1]).subarray(2)];
        const wanted = auth ? 2 : 0;
        if (!methods.includes(wanted)) return client.end(Buffer.from([5, 0xff]));
        client.write(Buffer.from([5, wanted]));
        stage = auth ? 'auth' : 'request';
        return step();
      }
      if (stage === 'auth') {
        if (!need(2) || !need(2 + buf[1] + 1) || !need(2 + buf[1] + 1 + buf[2 + buf[1]])) return;
        const ulen = buf[1];
        const plen = buf[2 + ulen];
        const all = take(3 + ulen + plen);
        given = `${all.subarray(2, 2 + ulen)}:${all.subarray(3 + ulen)}`;
        if (given !== auth) {
          onRequest({ proxy: 'socks5', target: null, auth: given, ok: false });
          return client.end(Buffer.from([1, 1]));
        }
        client.write(Buffer.from([1, 0]));
        stage = 'request';
        return step();
      }
      if (stage === 'request') {
        if (!need(5)) return;
        const atyp = buf[3];
        const alen = atyp === 1 ? 4 : atyp === 4 ? 16 : 1 + buf[4];
        if (!need(4 + alen + 2)) return;
        const req = take(4 + alen + 2);
        const a = req.subarray(4, 4 + alen);
        const host = atyp === 1 ? [...a].join('.') : atyp === 4 ? a.toString('hex').match(/.{4}/g).map((g) => parseInt(g, 16).toString(16)).join(':') : a.subarray(1).toString();
        const port = req.readUInt16BE(4 + alen);
        const target = atyp === 4 ? `[${host}]:${port}` : `${host}:${port}`;
        stage = 'connecting';
        client.pause();
        const upstream = net.connect({ host, port, allowHalfOpen: true });
        upstream.once('error', (err) => {
          onRequest({ proxy: 'socks5', target, auth: given, ok: false, error: err.code });
          client.end(Buffer.from([5, err.code === 'ECONNREFUSED' ? 5 : 4, 0, 1, 0, 0, 0, 0, 0, 0]));
        });
        upstream.once('connect', () => {
          onRequest({ proxy: 'socks5', target, auth: given, ok: true });
          upstream.on('error', () => client.destroy());
          client.off('data', onData);
          client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
          if (buf.length) upstream.write(buf);
          upstream.pipe(client);
          client.pipe(upstream);
          client.resume();
        });
      }
    };
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      step();
    };
    client.on('data', onData);
  });
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '::', resolve);
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const value = (flag) => {
    const i = args.indexOf(flag);
    return i < 0 ? null : args[i + 1];
  };
  const auth = value('--auth');
  const onRequest = (r) => console.log(JSON.stringify(r));
  const started = [];
  if (value('--http-connect')) started.push(listen(httpConnectProxy({ auth, onRequest }), Number(value('--http-connect'))));
  if (value('--socks5')) started.push(listen(socks5Proxy({ auth, onRequest }), Number(value('--socks5'))));
  if (value('--whoami')) {
    const server = http.createServer((req, res) => res.end(`you are ${req.socket.remoteAddress.replace(/^::ffff:/, '')}\n`));
    started.push(listen(server, Number(value('--whoami'))));
  }
  await Promise.all(started);
  console.log('ready');
}
