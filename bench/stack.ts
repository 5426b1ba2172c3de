// The stack's own JavaScript cost, without the kernel, the TAP or the host sockets: what is left to
// cut inside netstack/ per UDP request/response and per short TCP connection. Run it with
// `npx tsc -p tsconfig.json && node dist/bench/stack.js` (no root needed). A forwarder that answers
// in memory stands for the supervisor; frames the stack writes are counted and dropped.
//   UDP: a 64-byte datagram in from the sandbox, handed to the flow's handler, which sends it back.
//   TCP: SYN; the handshake's ACK; request and FIN; our answer and FIN; the sandbox's last ACK (the
//        connrate client's pattern), including the one event-loop turn the answer takes.
import { checksumTs, pseudoHeaderChecksum } from '../netstack/header/checksum.js';
import { TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_PSH, TCP_FLAG_SYN, TcpHeader, TcpRepr } from '../netstack/header/tcp.js';
import { createTcp, ManualClock, Stack, type Forwarder, type LinkEndpoint, type TcpProtocol } from '../netstack/index.js';
import { ethernet, GATEWAY_MAC, ipv4, SANDBOX4, SANDBOX_MAC, udp4Frame, v4 } from '../test/conformance/frames.js';

const SERVER = v4('198.18.0.2');
const ROUNDS = 3;

/** The frames the stack writes: counted, and the last one kept (in one reused buffer). */
class CountingLink implements LinkEndpoint {
  readonly mtu = 65520;
  written = 0;
  private readonly copy = Buffer.alloc(14 + 65535);
  private lastLength = 0;
  attach(): void {}
  writeFrame(frame: Uint8Array): void {
    this.written++;
    this.copy.set(frame);
    this.lastLength = frame.length;
  }
  get last(): Buffer {
    return this.copy.subarray(0, this.lastLength);
  }
  close(): void {}
}

function stackWith(forwarder: Forwarder): { stack: Stack; tcp: TcpProtocol; link: CountingLink; clock: ManualClock } {
  const link = new CountingLink();
  const clock = new ManualClock();
  const stack = new Stack({ link, clock, forwarder });
  const tcp = createTcp({ sender: stack, forwarder, clock });
  stack.registerTransport(tcp);
  return { stack, tcp, link, clock };
}

function report(what: string, ns: bigint, n: number): void {
  console.log(`${what}: ${(Number(ns) / n / 1000).toFixed(2)} µs`);
}

async function udpRoundTrips(): Promise<void> {
  const { stack, link } = stackWith({
    tcp: () => {},
    udp: (req) => {
      const conn = req.accept();
      conn.onMessage = (payload) => conn.send(payload);
    },
  });
  const frame = udp4Frame(SERVER, 40000, 7, Buffer.alloc(64, 0x61));
  stack.deliverFrame(frame); // the first datagram opens the session, delivered once the handler is set
  await new Promise((resolve) => setImmediate(resolve));
  for (let round = 0; round < ROUNDS; round++) {
    const n = 200_000;
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) stack.deliverFrame(frame);
    report('UDP request/response, stack JS per round trip', process.hrtime.bigint() - start, n);
  }
  if (link.written < ROUNDS * 200_000) throw new Error(`only ${link.written} answers were sent; drops ${JSON.stringify(stack.counters.drops)}`);
}

/** One segment from the sandbox's port `port` to SERVER:8080. */
function segment(port: number, seq: number, ack: number, flags: number, data = Buffer.alloc(0)): Buffer {
  const tcp = Buffer.alloc(20 + data.length);
  const r = Object.assign(new TcpRepr(), { srcPort: port, dstPort: 8080, seq, ack, flags, window: 65535 });
  const h = new TcpHeader(tcp, 0);
  r.emit(h);
  data.copy(tcp, 20);
  h.checksum = ~checksumTs(tcp, 0, tcp.length, pseudoHeaderChecksum(SANDBOX4, SERVER, 6, tcp.length)) & 0xffff;
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: SERVER, protocol: 6, payload: tcp }));
}

async function shortConnections(): Promise<void> {
  const { stack, tcp, link, clock } = stackWith({
    tcp: (req) => {
      const conn = req.accept();
      conn.on('data', () => {});
      conn.on('end', () => conn.end('HTTP/1.0 200 OK\r\n\r\nhello'));
    },
    udp: () => {},
  });
  const request = Buffer.from('GET / HTTP/1.0\r\n\r\n');
  const tcpOf = (frame: Buffer) => new TcpHeader(frame, 14 + 20);
  let port = 20000;
  for (let round = 0; round < ROUNDS; round++) {
    const n = 10_000;
    let ns = 0n;
    for (let i = 0; i < n; i++) {
      port = port >= 60000 ? 20000 : port + 1;
      const start = process.hrtime.bigint();
      stack.deliverFrame(segment(port, 1000, 0, TCP_FLAG_SYN));
      const iss = tcpOf(link.last).seq;
      stack.deliverFrame(segment(port, 1001, iss + 1, TCP_FLAG_ACK));
      stack.deliverFrame(segment(port, 1001, iss + 1, TCP_FLAG_ACK | TCP_FLAG_PSH | TCP_FLAG_FIN, request));
      await new Promise((resolve) => setImmediate(resolve));
      const answer = link.last.length - 14 - 20 - tcpOf(link.last).dataOffset;
      stack.deliverFrame(segment(port, 1001 + request.length + 1, iss + 1 + answer + 1, TCP_FLAG_ACK));
      ns += process.hrtime.bigint() - start;
      if (i % 1000 === 999) clock.advance(60_000); // lets closed connections' timers go
    }
    report('TCP short connection, stack JS per connection (frames built by the bench included)', ns, n);
  }
  clock.advance(60_000);
  const { connectionsEstablished, resetsSent } = tcp.stats;
  if (connectionsEstablished !== ROUNDS * 10_000 || resetsSent !== 0 || tcp.connectionCount !== 0) {
    throw new Error(`connections did not run their course: ${JSON.stringify({ connectionsEstablished, resetsSent, open: tcp.connectionCount })}`);
  }
}

await udpRoundTrips();
await shortConnections();
