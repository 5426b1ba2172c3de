import { describe, expect, it } from 'vitest';
import { MAX_LEARNED } from '../../netstack/network/neighbors.js';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { ethernet, GATEWAY4, GATEWAY6, GATEWAY_MAC, icmp4, icmp6, ipv4, ipv6, mac, parseIpv4Frame, parseIpv6Frame, SANDBOX4, SANDBOX6, SANDBOX_MAC, setup, sumOk, udp4Frame, udp6Frame, v4, v6 } from './frames.js';

function arpRequest(targetIp: Buffer, senderMac = SANDBOX_MAC, senderIp = SANDBOX4): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(0x0800, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(1, 6);
  senderMac.copy(arp, 8);
  senderIp.copy(arp, 14);
  targetIp.copy(arp, 24);
  return ethernet(mac('ff:ff:ff:ff:ff:ff'), senderMac, 0x0806, arp);
}

describe('ARP', () => {
  it('answers a request for the gateway address with our MAC', () => {
    const { link } = setup();
    link.inject(arpRequest(GATEWAY4));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const reply = frames[0]!;
    expect(reply.subarray(0, 6)).toEqual(SANDBOX_MAC);
    expect(reply.subarray(6, 12)).toEqual(GATEWAY_MAC);
    expect(reply.readUInt16BE(12)).toBe(0x0806);
    const arp = reply.subarray(14);
    expect(arp.readUInt16BE(6)).toBe(2);
    expect(arp.subarray(8, 14)).toEqual(GATEWAY_MAC);
    expect(arp.subarray(14, 18)).toEqual(GATEWAY4);
    expect(arp.subarray(18, 24)).toEqual(SANDBOX_MAC);
    expect(arp.subarray(24, 28)).toEqual(SANDBOX4);
  });

  it('answers for the DNS address too', () => {
    const { link } = setup();
    link.inject(arpRequest(v4('10.0.2.3')));
    expect(link.drain()).toHaveLength(1);
  });

  it('stays silent for addresses off the sandbox prefix and for the sandbox own address', () => {
    const { link } = setup();
    link.inject(arpRequest(v4('10.0.3.77')));
    link.inject(arpRequest(v4('192.168.1.1')));
    link.inject(arpRequest(SANDBOX4, SANDBOX_MAC, v4('10.0.2.101')));
    expect(link.drain()).toHaveLength(0);
  });

  it('drops a truncated ARP packet without answering', () => {
    const { link, stack } = setup();
    link.inject(arpRequest(GATEWAY4).subarray(0, 30));
    expect(link.drain()).toHaveLength(0);
    expect(stack.counters.drops['short-arp']).toBe(1);
  });

  it('learns the sandbox MAC from the request and sends later frames there', () => {
    const { link } = setup();
    const otherMac = mac('02:aa:bb:cc:dd:ee');
    link.inject(arpRequest(GATEWAY4, otherMac));
    expect(link.drain()[0]!.subarray(0, 6)).toEqual(otherMac);
  });
});

function neighborSolicitation(target: Buffer, src: Buffer, dst: Buffer, options: Buffer, hopLimit = 255): Buffer {
  const body = Buffer.concat([target, options]);
  const msg = icmp6(src, dst, 135, 0, 0, body);
  return ethernet(mac('33:33:ff:00:00:02'), SANDBOX_MAC, 0x86dd, ipv6(src, dst, 58, msg, hopLimit));
}

const SOLICITED_NODE_GATEWAY = v6('ff02::1:ff00:2');
const SLLA = Buffer.concat([Buffer.from([1, 1]), SANDBOX_MAC]);

