// Resets (RFC 9293 §3.10.7.1, RFC 5961), challenge ACKs, checksum validation and ACK range checks.
import { describe, expect, it } from 'vitest';
import { ACK, FIN, Harness, PSH, RST, SYN, bytes, settle } from './tcp-harness.js';

describe('TCP resets and RFC 5961', () => {
  it('answers a segment for an unknown tuple with RST: SEQ=SEG.ACK when it carries an ACK', () => {
    const h = new Harness();
    h.inject({ flags: ACK, seq: 100, ack: 0xdeadbeef, payload: bytes(10) });
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST);
    expect(rst!.seq).toBe(0xdeadbeef);
    expect(rst!.srcPort).toBe(443);
    expect(rst!.dstPort).toBe(40000);
  });

  it('answers a segment without ACK with RST|ACK acknowledging SEG.SEQ+SEG.LEN', () => {
    const h = new Harness();
    h.inject({ flags: FIN, seq: 100, payload: bytes(10) });
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST | ACK);
    expect(rst!.seq).toBe(0);
    expect(rst!.ack).toBe(111);
  });

  it('never answers a RST with a RST', () => {
    const h = new Harness();
    h.inject({ flags: RST, seq: 100 });
    h.inject({ flags: RST | ACK, seq: 100, ack: 5 });
    expect(h.take()).toHaveLength(0);
  });

  it('drops segments with a bad checksum without a reply', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.send({ flags: ACK | PSH, payload: bytes(100), badChecksum: true });
    h.inject({ flags: ACK, seq: 1, ack: 1, badChecksum: true, srcPort: 9 });
    h.inject({ flags: SYN, seq: 1, badChecksum: true, srcPort: 10 });
    await settle();
    expect(peer.received).toHaveLength(0);
    expect(h.take()).toHaveLength(0);
    expect(h.requests).toHaveLength(1);
    expect(h.tcp.stats.badChecksum).toBe(3);
  });

  it('a RST exactly at RCV.NXT resets the connection (ECONNRESET on the stream)', async () => {
    const h = new Harness();
    const peer = await h.open();
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => peer.conn.on('error', resolve));
    peer.send({ flags: RST });
    expect((await failed).code).toBe('ECONNRESET');
    expect(h.take()).toHaveLength(0);
    expect(h.tcp.connectionCount).toBe(0);
    // The tuple is unknown now: an ACK gets a RST.
    peer.ack();
    expect(h.take()[0]!.flags).toBe(RST);
  });

  it('an in-window RST not at RCV.NXT gets a challenge ACK and the connection survives', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.send({ flags: RST, seq: peer.nxt + 1000 });
    const [ack] = h.take();
    expect(ack!.flags).toBe(ACK);
    expect(ack!.ack).toBe(peer.nxt);
    expect(ack!.seq).toBe(peer.rcvNxt);
    expect(peer.conn.state).toBe('ESTABLISHED');
    peer.data(Buffer.from('still here'));
    await settle();
    expect(Buffer.concat(peer.received).toString()).toBe('still here');
  });

  it('ignores a RST outside the window', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.send({ flags: RST, seq: peer.nxt + 50_000_000 });
    expect(h.take()).toHaveLength(0);
    expect(peer.conn.state).toBe('ESTABLISHED');
  });

  it('answers a SYN on an established connection with a challenge ACK', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.send({ flags: SYN, seq: 12345 });
    const [ack] = h.take();
    expect(ack!.flags).toBe(ACK);
    expect(ack!.ack).toBe(peer.nxt);
    expect(peer.conn.state).toBe('ESTABLISHED');
    expect(h.requests).toHaveLength(1);
  });

  it('rate-limits challenge ACKs per second across connections', async () => {
    const h = new Harness({ challengeAckLimit: 5 });
    const a = await h.open({ srcPort: 1 });
    const b = await h.open({ srcPort: 2 });
    for (let i = 0; i < 10; i++) a.send({ flags: RST, seq: a.nxt + 10 + i });
    for (let i = 0; i < 10; i++) b.send({ flags: SYN, seq: 7 });
    expect(h.take()).toHaveLength(5);
    expect(h.tcp.stats.challengeAcksSuppressed).toBe(15);
    h.clock.advance(1000);
    a.send({ flags: RST, seq: a.nxt + 10 });
    expect(h.take()).toHaveLength(1);
  });

  it('acknowledges and drops an ACK for data never sent', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.send({ flags: ACK | PSH, ack: peer.rcvNxt + 5000, payload: Buffer.from('x') });
    await settle();
    const [ack] = h.take();
    expect(ack!.flags).toBe(ACK);
    expect(ack!.ack).toBe(peer.nxt); // the data was not taken
    expect(peer.received).toHaveLength(0);
  });

  it('an unacceptable ACK in SYN-RCVD gets RST with SEQ=SEG.ACK', () => {
    const h = new Harness();
    h.inject({ flags: SYN, seq: 10 });
    const [synAck] = h.take();
    h.inject({ flags: ACK, seq: 11, ack: synAck!.seq + 100 });
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST);
    expect(rst!.seq).toBe(synAck!.seq + 100);
    expect(h.conns[0]!.state).toBe('SYN-RCVD');
  });

  it('reset() and destroy() of an open stream send RST', async () => {
    const h = new Harness();
    const a = await h.open({ srcPort: 1 });
    const b = await h.open({ srcPort: 2 });
    a.conn.reset();
    b.conn.destroy();
    await settle();
    const segs = h.take();
    expect(segs.map((s) => [s.flags, s.dstPort, s.seq])).toEqual([
      [RST | ACK, 1, a.rcvNxt],
      [RST | ACK, 2, b.rcvNxt],
    ]);
    expect(h.tcp.connectionCount).toBe(0);
  });

  it('answers an ACK older than the largest window (RFC 5961 §5.2) with a challenge ACK and drops it', async () => {
    const h = new Harness();
    const peer = await h.open({ windowShift: null, window: 1000 });
    peer.ack(peer.rcvNxt, 1000);
    peer.conn.write(bytes(3000));
    await settle();
    peer.ack(peer.abs(1000), 1000);
    peer.ack(peer.abs(2000), 1000);
    h.take();
    peer.send({ flags: ACK | PSH, ack: peer.iss - 5000, payload: Buffer.from('stale') });
    await settle();
    const [challenge] = h.take();
    expect(challenge!.flags).toBe(ACK);
    expect(h.tcp.stats.challengeAcks).toBe(1);
    expect(peer.received).toHaveLength(0);
  });

  it('drops a segment whose timestamp is older than TS.Recent (PAWS) and acknowledges', async () => {
    const h = new Harness();
    const peer = await h.open();
    peer.data(Buffer.from('new'));
    await settle();
    h.take();
    peer.send({ flags: ACK | PSH, payload: Buffer.from('old'), ts: { val: 5, ecr: 1 } });
    await settle();
    expect(Buffer.concat(peer.received).toString()).toBe('new');
    const [ack] = h.take();
    expect(ack!.ack).toBe(peer.nxt);
  });
});

