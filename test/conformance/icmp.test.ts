import { describe, expect, it } from 'vitest';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import type { NetworkInfo, TransportProtocol } from '../../netstack/index.js';
import {
  DNS4,
  ethernet,
  GATEWAY4,
  GATEWAY6,
  GATEWAY_MAC,
  icmp4,
  icmp6,
  ipv4,
  ipv6,
  parseIpv4Frame,
  parseIpv6Frame,
  SANDBOX4,
  SANDBOX6,
  SANDBOX_MAC,
  setup,
  sumOk,
  udp,
  v4,
  v6,
} from './frames.js';

function echo4(dst: Buffer, id: number, seq: number, data: Buffer): Buffer {
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst, protocol: 1, payload: icmp4(8, 0, (id << 16) | seq, data) }));
}

function echo6(dst: Buffer, id: number, seq: number, data: Buffer): Buffer {
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, dst, 58, icmp6(SANDBOX6, dst, 128, 0, (id << 16) | seq, data)));
}

describe('ICMPv4 echo', () => {
  it('answers a ping to the gateway with the same id, sequence and payload', () => {
    const { link } = setup();
    const data = Buffer.from('ping payload 0123456789');
    link.inject(echo4(GATEWAY4, 0x1234, 7, data));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv4Frame(frames[0]!);
    expect(ip.headerOk).toBe(true);
    expect(ip.ethDst).toEqual(SANDBOX_MAC);
    expect(ip.ethSrc).toEqual(GATEWAY_MAC);
    expect([ip.src, ip.dst, ip.protocol, ip.ttl]).toEqual(['10.0.2.2', '10.0.2.100', 1, 64]);
    const reply = ip.payload;
    expect(reply[0]).toBe(0);
    expect(reply.readUInt16BE(4)).toBe(0x1234);
    expect(reply.readUInt16BE(6)).toBe(7);
    expect(reply.subarray(8)).toEqual(data);
    expect(sumOk(reply, 0, reply.length)).toBe(true);
  });

  it('answers a ping to the DNS address from that address', () => {
    const { link } = setup();
    link.inject(echo4(DNS4, 1, 1, Buffer.alloc(0)));
    expect(parseIpv4Frame(link.drain()[0]!).src).toBe('10.0.2.3');
  });

  it('does not answer a ping to any other destination', () => {
    const { link } = setup();
    link.inject(echo4(v4('198.18.0.1'), 1, 1, Buffer.from('x')));
    expect(link.drain()).toHaveLength(0);
  });

  it('drops a packet whose IP header checksum is wrong', () => {
    const { link, stack } = setup();
    const frame = echo4(GATEWAY4, 1, 1, Buffer.from('x'));
    frame[14 + 10]! ^= 0x01;
    link.inject(frame);
    expect(link.drain()).toHaveLength(0);
    expect(stack.counters.drops['ipv4-bad-checksum']).toBe(1);
  });

  it('drops an echo whose ICMP checksum is wrong', () => {
    const { link, stack } = setup();
    const frame = echo4(GATEWAY4, 1, 1, Buffer.from('xyz'));
    frame[frame.length - 1]! ^= 0x40;
    link.inject(frame);
    expect(link.drain()).toHaveLength(0);
    expect(stack.counters.drops['icmp-bad-checksum']).toBe(1);
  });

  it('ignores Ethernet padding after the IP packet', () => {
    const { link } = setup();
    link.inject(Buffer.concat([echo4(GATEWAY4, 9, 9, Buffer.from('a')), Buffer.alloc(20)]));
    expect(parseIpv4Frame(link.drain()[0]!).payload.subarray(8)).toEqual(Buffer.from('a'));
  });
});

describe('ICMPv6 echo', () => {
  it('answers a ping to fd00::2 with the same id, sequence and payload and a valid checksum', () => {
    const { link } = setup();
    const data = Buffer.from('six six six');
    link.inject(echo6(GATEWAY6, 0xbeef, 3, data));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv6Frame(frames[0]!);
    expect(ip.lengthOk).toBe(true);
    expect(ip.src).toEqual(GATEWAY6);
    expect(ip.dst).toEqual(SANDBOX6);
    const reply = ip.payload;
    expect(reply[0]).toBe(129);
    expect(reply.readUInt16BE(4)).toBe(0xbeef);
    expect(reply.readUInt16BE(6)).toBe(3);
    expect(reply.subarray(8)).toEqual(data);
    expect(sumOk(reply, 0, reply.length, pseudoHeaderChecksum(ip.src, ip.dst, 58, reply.length))).toBe(true);
  });

  it('does not answer a ping to another destination', () => {
    const { link } = setup();
    link.inject(echo6(v6('2001:db8::1'), 1, 1, Buffer.from('x')));
    expect(link.drain()).toHaveLength(0);
  });
});