describe('NDP', () => {
  it('answers a neighbour solicitation for fd00::2 with a solicited, overriding advertisement and our MAC', () => {
    const { link } = setup();
    link.inject(neighborSolicitation(GATEWAY6, SANDBOX6, SOLICITED_NODE_GATEWAY, SLLA));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv6Frame(frames[0]!);
    expect(ip.lengthOk).toBe(true);
    expect(ip.ethDst).toEqual(SANDBOX_MAC);
    expect(ip.nextHeader).toBe(58);
    expect(ip.hopLimit).toBe(255);
    expect(ip.src).toEqual(GATEWAY6);
    expect(ip.dst).toEqual(SANDBOX6);
    const na = ip.payload;
    expect(na[0]).toBe(136);
    expect(na[1]).toBe(0);
    expect(sumOk(na, 0, na.length, pseudoHeaderChecksum(ip.src, ip.dst, 58, na.length))).toBe(true);
    const flags = na[4]!;
    expect(flags & 0x40).toBe(0x40); // solicited
    expect(flags & 0x20).toBe(0x20); // override
    expect(na.subarray(8, 24)).toEqual(GATEWAY6);
    expect(na[24]).toBe(2); // target link-layer address option
    expect(na[25]).toBe(1);
    expect(na.subarray(26, 32)).toEqual(GATEWAY_MAC);
  });

  it('answers for the DNS address and the gateway link-local address', () => {
    const { link } = setup();
    link.inject(neighborSolicitation(v6('fd00::3'), SANDBOX6, v6('ff02::1:ff00:3'), SLLA));
    link.inject(neighborSolicitation(v6('fe80::ff:fe00:2'), v6('fe80::ff:fe00:100'), v6('ff02::1:ff00:2'), SLLA));
    const targets = link.drain().map((f) => parseIpv6Frame(f).payload.subarray(8, 24));
    expect(targets).toEqual([v6('fd00::3'), v6('fe80::ff:fe00:2')]);
  });

  it('answers a duplicate address probe from :: to all-nodes, not solicited', () => {
    const { link } = setup();
    link.inject(neighborSolicitation(GATEWAY6, v6('::'), SOLICITED_NODE_GATEWAY, Buffer.alloc(0)));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv6Frame(frames[0]!);
    expect(ip.dst).toEqual(v6('ff02::1'));
    expect(ip.ethDst).toEqual(mac('33:33:00:00:00:01'));
    expect(ip.payload[4]! & 0x40).toBe(0);
  });

  it('does not answer for the sandbox address (its own duplicate address detection)', () => {
    const { link } = setup();
    link.inject(neighborSolicitation(SANDBOX6, v6('::'), v6('ff02::1:ff00:100'), Buffer.alloc(0)));
    expect(link.drain()).toHaveLength(0);
  });

  it('drops solicitations that were routed (hop limit below 255) or carry a zero-length option', () => {
    const { link, stack } = setup();
    link.inject(neighborSolicitation(GATEWAY6, SANDBOX6, SOLICITED_NODE_GATEWAY, SLLA, 64));
    link.inject(neighborSolicitation(GATEWAY6, SANDBOX6, SOLICITED_NODE_GATEWAY, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])));
    link.inject(neighborSolicitation(GATEWAY6, SANDBOX6, SOLICITED_NODE_GATEWAY, Buffer.from([1, 2, 0, 0, 0, 0, 0, 0])));
    expect(link.drain()).toHaveLength(0);
    expect(stack.counters.drops['ndp-invalid']).toBe(1);
    expect(stack.counters.drops['ndp-zero-length-option']).toBe(1);
    expect(stack.counters.drops['ndp-truncated-option']).toBe(1);
  });

  it('drops a solicitation with a bad checksum', () => {
    const { link, stack } = setup();
    const frame = neighborSolicitation(GATEWAY6, SANDBOX6, SOLICITED_NODE_GATEWAY, SLLA);
    frame[14 + 40 + 2]! ^= 0xff;
    link.inject(frame);
    expect(link.drain()).toHaveLength(0);
    expect(stack.counters.drops['icmpv6-bad-checksum']).toBe(1);
  });
});

/** The target protocol address of every ARP reply among `frames`, in order. */
function arpReplyTargets(frames: Buffer[]): string[] {
  return frames.filter((f) => f.readUInt16BE(12) === 0x0806 && f.readUInt16BE(14 + 6) === 2).map((f) => [...f.subarray(14 + 14, 14 + 18)].join('.'));
}

