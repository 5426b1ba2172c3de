import { describe, expect, it } from 'vitest';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import type { UdpConn, UdpForwarderRequest } from '../../netstack/index.js';
import { ethernet, GATEWAY_MAC, ipv4, parseIpv4Frame, parseIpv6Frame, SANDBOX4, SANDBOX6, SANDBOX_MAC, setup, sumOk, udp, udp4Frame, udp6Frame, v4, v6 } from './frames.js';

const REMOTE4 = v4('198.18.0.1');
const REMOTE6 = v6('2001:db8::1');
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Accepts every flow and records what each connection receives and whether it was closed. */
function accepting(config: Parameters<typeof setup>[0] = {}) {
  const env = setup(config);
  const conns: { conn: UdpConn; received: Buffer[]; closed: boolean }[] = [];
  env.forwarder.onUdp = (req: UdpForwarderRequest) => {
    const conn = req.accept();
    const entry = { conn, received: [] as Buffer[], closed: false };
    conn.onMessage = (payload) => entry.received.push(payload);
    conn.onClose = () => void (entry.closed = true);
    conns.push(entry);
  };
  return { ...env, conns };
}

describe('UDP flows', () => {
  it('a datagram to 198.18.0.1:9 reaches the forwarder with its FlowId and payload', async () => {
    const { link, forwarder, conns } = accepting();
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('hello')));
    await flush();
    expect(forwarder.udpRequests.map((r) => r.id)).toEqual([{ family: 4, srcAddr: '10.0.2.100', srcPort: 40000, dstAddr: '198.18.0.1', dstPort: 9 }]);
    expect(forwarder.udpRequests[0]!.firstPayload).toEqual(Buffer.from('hello'));
    expect(conns[0]!.received).toEqual([Buffer.from('hello')]);
  });

  it('later datagrams on the tuple go to the same session, other tuples make new requests', async () => {
    const { link, forwarder, conns } = accepting();
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('a')));
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('b')));
    link.inject(udp4Frame(REMOTE4, 40001, 9, Buffer.from('c')));
    await flush();
    expect(forwarder.udpRequests).toHaveLength(2);
    expect(conns.map((c) => c.received.map(String))).toEqual([['a', 'b'], ['c']]);
  });

  it('queues datagrams while the request is pending and delivers them in order once accepted', async () => {
    const { link, forwarder } = setup({ udp: { maxQueued: 3 } });
    for (const text of ['1', '2', '3', '4']) link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from(text)));
    expect(forwarder.udpRequests).toHaveLength(1);
    const conn = forwarder.udpRequests[0]!.accept();
    const received: string[] = [];
    conn.onMessage = (p) => received.push(String(p));
    await flush();
    expect(received).toEqual(['1', '2', '3']); // the fourth exceeded the queue bound
  });

  it('a reply comes back from the flow destination with correct ports and checksum', async () => {
    const { link, conns } = accepting();
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('ping')));
    await flush();
    conns[0]!.conn.send(Buffer.from('pong!'));
    const ip = parseIpv4Frame(link.drain()[0]!);
    expect(ip.headerOk).toBe(true);
    expect([ip.src, ip.dst, ip.protocol]).toEqual(['198.18.0.1', '10.0.2.100', 17]);
    expect(ip.ethDst).toEqual(SANDBOX_MAC);
    const d = ip.payload;
    expect([d.readUInt16BE(0), d.readUInt16BE(2), d.readUInt16BE(4)]).toEqual([9, 40000, 13]);
    expect(sumOk(d, 0, d.length, pseudoHeaderChecksum(REMOTE4, SANDBOX4, 17, d.length))).toBe(true);
    expect(d.subarray(8)).toEqual(Buffer.from('pong!'));
  });

  it('IPv6: the request and the reply carry the right addresses and checksum', async () => {
    const { link, forwarder, conns } = accepting();
    link.inject(udp6Frame(REMOTE6, 5353, 443, Buffer.from('q')));
    await flush();
    expect(forwarder.udpRequests[0]!.id).toEqual({ family: 6, srcAddr: 'fd00::100', srcPort: 5353, dstAddr: '2001:db8::1', dstPort: 443 });
    conns[0]!.conn.send(Buffer.from('answer'));
    const ip = parseIpv6Frame(link.drain()[0]!);
    expect(ip.lengthOk).toBe(true);
    expect(ip.src).toEqual(REMOTE6);
    expect(ip.dst).toEqual(SANDBOX6);
    const d = ip.payload;
    expect([d.readUInt16BE(0), d.readUInt16BE(2)]).toEqual([443, 5353]);
    expect(sumOk(d, 0, d.length, pseudoHeaderChecksum(REMOTE6, SANDBOX6, 17, d.length))).toBe(true);
  });

  it('a reply larger than the MTU goes out as IP fragments', async () => {
    const { link, conns } = accepting();
    link.inject(udp4Frame(REMOTE4, 40000, 53, Buffer.from('q')));
    await flush();
    const big = Buffer.alloc(4000, 7);
    conns[0]!.conn.send(big);
    const frames = link.drain().map((f) => f.subarray(14));
    expect(frames.length).toBe(3);
    const datagram = Buffer.concat(frames.map((ip) => ip.subarray(20)));
    expect(datagram.readUInt16BE(4)).toBe(4008);
    expect(sumOk(datagram, 0, datagram.length, pseudoHeaderChecksum(REMOTE4, SANDBOX4, 17, datagram.length))).toBe(true);
  });

  it('drops datagrams with a bad checksum; accepts a zero checksum over IPv4 only', async () => {
    const { link, forwarder, stack } = accepting();
    const bad = ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload: udp(SANDBOX4, REMOTE4, 1, 9, Buffer.from('x'), 0x1234) }));
    const none4 = ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload: udp(SANDBOX4, REMOTE4, 2, 9, Buffer.from('x'), 0) }));
    const none6 = udp6Frame(REMOTE6, 3, 9, Buffer.from('x'));
    none6.writeUInt16BE(0, 14 + 40 + 6);
    link.inject(bad);
    link.inject(none4);
    link.inject(none6);
    await flush();
    expect(forwarder.udpRequests.map((r) => r.id.srcPort)).toEqual([2]);
    expect(stack.counters.drops['udp-bad-checksum']).toBe(1);
    expect(stack.counters.drops['udp-zero-checksum']).toBe(1);
  });

  it('drops a datagram whose UDP length exceeds the packet', () => {
    const { link, forwarder, stack } = setup();
    const payload = udp(SANDBOX4, REMOTE4, 1, 9, Buffer.from('abc'));
    payload.writeUInt16BE(200, 4);
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, payload })));
    expect(forwarder.udpRequests).toHaveLength(0);
    expect(stack.counters.drops['udp-bad-length']).toBe(1);
  });

  it('never makes a flow of a broadcast or multicast datagram', () => {
    const { link, forwarder } = setup();
    link.inject(udp4Frame(v4('255.255.255.255'), 68, 67, Buffer.from('dhcp')));
    link.inject(udp4Frame(v4('224.0.0.251'), 5353, 5353, Buffer.from('mdns')));
    link.inject(udp6Frame(v6('ff02::fb'), 5353, 5353, Buffer.from('mdns')));
    expect(forwarder.udpRequests).toHaveLength(0);
    expect(link.drain()).toHaveLength(0);
  });
});

