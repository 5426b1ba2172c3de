import { describe, expect, it } from 'vitest';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { ethernet, GATEWAY4, GATEWAY6, GATEWAY_MAC, icmp6, ipv6, mac, parseIpv6Frame, SANDBOX4, SANDBOX6, SANDBOX_MAC, setup, sumOk, v4, v6 } from './frames.js';

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

  it('stays silent for any other address, the sandbox own included', () => {
    const { link } = setup();
    link.inject(arpRequest(v4('10.0.2.77')));
    link.inject(arpRequest(SANDBOX4));
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
