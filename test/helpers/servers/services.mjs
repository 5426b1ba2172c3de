// The test host's servers, one process, each service chosen by a flag:
//   --tcp-echo PORT   echoes bytes; half-close aware (ends its side after the peer's FIN)
//   --tcp-sink PORT   reads everything, answers with "<bytes> <sha256>\n" after the peer's FIN
//   --tcp-stall-sink PORT  the same, pausing its reads for 30 ms after every 512 KiB (the sender's
//                     bytes then queue in the relay, then flow again)
//   --tcp-source PORT sends N bytes (the first line the client sends, a decimal), then closes
//   --tcp-reset PORT  sends 256 KiB, then resets the connection (RST, not FIN)
//   --http PORT       HTTP/1.1: GET /path → 200 "hello from the test host: /path"
//   --udp-echo PORT   echoes datagrams
//   --dns PORT ZONE   DNS over UDP from a JSON zone {"name": {"A": [...], "AAAA": [...], "CNAME": "x"}};
//                     every query it sees is printed as a JSON line {"query": name, "type": T}
//   --tls PORT        HTTPS (self-signed, any name): answers "tls hello <SNI>\n"; PORT + 1 the same,
//                     taking only P-256 key shares (a HelloRetryRequest for clients offering X25519 first)
// It binds on :: (v4 and v6), prints "ready" once listening; later lines are the DNS query log.
import net from 'node:net';
import http from 'node:http';
import dgram from 'node:dgram';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';

const args = process.argv.slice(2);
const listening = [];

for (let i = 0; i < args.length; i += 2) {
  const [flag, port] = [args[i], Number(args[i + 1])];
  if (flag === '--tcp-echo') {
    // A client that resets (a flood, a killed sandbox) must not take the server down: ignore socket errors.
    listening.push(listen(net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s)), port));
  } else if (flag === '--tcp-sink' || flag === '--tcp-stall-sink') {
    const stall = flag === '--tcp-stall-sink';
    listening.push(
      listen(
        net.createServer({ allowHalfOpen: true }, (s) => {
          const h = createHash('sha256');
          let n = 0;
          s.on('data', (d) => {
            if (stall && Math.floor((n + d.length) / 524288) > Math.floor(n / 524288)) {
              s.pause();
              setTimeout(() => s.resume(), 30);
            }
            n += d.length;
            h.update(d);
          });
          s.on('end', () => s.end(`${n} ${h.digest('hex')}\n`));
          s.on('error', () => {});
        }),
        port,
      ),
    );
  } else if (flag === '--tcp-source') {
    listening.push(
      listen(
        net.createServer((s) => {
          s.once('data', (d) => {
            let left = Number(d.toString().trim());
            const chunk = Buffer.alloc(65536);
            for (let j = 0; j < chunk.length; j++) chunk[j] = (j * 7 + 3) & 0xff;
            const pump = () => {
              while (left > 0) {
                const n = Math.min(left, chunk.length);
                left -= n;
                if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
              }
              s.end();
            };
            pump();
          });
          s.on('error', () => {});
        }),
        port,
      ),
    );
  } else if (flag === '--tcp-reset') {
    listening.push(
      listen(
        net.createServer((s) => {
          s.on('error', () => {});
          s.write(Buffer.alloc(256 << 10, 0x61), () => setTimeout(() => s.resetAndDestroy(), 100));
        }),
        port,
      ),
    );
  } else if (flag === '--http') {
    listening.push(listen(http.createServer((req, res) => res.end(`hello from the test host: ${req.url}`)), port));
  } else if (flag === '--udp-echo') {
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    listening.push(new Promise((r) => sock.bind(port, '::', r)));
  } else if (flag === '--dns') {
    const zone = JSON.parse(readFileSync(args[i + 2], 'utf8'));
    i++;
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const question = q.questions[0];
      console.log(JSON.stringify({ query: question.name, type: question.type }));
      const answers = resolve(zone, question.name, question.type);
      const rcode = zone[question.name.toLowerCase()] || answers.length ? 'NOERROR' : 'NXDOMAIN';
      const reply = dnsPacket.encode({ id: q.id, type: 'response', flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, rcode, questions: q.questions, answers });
      sock.send(reply, rinfo.port, rinfo.address);
    });
    listening.push(new Promise((r) => sock.bind(port, '::', r)));
  } else if (flag === '--tls') {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=tapbox test host'], { stdio: 'ignore' });
    const options = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
    rmSync(dir, { recursive: true, force: true });
    const server = https.createServer(options, (req, res) => res.end(`tls hello ${req.socket.servername}\n`));
    server.on('tlsClientError', () => {});
    listening.push(listen(server, port));
    // PORT + 1 takes only P-256 key shares: a client offering X25519 first gets a HelloRetryRequest.
    const retrying = https.createServer({ ...options, ecdhCurve: 'P-256' }, (req, res) => res.end(`tls hello ${req.socket.servername}\n`));
    retrying.on('tlsClientError', () => {});
    listening.push(listen(retrying, port + 1));
  } else {
    console.error(`services.mjs: unknown flag ${flag}`);
    process.exit(2);
  }
}

/** The zone's records of `type` for `name`, following a CNAME chain (which is answered too). */
function resolve(zone, name, type, depth = 0) {
  const entry = zone[name.toLowerCase()];
  if (!entry || depth > 8) return [];
  if (entry.CNAME) return [{ type: 'CNAME', name, ttl: 60, data: entry.CNAME }, ...resolve(zone, entry.CNAME, type, depth + 1)];
  return (entry[type] ?? []).map((data) => ({ type, name, ttl: 60, data }));
}

function listen(server, port) {
  return new Promise((r) => server.listen({ port, host: '::', ipv6Only: false }, r));
}

await Promise.all(listening);
console.log('ready');