/** The ICMP error the stack wrote, with the datagram it quotes. */
function icmpError4(frame: Buffer) {
  const ip = parseIpv4Frame(frame);
  return { ip, type: ip.payload[0], code: ip.payload[1], checksumOk: sumOk(ip.payload, 0, ip.payload.length), quoted: ip.payload.subarray(8) };
}

describe('UDP refusals', () => {
  it('a rejected flow gets ICMP port unreachable from the destination, quoting the datagram', () => {
    const { link, forwarder } = setup();
    forwarder.onUdp = (req) => req.reject('port-unreachable');
    const frame = udp4Frame(REMOTE4, 40000, 9, Buffer.from('knock'));
    link.inject(frame);
    const err = icmpError4(link.drain()[0]!);
    expect(err.ip.headerOk).toBe(true);
    expect([err.ip.src, err.ip.dst, err.ip.protocol]).toEqual(['198.18.0.1', '10.0.2.100', 1]);
    expect([err.type, err.code, err.checksumOk]).toEqual([3, 3, true]);
    expect(err.quoted).toEqual(frame.subarray(14));
  });

  it('admin-prohibited maps to ICMP code 13 and ICMPv6 code 1', () => {
    const { link, forwarder } = setup();
    forwarder.onUdp = (req) => req.reject('admin-prohibited');
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('x')));
    link.inject(udp6Frame(REMOTE6, 40000, 9, Buffer.from('y')));
    const [e4, e6] = link.drain();
    expect([icmpError4(e4!).type, icmpError4(e4!).code]).toEqual([3, 13]);
    const ip6 = parseIpv6Frame(e6!);
    expect([ip6.nextHeader, ip6.payload[0], ip6.payload[1]]).toEqual([58, 1, 1]);
    expect(ip6.src).toEqual(REMOTE6);
    expect(sumOk(ip6.payload, 0, ip6.payload.length, pseudoHeaderChecksum(REMOTE6, SANDBOX6, 58, ip6.payload.length))).toBe(true);
  });

  it('a rejected tuple asks the forwarder again on its next datagram', () => {
    const { link, forwarder } = setup();
    forwarder.onUdp = (req) => req.reject('port-unreachable');
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('1')));
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('2')));
    expect(forwarder.udpRequests).toHaveLength(2);
  });

  it('sendIcmp on an accepted flow quotes the last datagram', async () => {
    const { link, conns } = accepting();
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('first')));
    const last = udp4Frame(REMOTE4, 40000, 9, Buffer.from('second'));
    link.inject(last);
    await flush();
    conns[0]!.conn.sendIcmp('host-unreachable');
    const err = icmpError4(link.drain()[0]!);
    expect([err.type, err.code]).toEqual([3, 1]);
    expect(err.quoted).toEqual(last.subarray(14));
  });
});

