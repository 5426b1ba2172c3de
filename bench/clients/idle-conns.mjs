// Inside a sandbox: opens N TCP connections to an echo server at HOST:PORT, each one echoing one byte
// (so every connection is relayed end to end), prints {"mark": "open"} and holds them for HOLD seconds
// while the bench reads the network process's memory, then closes them. Prints {"ops": N, "seconds": S,
// "errors": E} (E: connections that failed or were not echoed within 10 s).
import net from 'node:net';

const [host, port, count = '1000', hold = '1'] = process.argv.slice(2);
const start = Date.now();
console.log(JSON.stringify({ mark: 'start' }));
const sockets = [];
let errors = 0;
await Promise.all(
  Array.from({ length: Number(count) }, () =>
    new Promise((resolve) => {
      const s = net.connect({ host, port: Number(port) }, () => s.write('x'));
      sockets.push(s);
      const timer = setTimeout(() => (errors++, resolve()), 10_000);
      s.once('data', () => (clearTimeout(timer), resolve()));
      s.on('error', () => (clearTimeout(timer), errors++, resolve()));
    }),
  ),
);
console.log(JSON.stringify({ mark: 'open' }));
await new Promise((r) => setTimeout(r, Number(hold) * 1000));
for (const s of sockets) s.destroy();
console.log(JSON.stringify({ ops: Number(count) - errors, seconds: (Date.now() - start) / 1000, errors }));
console.log(JSON.stringify({ mark: 'end' }));
await new Promise((r) => setTimeout(r, 300));