describe('ARP for the other hosts of the sandbox prefix', () => {
  it('answers a request for another address of 10.0.2.0/24 with our MAC, so the flow reaches the forwarder', () => {
    const { link, forwarder } = setup();
    link.inject(arpRequest(v4('10.0.2.50')));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const reply = frames[0]!;
    expect(reply.subarray(0, 6)).toEqual(SANDBOX_MAC);
    expect(reply.subarray(6, 12)).toEqual(GATEWAY_MAC);
    const arp = reply.subarray(14);
    expect(arp.readUInt16BE(6)).toBe(2);
    expect(arp.subarray(8, 14)).toEqual(GATEWAY_MAC);
    expect(arp.subarray(14, 18)).toEqual(v4('10.0.2.50'));
    expect(arp.subarray(18, 24)).toEqual(SANDBOX_MAC);
    expect(arp.subarray(24, 28)).toEqual(SANDBOX4);

    link.inject(udp4Frame(v4('10.0.2.50'), 40000, 53, Buffer.from('q')));
    expect(forwarder.udpRequests.map((r) => `${r.id.dstAddr}:${r.id.dstPort}`)).toEqual(['10.0.2.50:53']);
  });

  it('answers for the first and last hosts, not the network or broadcast address', () => {
    const { link } = setup();
    for (const a of ['10.0.2.0', '10.0.2.1', '10.0.2.254', '10.0.2.255']) link.inject(arpRequest(v4(a)));
    expect(arpReplyTargets(link.drain())).toEqual(['10.0.2.1', '10.0.2.254']);
  });

  it('never answers an ARP probe (sender 0.0.0.0) or a gratuitous ARP (sender == target)', () => {
    const { link } = setup();
    link.inject(arpRequest(v4('10.0.2.50'), SANDBOX_MAC, v4('0.0.0.0')));
    link.inject(arpRequest(v4('10.0.2.51'), SANDBOX_MAC, v4('10.0.2.51')));
    link.inject(arpRequest(SANDBOX4, SANDBOX_MAC, SANDBOX4));
    expect(link.drain()).toHaveLength(0);
    // The probed and announced addresses are the sandbox's from now on: a request for them stays unanswered.
    link.inject(arpRequest(v4('10.0.2.50')));
    link.inject(arpRequest(v4('10.0.2.51')));
    link.inject(arpRequest(v4('10.0.2.52')));
    expect(arpReplyTargets(link.drain())).toEqual(['10.0.2.52']);
  });

  it('never answers for an address the sandbox announced or used as a source', () => {
    const { link } = setup();
    link.inject(arpRequest(v4('10.0.2.51'), SANDBOX_MAC, v4('10.0.2.51'))); // announced (gratuitous)
    link.inject(udp4Frame(v4('1.1.1.1'), 40000, 53, Buffer.from('q'), v4('10.0.2.60'))); // used as a source
    link.drain();
    link.inject(arpRequest(v4('10.0.2.51')));
    link.inject(arpRequest(v4('10.0.2.60')));
    link.inject(arpRequest(v4('10.0.2.61')));
    expect(arpReplyTargets(link.drain())).toEqual(['10.0.2.61']);
  });

  it(`stops answering once the sandbox used more than ${MAX_LEARNED} addresses of the prefix (its own are no longer known)`, () => {
    const { link } = setup();
    // 10.0.2.100 (configured) and MAX_LEARNED - 1 more: all known, still answering for the rest.
    for (let i = 0; i < MAX_LEARNED - 1; i++) link.inject(udp4Frame(v4('1.1.1.1'), 40000, 53, Buffer.from('q'), v4(`10.0.2.${110 + i}`)));
    link.drain();
    link.inject(arpRequest(v4('10.0.2.50')));
    expect(arpReplyTargets(link.drain())).toEqual(['10.0.2.50']);
    link.inject(udp4Frame(v4('1.1.1.1'), 40000, 53, Buffer.from('q'), v4('10.0.2.200')));
    link.drain();
    link.inject(arpRequest(v4('10.0.2.50')));
    link.inject(arpRequest(GATEWAY4));
    expect(arpReplyTargets(link.drain())).toEqual(['10.0.2.2']);
  });

  it('takes the prefix from the configured sandbox address', () => {
    const { link } = setup({ sandbox4: '192.168.7.10/28', gateway4: '192.168.7.1', dns4: '192.168.7.2' });
    for (const a of ['192.168.7.5', '192.168.7.10', '192.168.7.14', '192.168.7.15', '192.168.7.16', '10.0.2.50']) {
      link.inject(arpRequest(v4(a), SANDBOX_MAC, v4('192.168.7.10')));
    }
    expect(arpReplyTargets(link.drain())).toEqual(['192.168.7.5', '192.168.7.14']);
  });

  it('answers a ping to such an address with host unreachable, and drops one off the prefix', () => {
    const { link } = setup();
    const echo = (dst: Buffer) => ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst, protocol: 1, payload: icmp4(8, 0, 0x12340001, Buffer.from('ping')) }));
    link.inject(echo(v4('10.0.2.50')));
    link.inject(echo(v4('10.0.3.50')));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv4Frame(frames[0]!);
    expect(ip.dst).toBe('10.0.2.100');
    expect([ip.protocol, ip.payload[0], ip.payload[1]]).toEqual([1, 3, 1]); // destination unreachable, host
  });
});

