// Connection teardown (RFC 9293 §3.6): half-close both ways, simultaneous close, TIME-WAIT and
// FIN-WAIT-2 timers, keepalive, and FINs that arrive out of order or with data.
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ACK, FIN, Harness, PSH, RST, SYN, bytes, settle } from './tcp-harness.js';

describe('TCP close', () => {
  it('sandbox closes first: CLOSE-WAIT, our FIN, LAST-ACK, CLOSED', async () => {
    const h = new Harness();
    const peer = await h.open();
    const ended = once(peer.conn, 'end');
    peer.fin();
    await ended;
    expect(peer.conn.state).toBe('CLOSE-WAIT');
    // The FIN's ACK is delayed, as Linux delays it: it rides on the response.
    expect(h.take()).toHaveLength(0);
    // Half-closed: we can still send.
    peer.conn.write('response');
    peer.conn.end();
    await settle();
    const segs = h.take();
    expect(segs).toHaveLength(1);
    const last = segs.at(-1)!;
    expect(last.flags).toBe(FIN | ACK | PSH);
    expect(last.ack).toBe(peer.nxt);
    expect(last.payload.toString()).toBe('response');
    expect(peer.conn.state).toBe('LAST-ACK');
    const finished = once(peer.conn, 'finish');
    peer.ack(peer.abs(9)); // 8 bytes + FIN
    await finished;
    expect(peer.conn.state).toBe('CLOSED');
    expect(h.tcp.connectionCount).toBe(0);
  });

  it('acknowledges a lone FIN from the sandbox within the delayed-ACK time', async () => {
    const h = new Harness({ delayedAckMs: 40 });
    const peer = await h.open();
    peer.fin();
    await settle();
    expect(h.take()).toHaveLength(0);
    h.clock.advance(40);
    const [ack] = h.take();
    expect(ack!.flags).toBe(ACK);
    expect(ack!.ack).toBe(peer.nxt);
  });

  it('we close first: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, closed when the timer ends', async () => {
    const h = new Harness({ timeWaitMs: 2000 });
    const peer = await h.open();
    peer.conn.end();
    await settle();
    const [fin] = h.take();
    expect(fin!.flags).toBe(FIN | ACK);
    expect(peer.conn.state).toBe('FIN-WAIT-1');
    peer.ack(peer.abs(1));
    expect(peer.conn.state).toBe('FIN-WAIT-2');
    peer.data(Buffer.from('late data')); // the sandbox may still send
    peer.fin();
    await settle();
    expect(Buffer.concat(peer.received).toString()).toBe('late data');
    expect(peer.conn.state).toBe('TIME-WAIT');
    expect(h.take().at(-1)!.ack).toBe(peer.nxt);
    // A retransmitted FIN in TIME-WAIT is acknowledged again.
    peer.send({ flags: FIN | ACK, seq: peer.nxt - 1 });
    expect(h.take().map((s) => [s.flags, s.ack])).toEqual([[ACK, peer.nxt]]);
    h.clock.advance(1999);
    expect(h.tcp.connectionCount).toBe(1);
    h.clock.advance(1);
    expect(h.tcp.connectionCount).toBe(0);
    expect(peer.conn.state).toBe('CLOSED');
  });

  it('simultaneous close: CLOSING, then TIME-WAIT', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.conn.end();
    await settle();
    h.take();
    peer.fin(); // crosses our FIN: acknowledges only our data (none), not the FIN
    expect(peer.conn.state).toBe('CLOSING');
    expect(h.take().at(-1)!.ack).toBe(peer.nxt);
    peer.ack(peer.abs(1));
    expect(peer.conn.state).toBe('TIME-WAIT');
  });

  it('abandons FIN-WAIT-2 after the timeout without traffic, not while the sandbox is active', async () => {
    const h = new Harness({ finWait2TimeoutMs: 5000 });
    const peer = await h.open();
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => peer.conn.on('error', resolve));
    peer.conn.end();
    await settle();
    peer.ack(peer.abs(1));
    h.take();
    h.clock.advance(4000);
    peer.data(Buffer.from('x'));
    h.clock.advance(4000);
    expect(peer.conn.state).toBe('FIN-WAIT-2');
    h.clock.advance(1000);
    expect(h.take().at(-1)!.flags & RST).toBe(RST);
    expect((await failed).code).toBe('ETIMEDOUT');
  });

  it('resends an unacknowledged FIN on RTO', async () => {
    const h = new Harness({}, {});
    const peer = await h.open({ sackPermitted: false });
    peer.conn.end();
    await settle();
    expect(h.take().map((s) => [s.flags, s.at])).toEqual([[FIN | ACK, 0]]);
    h.clock.advance(600);
    expect(h.take().map((s) => [s.flags, s.seq, s.at])).toEqual([
      [FIN | ACK, peer.rcvNxt, 200],
      [FIN | ACK, peer.rcvNxt, 600],
    ]);
  });

  it('delivers a FIN that arrives before the data it follows only once the hole is filled', async () => {
    const h = new Harness();
    const peer = await h.open();
    let ended = false;
    peer.conn.on('end', () => (ended = true));
    const base = peer.nxt;
    peer.send({ flags: FIN | ACK, seq: base + 5, payload: Buffer.from('world') });
    await settle();
    expect(ended).toBe(false);
    peer.send({ flags: ACK, seq: base, payload: Buffer.from('hello') });
    await settle();
    expect(Buffer.concat(peer.received).toString()).toBe('helloworld');
    expect(ended).toBe(true);
    expect(h.take().at(-1)!.ack).toBe(base + 11);
  });

  it('keepalive: probes after idle time, aborts after the count of unanswered probes', async () => {
    const h = new Harness({ keepalive: { enabled: false, idleMs: 60_000, intervalMs: 500, count: 3 } });
    const peer = await h.open();
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => peer.conn.on('error', resolve));
    h.clock.advance(100_000);
    expect(h.take()).toHaveLength(0); // off by default
    peer.conn.setKeepAlive(true, 1000);
    h.clock.advance(1000);
    const [probe] = h.take();
    expect(probe!.seq).toBe(peer.rcvNxt - 1);
    expect(probe!.payload.length).toBe(0);
    peer.ack(); // answered: the idle timer restarts
    h.clock.advance(999);
    expect(h.take()).toHaveLength(0);
    h.clock.advance(5000);
    const segs = h.take();
    expect(segs.map((s) => s.at)).toEqual([101_999 + 1, 102_500, 103_000, 103_500]);
    expect(segs.at(-1)!.flags & RST).toBe(RST);
    expect((await failed).code).toBe('ETIMEDOUT');
    expect(h.tcp.stats.keepaliveProbes).toBe(4);
  });

  it('a new SYN with a higher sequence number reopens a tuple in TIME-WAIT', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.conn.end();
    await settle();
    peer.ack(peer.abs(1));
    peer.fin();
    expect(peer.conn.state).toBe('TIME-WAIT');
    h.take();
    h.inject({ flags: SYN, seq: peer.nxt + 100_000, mss: 1460 });
    expect(h.requests).toHaveLength(2);
    expect(h.take()[0]!.flags).toBe(SYN | ACK);
  });

  it('sends everything written before the FIN, and the FIN rides on the last segment', async () => {
    const h = new Harness();
    const peer = await h.open({ mss: 1000, timestamps: false });
    const data = bytes(2500);
    peer.conn.end(data);
    await settle();
    const segs = h.take();
    expect(segs.map((s) => [s.payload.length, s.flags & FIN])).toEqual([
      [1000, 0],
      [1000, 0],
      [500, FIN],
    ]);
  });

  it('destroy() after end() still delivers what was written and closes with FINs, not RST', async () => {
    const h = new Harness();
    const peer = await h.open({ mss: 1000, timestamps: false, window: 1000, windowShift: null });
    peer.ack(peer.rcvNxt, 1000);
    peer.conn.end(bytes(3000));
    peer.conn.destroy();
    await settle();
    let got = h.take();
    expect(got.map((s) => s.payload.length)).toEqual([1000]);
    for (let acked = 1000; acked < 3000; acked += 1000) {
      peer.ack(peer.abs(acked), 1000);
      got = got.concat(h.take());
    }
    expect(got.filter((s) => s.flags & RST)).toHaveLength(0);
    expect(got.at(-1)!.flags & FIN).toBe(FIN);
    peer.rcvNxt = peer.abs(3001);
    peer.ack();
    peer.fin();
    expect(peer.conn.state).toBe('TIME-WAIT');
  });
});
