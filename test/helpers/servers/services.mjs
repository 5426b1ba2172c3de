// The test host's servers, one process, each service chosen by a flag:
//   --tcp-echo PORT   echoes bytes; half-close aware (ends its side after the peer's FIN)
//   --tcp-sink PORT   reads everything, answers with "<bytes> <sha256>\n" after the peer's FIN
//   --tcp-source PORT sends N bytes (the first line the client sends, a decimal), then closes
//   --http PORT       HTTP/1.1: GET /path → 200 "hello from the test host: /path"
//   --udp-echo PORT   echoes datagrams
// It binds on :: (v4 and v6), prints "ready" once listening, then nothing.
import net from 'node:net';
import http from 'node:http';
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';

const args = process.argv.slice(2);
const listening = [];

for (let i = 0; i < args.length; i += 2) {
  const [flag, port] = [args[i], Number(args[i + 1])];
  if (flag === '--tcp-echo') {
    listening.push(listen(net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)), port));
  } else if (flag === '--tcp-sink') {
    listening.push(
      listen(
        net.createServer({ allowHalfOpen: true }, (s) => {
          const h = createHash('sha256');
          let n = 0;
          s.on('data', (d) => {
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
  } else if (flag === '--http') {
    listening.push(listen(http.createServer((req, res) => res.end(`hello from the test host: ${req.url}`)), port));
  } else if (flag === '--udp-echo') {
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    listening.push(new Promise((r) => sock.bind(port, '::', r)));
  } else {
    console.error(`services.mjs: unknown flag ${flag}`);
    process.exit(2);
  }
}

function listen(server, port) {
  return new Promise((r) => server.listen({ port, host: '::', ipv6Only: false }, r));
}

await Promise.all(listening);
console.log('ready');
