// Loss recovery: RTO with backoff (RFC 6298), fast retransmit (RFC 5681/6582), SACK recovery
// (RFC 6675), RACK-TLP (RFC 8985), path MTU (ICMP packet-too-big) and CUBIC's reaction (RFC 9438).
import { describe, expect, it } from 'vitest';
import { Cubic } from '../../netstack/transport/tcp/cubic.js';
import { Harness, Peer, RST, bytes, settle, type Sent } from './tcp-harness.js';

function dataOnly(segs: Sent[]): Sent[] {
  return segs.filter((s) => s.payload.length > 0);
}

describe('TCP loss recovery', () => {
  it('retransmits on RTO with exponential backoff, then aborts with ETIMEDOUT', async () => {
    const h = new Harness({ maxRetransmits: 4 });
    const peer = await h.open({ sackPermitted: false, mss: 1000, timestamps: false });
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => peer.conn.on('error', resolve));
    peer.conn.write(bytes(500));
    await settle();
    expect(dataOnly(h.take())).toHaveLength(1);
    h.clock.advance(60_000);
    const segs = h.take();
    const retransmits = dataOnly(segs);
    // RTO 200 ms (floor), doubling: 200, 400, 800, 1600 ms apart.
    expect(retransmits.map((s) => s.at)).toEqual([200, 600, 1400, 3000]);
    expect(retransmits.every((s) => peer.rel(s.seq) === 0 && s.payload.length === 500)).toBe(true);
    const rst = segs.at(-1)!;
    expect(rst.flags & RST).toBe(RST);
    expect(rst.at).toBe(6200);
    expect((await failed).code).toBe('ETIMEDOUT');
  });

  it('an ACK of new data resets the backoff', async () => {
    const h = new Harness();
    const peer = await h.open({ sackPermitted: false, mss: 1000, timestamps: false });
    peer.conn.write(bytes(500));
    await settle();
    h.clock.advance(700); // retransmissions at 200 and 600
    expect(dataOnly(h.take())).toHaveLength(3);
    peer.ack(peer.abs(500));
    peer.conn.write(bytes(100));
    await settle();
    h.take();
    h.clock.advance(200);
    expect(dataOnly(h.take()).map((s) => peer.rel(s.seq))).toEqual([500]);
  });

  it('fast-retransmits after three duplicate ACKs without SACK (NewReno)', async () => {
    const h = new Harness();
    const peer = await h.open({ sackPermitted: false, mss: 1000, timestamps: false });
    peer.conn.write(bytes(8000));
    await settle();
    expect(dataOnly(h.take())).toHaveLength(8);
    h.clock.advance(10);
    peer.ack(peer.abs(1000)); // segment 2 was lost
    peer.ack(peer.abs(1000));
    peer.ack(peer.abs(1000));
    expect(dataOnly(h.take())).toHaveLength(0);
    peer.ack(peer.abs(1000)); // the third duplicate
    const [rexmit] = dataOnly(h.take());
    expect(peer.rel(rexmit!.seq)).toBe(1000);
    expect(rexmit!.at).toBe(10);
    expect(h.tcp.stats.fastRecoveries).toBe(1);
    // A partial ACK (segment 4 was lost too) retransmits the next hole at once.
    peer.ack(peer.abs(3000));
    expect(dataOnly(h.take()).map((s) => peer.rel(s.seq))).toContain(3000);
  });

  it('SACK recovery retransmits only the holes, once each', async () => {
    const h = new Harness();
    const peer = await h.open({ mss: 1000, timestamps: false, handshakeRttMs: 100 });
    peer.conn.write(bytes(10_000));
    await settle();
    expect(dataOnly(h.take())).toHaveLength(10);
    h.clock.advance(100); // one RTT later the ACKs come back, before any probe is due
    const a = (rel: number): number => peer.abs(rel);
    // Segments at 1000 and 4000 were lost; the others arrive and are SACKed one by one.
    peer.ack(a(1000));
    const sacks: Array<Array<[number, number]>> = [
      [[a(2000), a(3000)]],
      [[a(2000), a(4000)]],
      [[a(5000), a(6000)], [a(2000), a(4000)]],
      [[a(5000), a(7000)], [a(2000), a(4000)]],
      [[a(5000), a(8000)], [a(2000), a(4000)]],
      [[a(5000), a(9000)], [a(2000), a(4000)]],
      [[a(5000), a(10_000)], [a(2000), a(4000)]],
    ];
    for (const sack of sacks) peer.ack(a(1000), peer.window, { sack });
    const retransmitted = dataOnly(h.take()).map((s) => peer.rel(s.seq));
    expect(retransmitted.sort((x, y) => x - y)).toEqual([1000, 4000]);
    peer.ack(a(4000), peer.window, { sack: [[a(5000), a(10_000)]] });
    peer.ack(a(10_000));
    h.clock.advance(5000);
    expect(dataOnly(h.take())).toHaveLength(0);
  });

  it('RACK waits a reordering window before calling a hole lost', async () => {
    const h = new Harness();
    const peer = await h.open({ mss: 1000, timestamps: false, handshakeRttMs: 100 });
    peer.conn.write(bytes(4000));
    await settle();
    expect(dataOnly(h.take())).toHaveLength(4);
    h.clock.advance(100);
    // Segment 1 arrives before segment 0: a SACK, not yet a loss (reordering window = min RTT / 4).
    peer.ack(peer.abs(0), peer.window, { sack: [[peer.abs(1000), peer.abs(2000)]] });
    h.clock.advance(24);
    expect(dataOnly(h.take())).toHaveLength(0);
    h.clock.advance(1);
    const [rexmit] = dataOnly(h.take());
    expect(peer.rel(rexmit!.seq)).toBe(0);
    expect(rexmit!.at).toBe(225);
  });

  it('RACK does not retransmit a segment that was only reordered', async () => {
    const h = new Harness();
    const peer = await h.open({ mss: 1000, timestamps: false, handshakeRttMs: 100 });
    peer.conn.write(bytes(4000));
    await settle();
    h.take();
    h.clock.advance(100);
    peer.ack(peer.abs(0), peer.window, { sack: [[peer.abs(1000), peer.abs(2000)]] });
    h.clock.advance(10);
    peer.ack(peer.abs(4000)); // the late segment 0 arrived, and everything after it
    h.clock.advance(1000);
    expect(dataOnly(h.take())).toHaveLength(0);
    expect(h.tcp.stats.fastRecoveries).toBe(0);
  });

  it('keeps a connection whose peer answers with a zero window, however long its reader sleeps', async () => {
    const h = new Harness({ maxRetransmits: 3 });
    const peer = await h.open({ mss: 1000, timestamps: false, sackPermitted: false });
    peer.conn.write(bytes(2000));
    await settle();
    h.take();
    for (let i = 0; i < 20; i++) {
      h.clock.advance(h.clock.nextTimer()!);
      if (h.take().length > 0) peer.ack(peer.abs(0), 0); // the sandbox is alive, its window closed
    }
    expect(h.clock.now()).toBeGreaterThan(1_000_000);
    expect(peer.conn.destroyed).toBe(false);
    peer.ack(peer.abs(2000), 65535);
    expect(peer.conn.state).toBe('ESTABLISHED');
  });

  it('sends a tail loss probe (the last segment) after the PTO, before the RTO', async () => {
    const h = new Harness();
    // RTT 100 ms: SRTT 100, RTO 300 ms, PTO 2·SRTT = 200 ms.
    const peer = await h.open({ mss: 1000, timestamps: false, handshakeRttMs: 100 });
    peer.conn.write(bytes(3000));
    await settle();
    expect(dataOnly(h.take())).toHaveLength(3);
    h.clock.advance(200);
    const [probe] = dataOnly(h.take());
    expect(peer.rel(probe!.seq)).toBe(2000);
    expect(probe!.at).toBe(300);
    expect(h.tcp.stats.tailLossProbes).toBe(1);
    // The probe's ACK SACKs the tail and exposes the loss of the first two segments to RACK.
    h.clock.advance(100);
    peer.ack(peer.abs(0), peer.window, { sack: [[peer.abs(2000), peer.abs(3000)]] });
    h.clock.advance(50);
    const repaired = dataOnly(h.take()).map((s) => peer.rel(s.seq));
    expect(repaired).toContain(0);
    expect(h.tcp.stats.timeouts).toBe(0);
  });

  it('sends new data as the probe when the window allows', async () => {
    const h = new Harness();
    const peer = await h.open({ mss: 1000, timestamps: false, handshakeRttMs: 100 });
    peer.conn.write(bytes(12_000));
    await settle();
    expect(dataOnly(h.take())).toHaveLength(10); // the initial congestion window
    h.clock.advance(200);
    const [probe] = dataOnly(h.take());
    expect(peer.rel(probe!.seq)).toBe(10_000);
    expect(probe!.at).toBe(300);
  });

  it('shrinks segments after an ICMP packet-too-big and resends what is outstanding', async () => {
    const h = new Harness();
    const peer = await h.open({ timestamps: false });
    peer.conn.write(bytes(4000));
    await settle();
    const [big] = dataOnly(h.take());
    expect(big!.payload.length).toBe(4000);
    const quoted = Buffer.alloc(8);
    quoted.writeUInt16BE(443, 0);
    quoted.writeUInt16BE(40000, 2);
    quoted.writeUInt32BE(big!.seq, 4);
    const net = { family: 4 as const, src: h.sandbox, dst: h.remote, packet: Buffer.alloc(28) };
    h.tcp.handleControl(net, 'packet-too-big', 1500, quoted);
    await settle(); // the short last segment goes at the end of the turn
    const resent = dataOnly(h.take());
    expect(resent.map((s) => s.payload.length)).toEqual([1460, 1460, 1080]);
    expect(Peer.payloadOf(resent)).toEqual(bytes(4000));
  });

  it('an ICMP unreachable during the handshake aborts the connection', async () => {
    const h = new Harness();
    h.inject({ flags: 0x02, seq: 10 });
    const conn = h.conns[0]!;
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => conn.on('error', resolve));
    const [synAck] = h.take();
    const quoted = Buffer.alloc(8);
    quoted.writeUInt16BE(443, 0);
    quoted.writeUInt16BE(40000, 2);
    quoted.writeUInt32BE(synAck!.seq, 4);
    h.tcp.handleControl({ family: 4, src: h.remote, dst: h.sandbox, packet: Buffer.alloc(28) }, 'unreachable', 0, quoted);
    expect((await failed).code).toBe('EHOSTUNREACH');
    expect(h.tcp.connectionCount).toBe(0);
  });

  it('CUBIC: a loss cuts the window to 70%, which grows back to W_max after K seconds', () => {
    const cubic = new Cubic();
    const ssthresh = cubic.onLoss(100);
    expect(ssthresh).toBeCloseTo(70);
    const k = Math.cbrt((100 * 0.3) / 0.4); // ≈ 4.2 s
    let cwnd = ssthresh;
    // One window's worth of ACKs per 100 ms RTT.
    for (let t = 0; t < k * 1000; t += 100) cwnd = cubic.onAck(cwnd, cwnd, t, 100);
    expect(cwnd).toBeGreaterThan(95);
    expect(cwnd).toBeLessThan(110);
    // Beyond W_max the window keeps growing (the convex region).
    for (let t = k * 1000; t < k * 1000 + 3000; t += 100) cwnd = cubic.onAck(cwnd, cwnd, t, 100);
    expect(cwnd).toBeGreaterThan(110);
  });
});