/** A transport that records the ICMP errors the stack passes it. */
function recordingTransport(protocol: number) {
  const calls: { src: Buffer; dst: Buffer; kind: string; mtu: number; quoted: Buffer }[] = [];
  const transport: TransportProtocol = {
    protocol,
    handlePacket() {},
    handleControl(net: NetworkInfo, kind, mtu, quoted) {
      calls.push({ src: Buffer.from(net.src), dst: Buffer.from(net.dst), kind, mtu, quoted: Buffer.from(quoted) });
    },
  };
  return { transport, calls };
}

describe('ICMP errors from the sandbox', () => {
  it('pass an IPv4 port unreachable to the transport with the quoted header', () => {
    const { link, stack } = setup();
    const { transport, calls } = recordingTransport(6);
    stack.registerTransport(transport);
    const remote = v4('198.18.0.1');
    const quotedTcp = Buffer.from([0x01, 0xbb, 0xc0, 0x00, 0, 0, 0, 1]);
    const original = ipv4({ src: remote, dst: SANDBOX4, protocol: 6, payload: quotedTcp });
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: remote, protocol: 1, payload: icmp4(3, 3, 0, original) })));
    expect(calls).toEqual([{ src: remote, dst: SANDBOX4, kind: 'unreachable', mtu: 0, quoted: quotedTcp }]);
  });

  it('pass an IPv4 fragmentation-needed as packet-too-big with its MTU', () => {
    const { link, stack } = setup();
    const { transport, calls } = recordingTransport(6);
    stack.registerTransport(transport);
    const remote = v4('198.18.0.1');
    const original = ipv4({ src: remote, dst: SANDBOX4, protocol: 6, payload: Buffer.alloc(20) });
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: remote, protocol: 1, payload: icmp4(3, 4, 1400, original) })));
    expect(calls.map((c) => [c.kind, c.mtu])).toEqual([['packet-too-big', 1400]]);
  });

  it('pass an ICMPv6 packet-too-big to the transport', () => {
    const { link, stack } = setup();
    const { transport, calls } = recordingTransport(6);
    stack.registerTransport(transport);
    const remote = v6('2001:db8::1');
    const original = ipv6(remote, SANDBOX6, 6, Buffer.alloc(20));
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, remote, 58, icmp6(SANDBOX6, remote, 2, 0, 1280, original))));
    expect(calls.map((c) => [c.kind, c.mtu, c.src.equals(remote), c.dst.equals(SANDBOX6)])).toEqual([['packet-too-big', 1280, true, true]]);
  });

  it('drop an error whose quote is truncated', () => {
    const { link, stack } = setup();
    const { transport, calls } = recordingTransport(6);
    stack.registerTransport(transport);
    const original = ipv4({ src: v4('198.18.0.1'), dst: SANDBOX4, protocol: 6, payload: Buffer.alloc(8) }).subarray(0, 24);
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: v4('198.18.0.1'), protocol: 1, payload: icmp4(3, 3, 0, original) })));
    expect(calls).toHaveLength(0);
    expect(stack.counters.drops['icmp-bad-quote']).toBe(1);
  });
});

describe('ICMP errors to the sandbox', () => {
  it('packet too big quotes the packet and carries the MTU', () => {
    const { stack, link } = setup();
    const remote = v6('2001:db8::1');
    const packet = ipv6(SANDBOX6, remote, 17, udp(SANDBOX6, remote, 5000, 9, Buffer.alloc(100)));
    stack.sendPacketTooBig(packet, 6, 1280);
    const ip = parseIpv6Frame(link.drain()[0]!);
    expect(ip.src).toEqual(remote);
    expect(ip.payload[0]).toBe(2);
    expect(ip.payload.readUInt32BE(4)).toBe(1280);
    expect(ip.payload.subarray(8)).toEqual(packet);
  });

  it('are never sent about an ICMP error', () => {
    const { stack, link } = setup();
    const remote = v4('198.18.0.1');
    const error = ipv4({ src: SANDBOX4, dst: remote, protocol: 1, payload: icmp4(3, 3, 0, Buffer.alloc(28)) });
    stack.sendUnreachable(error, 4, 'port');
    expect(link.drain()).toHaveLength(0);
  });
});
