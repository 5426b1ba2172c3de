// The active open (RFC 9293 §3.5, §3.10.7.3): the stack dials a port in the sandbox, as for `-p`.
// The harness's "sandbox" peer answers our SYN by hand.
import { describe, expect, it } from 'vitest';
import type { TcpConn } from '../../netstack/index.js';
import { ACK, FIN, Harness, PSH, RST, SYN, settle, type Sent } from './tcp-harness.js';

const GATEWAY = '198.18.0.10'; // the harness's remote address plays our side
const SANDBOX_ADDR = '10.0.2.100';

function dial(h: Harness, port = 8080): { promise: Promise<TcpConn>; syn: Sent } {
  const promise = h.tcp.connect(4, GATEWAY, SANDBOX_ADDR, port);
  const [syn] = h.take();
  if (!syn) throw new Error('no SYN sent');
  return { promise, syn };
}

/** The sandbox's SYN-ACK to `syn`, with Linux's options unless told otherwise. */
function synAck(h: Harness, syn: Sent, opts: { isn?: number; windowShift?: number; timestamps?: boolean; ack?: number } = {}): void {
  h.inject({
    flags: SYN | ACK,
    srcPort: syn.dstPort,
    dstPort: syn.srcPort,
    seq: opts.isn ?? 5000,
    ack: opts.ack ?? (syn.seq + 1) >>> 0,
    window: 65535,
    mss: 1460,
    windowShift: opts.windowShift,
    sackPermitted: true,
    ts: opts.timestamps === false ? undefined : { val: 777, ecr: syn.ts?.val ?? 0 },
  });
}

describe('TCP active open towards the sandbox', () => {
  it('sends a SYN with MSS, window scale, SACK-permitted and timestamps from an ephemeral port', () => {
    const h = new Harness();
    const { promise, syn } = dial(h, 3000);
    promise.catch(() => {});
    expect(syn.flags).toBe(SYN);
    expect(syn.dstPort).toBe(3000);
    expect(syn.srcPort).toBeGreaterThanOrEqual(32768);
    expect([...syn.dst]).toEqual([10, 0, 2, 100]);
    expect(syn.mss).toBeGreaterThan(0);
    expect(syn.windowShift).toBeGreaterThanOrEqual(0);
    expect(syn.sackPermitted).toBe(true);
    expect(syn.ts).toBeDefined();
  });

  it('completes on the SYN-ACK: ACKs it and carries data both ways', async () => {
    const h = new Harness();
    const { promise, syn } = dial(h);
    synAck(h, syn, { windowShift: 7 });
    const conn = await promise;
    const [ack] = h.take();
    expect(ack!.flags).toBe(ACK);
    expect(ack!.seq).toBe((syn.seq + 1) >>> 0);
    expect(ack!.ack).toBe(5001);
    expect(ack!.ts?.ecr).toBe(777);

    const received: Buffer[] = [];
    conn.on('data', (d: Buffer) => received.push(d));
    conn.write(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    await settle();
    const out = h.take().find((s) => s.payload.length > 0);
    expect(out!.payload.toString()).toBe('GET / HTTP/1.0\r\n\r\n');

    h.inject({ flags: ACK | PSH | FIN, srcPort: syn.dstPort, dstPort: syn.srcPort, seq: 5001, ack: (syn.seq + 1 + 18) >>> 0, window: 512, payload: Buffer.from('hello'), ts: { val: 778, ecr: 1 } });
    await settle();
    expect(Buffer.concat(received).toString()).toBe('hello');
    expect(conn.readableEnded).toBe(true);
  });

  it('omits options on the connection that the SYN-ACK did not carry', async () => {
    const h = new Harness();
    const { promise, syn } = dial(h);
    synAck(h, syn, { timestamps: false });
    await promise;
    const [ack] = h.take();
    expect(ack!.ts).toBeUndefined();
  });

  it('rejects with ECONNREFUSED when the sandbox answers RST', async () => {
    const h = new Harness();
    const { promise, syn } = dial(h);
    h.inject({ flags: RST | ACK, srcPort: syn.dstPort, dstPort: syn.srcPort, seq: 0, ack: (syn.seq + 1) >>> 0 });
    await expect(promise).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('ignores a RST that does not acknowledge the SYN', async () => {
    const h = new Harness();
    const { promise, syn } = dial(h);
    h.inject({ flags: RST | ACK, srcPort: syn.dstPort, dstPort: syn.srcPort, seq: 0, ack: (syn.seq + 9) >>> 0 });
    synAck(h, syn);
    await expect(promise).resolves.toBeDefined();
  });

  it('answers a SYN-ACK with a wrong ACK number with RST and keeps waiting', async () => {
    const h = new Harness();
    const { promise, syn } = dial(h);
    synAck(h, syn, { ack: (syn.seq + 100) >>> 0 });
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST);
    expect(rst!.seq).toBe((syn.seq + 100) >>> 0);
    synAck(h, syn);
    await expect(promise).resolves.toBeDefined();
  });

  it('retransmits the SYN with backoff and gives up with ETIMEDOUT', async () => {
    const h = new Harness({ initialRtoMs: 1000, synAckRetries: 2 });
    const { promise, syn } = dial(h);
    let failure: unknown;
    promise.catch((e: unknown) => (failure = e));
    h.clock.advance(1000);
    const [again] = h.take();
    expect(again!.flags).toBe(SYN);
    expect(again!.seq).toBe(syn.seq);
    h.clock.advance(2000);
    expect(h.take()).toHaveLength(1);
    h.clock.advance(4000);
    await settle();
    expect(failure).toMatchObject({ code: 'ETIMEDOUT' });
  });

  it('resets the stream when the sandbox resets an established connection', async () => {
    const h = new Harness();
    const { promise, syn } = dial(h);
    synAck(h, syn);
    const conn = await promise;
    let error: NodeJS.ErrnoException | undefined;
    conn.on('error', (e: NodeJS.ErrnoException) => (error = e));
    h.inject({ flags: RST, srcPort: syn.dstPort, dstPort: syn.srcPort, seq: 5001 });
    await settle();
    expect(error?.code).toBe('ECONNRESET');
  });
});