describe('UDP session lifetime', () => {
  it('an idle session expires after 60 s, calls onClose, and the tuple asks anew', async () => {
    const { link, forwarder, conns, clock } = accepting();
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('a')));
    await flush();
    clock.advance(59_000);
    conns[0]!.conn.send(Buffer.from('reply keeps it alive'));
    clock.advance(59_000);
    expect(conns[0]!.closed).toBe(false);
    clock.advance(1_000);
    expect(conns[0]!.closed).toBe(true);
    expect(forwarder.udpRequests).toHaveLength(1);
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('b')));
    expect(forwarder.udpRequests).toHaveLength(2);
  });

  it('DNS sessions (port 53) expire after 10 s', async () => {
    const { link, conns, clock, stack } = accepting();
    link.inject(udp4Frame(v4('10.0.2.3'), 40000, 53, Buffer.from('query')));
    await flush();
    clock.advance(9_999);
    expect(conns[0]!.closed).toBe(false);
    clock.advance(1);
    expect(conns[0]!.closed).toBe(true);
    expect(stack.udp.sessionCount).toBe(0);
  });

  it('the idle timeout is configurable', async () => {
    const { link, conns, clock } = accepting({ udp: { idleMs: 5_000 } });
    link.inject(udp4Frame(REMOTE4, 40000, 9, Buffer.from('a')));
    await flush();
    clock.advance(5_000);
    expect(conns[0]!.closed).toBe(true);
  });

  it('past the session cap a new tuple is refused with ICMP while existing flows keep going', async () => {
    const { link, forwarder, conns, stack } = accepting({ udp: { maxSessions: 2 } });
    link.inject(udp4Frame(REMOTE4, 1001, 9, Buffer.from('a')));
    link.inject(udp4Frame(REMOTE4, 1002, 9, Buffer.from('b')));
    link.drain();
    link.inject(udp4Frame(REMOTE4, 1003, 9, Buffer.from('c')));
    const refused = link.drain();
    expect(refused).toHaveLength(1);
    expect([icmpError4(refused[0]!).type, icmpError4(refused[0]!).code]).toEqual([3, 13]);
    expect(forwarder.udpRequests).toHaveLength(2);
    expect(stack.counters.drops['udp-session-cap']).toBe(1);
    link.inject(udp4Frame(REMOTE4, 1001, 9, Buffer.from('a2')));
    await flush();
    expect(conns[0]!.received.map(String)).toEqual(['a', 'a2']);
  });

  it('closing a session frees its slot under the cap', async () => {
    const { link, forwarder, conns } = accepting({ udp: { maxSessions: 1 } });
    link.inject(udp4Frame(REMOTE4, 1001, 9, Buffer.from('a')));
    await flush();
    conns[0]!.conn.close();
    link.inject(udp4Frame(REMOTE4, 1002, 9, Buffer.from('b')));
    expect(forwarder.udpRequests).toHaveLength(2);
  });

  it('closing the stack ends every session', async () => {
    const { link, conns, stack } = accepting();
    link.inject(udp4Frame(REMOTE4, 1001, 9, Buffer.from('a')));
    await flush();
    stack.close();
    expect(conns[0]!.closed).toBe(true);
  });
});
