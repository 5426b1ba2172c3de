// Passive open: SYN → forwarder request → SYN-ACK, option negotiation, refusals, request caps.
import { describe, expect, it } from 'vitest';
import { ACK, Harness, RST, SYN, settle } from './tcp-harness.js';

describe('TCP handshake', () => {
  it('echoes MSS (from the 65520 MTU), window scale, SACK-permitted and timestamps', async () => {
    const h = new Harness();
    const peer = await h.open();
    const sa = peer.synAck;
    expect(sa.flags).toBe(SYN | ACK);
    expect(sa.ack).toBe(1_000_001);
    expect(sa.mss).toBe(65480);
    expect(sa.windowShift).toBe(7); // 4 MiB receive buffer
    expect(sa.sackPermitted).toBe(true);
    expect(sa.ts?.ecr).toBe(1000);
    expect(sa.window).toBe(65535); // never scaled in a SYN-ACK
    expect(peer.conn.state).toBe('ESTABLISHED');
    expect(h.requests[0]!.id).toEqual({ family: 4, srcAddr: '10.0.2.100', srcPort: 40000, dstAddr: '198.18.0.10', dstPort: 443 });
  });

  it('omits the options the peer did not offer', async () => {
    const h = new Harness();
    const peer = await h.open({ windowShift: null, sackPermitted: false, timestamps: false, mss: 1460 });
    const sa = peer.synAck;
    expect(sa.mss).toBe(65480);
    expect(sa.windowShift).toBeUndefined();
    expect(sa.sackPermitted).toBe(false);
    expect(sa.ts).toBeUndefined();
    // Data segments then respect the peer's MSS and carry no timestamp.
    peer.conn.write(Buffer.alloc(3000, 1));
    await settle();
    const segs = h.take();
    expect(segs.map((s) => s.payload.length)).toEqual([1460, 1460, 80]);
    expect(segs.every((s) => s.ts === undefined)).toBe(true);
  });

  it('names IPv6 flows in RFC 5952 form and sizes the MSS for the IPv6 header', async () => {
    const h = new Harness({}, { family: 6 });
    const peer = await h.open();
    expect(peer.synAck.mss).toBe(65460);
    expect(h.requests[0]!.id.srcAddr).toBe('fd00::100');
    expect(h.requests[0]!.id.dstAddr).toBe('2001:db8::10');
  });

  it('does not create a second request for a SYN retransmitted while the first is pending', () => {
    const h = new Harness({}, { manualAccept: true });
    const syn = { flags: SYN, seq: 5000, mss: 1460 };
    h.inject(syn);
    h.inject(syn);
    h.inject(syn);
    expect(h.requests).toHaveLength(1);
    expect(h.take()).toHaveLength(0);
    expect(h.tcp.stats.synRetransmitsWhilePending).toBe(2);
  });

  it("reject('reset') answers RST|ACK acknowledging the SYN", () => {
    const h = new Harness({}, { manualAccept: true });
    h.inject({ flags: SYN, seq: 0xfffffff0, mss: 1460 });
    h.requests[0]!.reject('reset');
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST | ACK);
    expect(rst!.seq).toBe(0);
    expect(rst!.ack).toBe(0xfffffff1);
    expect(h.tcp.pendingCount).toBe(0);
  });

  it('other refusals send an ICMP error quoting the SYN', () => {
    const h = new Harness({}, { manualAccept: true });
    h.inject({ flags: SYN, seq: 77, mss: 1460 });
    h.requests[0]!.reject('admin-prohibited');
    expect(h.take()).toHaveLength(0);
    expect(h.unreachables).toHaveLength(1);
    expect(h.unreachables[0]!.how).toBe('admin-prohibited');
    expect(h.unreachables[0]!.packet.readUInt32BE(20 + 4)).toBe(77); // the quoted SYN's sequence number
    // A later SYN for the tuple starts a new request.
    h.inject({ flags: SYN, seq: 99, mss: 1460 });
    expect(h.requests).toHaveLength(2);
  });

  it('refuses SYNs past the global and per-destination caps with an immediate RST', () => {
    const h = new Harness({ maxPendingRequests: 3, maxPendingPerDestination: 2 }, { manualAccept: true });
    h.inject({ flags: SYN, seq: 1, srcPort: 1001 });
    h.inject({ flags: SYN, seq: 1, srcPort: 1002 });
    h.inject({ flags: SYN, seq: 1, srcPort: 1003 }); // same destination: over the per-destination cap
    expect(h.requests).toHaveLength(2);
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST | ACK);
    expect(rst!.dstPort).toBe(1003);
    const other = Buffer.from([198, 18, 0, 11]);
    h.inject({ flags: SYN, seq: 1, srcPort: 1004, dstAddr: other });
    expect(h.requests).toHaveLength(3);
    h.inject({ flags: SYN, seq: 1, srcPort: 1005, dstAddr: Buffer.from([198, 18, 0, 12]) }); // over the global cap
    expect(h.requests).toHaveLength(3);
    expect(h.take().map((s) => s.flags)).toEqual([RST | ACK]);
    // Settling a request frees its slot.
    h.requests[0]!.reject('reset');
    h.take();
    h.inject({ flags: SYN, seq: 1, srcPort: 1006 });
    expect(h.requests).toHaveLength(4);
  });

  it('resets a request nobody settles at its deadline and frees the slot', async () => {
    const h = new Harness({ requestDeadlineMs: 30_000, maxPendingRequests: 1 }, { manualAccept: true });
    h.inject({ flags: SYN, seq: 500 });
    h.clock.advance(29_999);
    expect(h.take()).toHaveLength(0);
    h.clock.advance(1);
    const [rst] = h.take();
    expect(rst!.flags).toBe(RST | ACK);
    expect(rst!.ack).toBe(501);
    expect(h.tcp.pendingCount).toBe(0);
    // Accepting it now yields a stream that is already reset; no SYN-ACK goes out.
    const conn = h.requests[0]!.accept();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => conn.on('error', resolve));
    expect(err.code).toBe('ECONNRESET');
    expect(h.take()).toHaveLength(0);
    h.inject({ flags: SYN, seq: 900, srcPort: 50000 });
    expect(h.requests).toHaveLength(2);
  });

  it('a RST from the sandbox cancels its pending request', async () => {
    const h = new Harness({}, { manualAccept: true });
    h.inject({ flags: SYN, seq: 10 });
    h.inject({ flags: RST, seq: 11 });
    expect(h.tcp.pendingCount).toBe(0);
    const conn = h.requests[0]!.accept();
    conn.on('error', () => {});
    await settle();
    expect(conn.destroyed).toBe(true);
    expect(h.take()).toHaveLength(0);
  });

  it('retransmits the SYN-ACK with backoff and gives up after the configured retries', async () => {
    const h = new Harness({ synAckRetries: 2, initialRtoMs: 1000 });
    h.inject({ flags: SYN, seq: 10, mss: 1460 });
    const conn = h.conns[0]!;
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => conn.on('error', resolve));
    expect(h.take().map((s) => [s.flags, s.at])).toEqual([[SYN | ACK, 0]]);
    h.clock.advance(10_000);
    expect(h.take().map((s) => [s.flags, s.at])).toEqual([
      [SYN | ACK, 1000],
      [SYN | ACK, 3000],
      [RST | ACK, 7000],
    ]);
    expect((await failed).code).toBe('ETIMEDOUT');
  });

  it('answers a retransmitted SYN in SYN-RCVD with the same SYN-ACK', () => {
    const h = new Harness();
    h.inject({ flags: SYN, seq: 10, mss: 1460 });
    h.inject({ flags: SYN, seq: 10, mss: 1460 });
    const [a, b] = h.take();
    expect(b!.flags).toBe(SYN | ACK);
    expect(b!.seq).toBe(a!.seq);
    expect(h.requests).toHaveLength(1);
  });

  it('uses unpredictable, per-tuple initial sequence numbers', async () => {
    const h = new Harness();
    const a = await h.open({ srcPort: 1000 });
    const b = await h.open({ srcPort: 1001 });
    expect(a.iss).not.toBe(b.iss);
    const h2 = new Harness();
    const c = await h2.open({ srcPort: 1000 });
    expect(c.iss).not.toBe(a.iss); // a per-stack secret key
  });
});