/** A neighbour solicitation from `src` for `target`, to its solicited-node group, with our source option unless from ::. */
function solicit(target: Buffer, src: Buffer, sourceMac = SANDBOX_MAC): Buffer {
  const group = Buffer.concat([v6('ff02::1:ff00:0').subarray(0, 13), target.subarray(13)]);
  const options = src.equals(v6('::')) ? Buffer.alloc(0) : Buffer.concat([Buffer.from([1, 1]), sourceMac]);
  const msg = icmp6(src, group, 135, 0, 0, Buffer.concat([target, options]));
  return ethernet(Buffer.concat([Buffer.from([0x33, 0x33]), group.subarray(12)]), sourceMac, 0x86dd, ipv6(src, group, 58, msg, 255));
}

/** The target address of every neighbour advertisement among `frames`, in order. */
function advertised(frames: Buffer[]): Buffer[] {
  return frames.map((f) => parseIpv6Frame(f)).filter((ip) => ip.nextHeader === 58 && ip.payload[0] === 136).map((ip) => ip.payload.subarray(8, 24));
}

const SANDBOX_LINK_LOCAL = v6('fe80::ff:fe00:100'); // modified EUI-64 of 02:00:00:00:01:00

describe('NDP for the other hosts of the sandbox prefix', () => {
  it('answers a solicitation for another address of fd00::/64: solicited, neither router nor override, our MAC', () => {
    const { link, forwarder } = setup();
    link.inject(solicit(v6('fd00::50'), SANDBOX6));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv6Frame(frames[0]!);
    expect(ip.lengthOk).toBe(true);
    expect(ip.ethDst).toEqual(SANDBOX_MAC);
    expect(ip.hopLimit).toBe(255);
    expect(ip.dst).toEqual(SANDBOX6);
    const na = ip.payload;
    expect(na[0]).toBe(136);
    expect(sumOk(na, 0, na.length, pseudoHeaderChecksum(ip.src, ip.dst, 58, na.length))).toBe(true);
    expect(na[4]! & 0xe0).toBe(0x40); // solicited only
    expect(na.subarray(8, 24)).toEqual(v6('fd00::50'));
    expect([na[24], na[25]]).toEqual([2, 1]);
    expect(na.subarray(26, 32)).toEqual(GATEWAY_MAC);

    link.inject(udp6Frame(v6('fd00::50'), 40000, 53, Buffer.from('q')));
    expect(forwarder.udpRequests.map((r) => `${r.id.dstAddr}:${r.id.dstPort}`)).toEqual(['fd00::50:53']);
  });

  it('never answers a duplicate address probe (from ::) for such an address, nor anything for it afterwards', () => {
    const { link, stack } = setup();
    link.inject(solicit(v6('fd00::50'), v6('::')));
    expect(link.drain()).toHaveLength(0);
    expect(stack.counters.drops['ndp-target-not-ours']).toBe(1);
    link.inject(solicit(v6('fd00::50'), SANDBOX6));
    link.inject(solicit(v6('fd00::51'), SANDBOX6));
    expect(advertised(link.drain())).toEqual([v6('fd00::51')]);
  });

  it("learns the sandbox's link-local address from its duplicate address probe, then answers other fe80:: addresses", () => {
    const { link } = setup();
    const opaque = v6('fe80::1c4a:93ff:2b07:d5e1');
    link.inject(solicit(v6('fe80::50'), SANDBOX6));
    link.inject(solicit(opaque, v6('::')));
    expect(link.drain()).toHaveLength(0);
    link.inject(solicit(v6('fe80::50'), SANDBOX6));
    link.inject(solicit(opaque, SANDBOX6));
    expect(advertised(link.drain())).toEqual([v6('fe80::50')]);
  });

  it('never answers for the sandbox own addresses: configured, used as a source, or its MAC EUI-64', () => {
    const { link } = setup();
    link.inject(udp6Frame(v6('2001:db8::1'), 40000, 53, Buffer.from('q'), v6('fd00::abcd')));
    link.drain();
    link.inject(solicit(SANDBOX6, v6('fd00::abcd')));
    link.inject(solicit(v6('fd00::abcd'), SANDBOX6));
    link.inject(solicit(v6('fd00::ff:fe00:100'), SANDBOX6));
    link.inject(solicit(v6('fd00::51'), SANDBOX6));
    expect(advertised(link.drain())).toEqual([v6('fd00::51')]);
  });

  it('stays silent for addresses off the prefix', () => {
    const { link } = setup();
    link.inject(solicit(v6('fd01::50'), SANDBOX6));
    link.inject(solicit(v6('2001:db8::50'), SANDBOX6));
    expect(link.drain()).toHaveLength(0);
  });

  it('answers other fe80::/64 addresses only once the sandbox was seen using its link-local address', () => {
    const { link } = setup();
    link.inject(solicit(v6('fe80::50'), SANDBOX6));
    expect(link.drain()).toHaveLength(0);
    link.inject(solicit(v6('fe80::50'), SANDBOX_LINK_LOCAL));
    link.inject(solicit(SANDBOX_LINK_LOCAL, SANDBOX6));
    link.inject(solicit(v6('fe80::ff:fe00:2'), SANDBOX_LINK_LOCAL)); // ours: router, override
    const frames = link.drain();
    expect(advertised(frames)).toEqual([v6('fe80::50'), v6('fe80::ff:fe00:2')]);
    expect(frames.map((f) => parseIpv6Frame(f).payload[4]! & 0xe0)).toEqual([0x40, 0xe0]);
  });

  it('never answers for an opaque (stable-privacy) link-local the sandbox used, nor for the EUI-64 one of its MAC', () => {
    const { link } = setup({ sandboxMac: '02:00:00:00:01:00' });
    const opaque = v6('fe80::1c4a:93ff:2b07:d5e1');
    link.inject(solicit(v6('fe80::77'), opaque, mac('02:00:00:00:01:00')));
    link.inject(solicit(opaque, SANDBOX6));
    link.inject(solicit(SANDBOX_LINK_LOCAL, SANDBOX6));
    link.inject(solicit(v6('fe80::78'), SANDBOX6));
    expect(advertised(link.drain())).toEqual([v6('fe80::77'), v6('fe80::78')]);
  });

  it('takes the prefix from the configured sandbox address', () => {
    const { link } = setup({ sandbox6: 'fd42:1:2:3::10/64', gateway6: 'fd42:1:2:3::1', dns6: 'fd42:1:2:3::2' });
    const me = v6('fd42:1:2:3::10');
    link.inject(solicit(v6('fd42:1:2:3::50'), me));
    link.inject(solicit(v6('fd00::50'), me));
    link.inject(solicit(me, v6('fd42:1:2:3::11')));
    expect(advertised(link.drain())).toEqual([v6('fd42:1:2:3::50')]);
  });

  it('answers a ping to such an address with address unreachable', () => {
    const { link } = setup();
    const dst = v6('fd00::50');
    link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(SANDBOX6, dst, 58, icmp6(SANDBOX6, dst, 128, 0, 0x12340001, Buffer.from('ping')))));
    const frames = link.drain();
    expect(frames).toHaveLength(1);
    const ip = parseIpv6Frame(frames[0]!);
    expect(ip.dst).toEqual(SANDBOX6);
    expect([ip.payload[0], ip.payload[1]]).toEqual([1, 3]); // destination unreachable, address unreachable
  });
});
