// Inside a sandbox: for SECONDS, send a 64-byte datagram to HOST:PORT and wait for its echo, one at a
// time. Prints {"ops": N, "seconds": S, "errors": E} (errors = datagrams not answered within 1 s)
// between the marks {"mark": "start"} and {"mark": "end"}, as bench/clients/connrate.mjs does.
import dgram from 'node:dgram';

const [host, port, seconds] = process.argv.slice(2);
const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const payload = Buffer.alloc(64, 0x61);
const until = Date.now() + Number(seconds) * 1000;
let ops = 0;
let errors = 0;

function once() {
  return new Promise((resolve) => {
    const timer = setTimeout(() => (errors++, sock.off('message', onMessage), resolve()), 1000);
    const onMessage = () => (clearTimeout(timer), ops++, resolve());
    sock.once('message', onMessage);
    sock.send(payload, Number(port), host);
  });
}

console.log(JSON.stringify({ mark: 'start' }));
const start = Date.now();
while (Date.now() < until) await once();
sock.close();
console.log(JSON.stringify({ ops, seconds: (Date.now() - start) / 1000, errors }));
console.log(JSON.stringify({ mark: 'end' }));
await new Promise((r) => setTimeout(r, 300));
