// Inside a sandbox: for SECONDS, open a TCP connection to HOST:PORT, send an HTTP/1.0 request, read the
// response to its end; CONCURRENCY loops at once. PORT may be a list (8080,8081): each connection takes
// the next port in turn (bench/run.ts says why). CLOSER says who closes first: `client` (the request is
// followed by our FIN) or `server` (we wait for the server to answer and close first, as HTTP/1.0
// servers, many APIs and CDNs do; our side closes after its FIN). Prints {"ops": N, "seconds": S,
// "errors": E} between the marks {"mark": "start"} and {"mark": "end"} (the bench reads the network
// process's CPU at each; we stay 300 ms after the last). A connection that makes no progress for 5 s
// counts as an error, so a stalled network ends the run.
import net from 'node:net';

const [host, portList, seconds, concurrency = '8', closer = 'client'] = process.argv.slice(2);
const ports = portList.split(',').map(Number);
const until = Date.now() + Number(seconds) * 1000;
let ops = 0;
let errors = 0;
let opened = 0;

function once() {
  return new Promise((resolve) => {
    // allowHalfOpen false (the default): the server's FIN ends our side too.
    const s = net.connect({ host, port: ports[opened++ % ports.length] }, () => (closer === 'server' ? s.write('GET / HTTP/1.0\r\n\r\n') : s.end('GET / HTTP/1.0\r\n\r\n')));
    s.setTimeout(5000, () => s.destroy(new Error('stalled')));
    s.on('data', () => {});
    s.on('end', () => (ops++, resolve()));
    s.on('error', () => (errors++, resolve()));
  });
}

async function loop() {
  while (Date.now() < until) await once();
}

console.log(JSON.stringify({ mark: 'start' }));
const start = Date.now();
await Promise.all(Array.from({ length: Number(concurrency) }, loop));
console.log(JSON.stringify({ ops, seconds: (Date.now() - start) / 1000, errors }));
console.log(JSON.stringify({ mark: 'end' }));
await new Promise((r) => setTimeout(r, 300));
