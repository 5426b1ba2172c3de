// Frame builders and parsers for the netstack conformance tests. They write bytes by hand (RFC
// layouts) rather than through the stack's own emit helpers, so a bug there cannot hide itself.
import { checksumTs, pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { ChannelEndpoint, ManualClock, Stack, type StackConfig } from '../../netstack/index.js';
import type { Forwarder, TcpForwarderRequest, UdpForwarderRequest } from '../../netstack/index.js';

export const GATEWAY_MAC = mac('02:00:00:00:00:02');
export const SANDBOX_MAC = mac('02:00:00:00:01:00');
export const SANDBOX4 = v4('10.0.2.100');
export const GATEWAY4 = v4('10.0.2.2');
export const DNS4 = v4('10.0.2.3');
export const SANDBOX6 = v6('fd00::100');
export const GATEWAY6 = v6('fd00::2');

export function mac(text: string): Buffer {
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}
export function v4(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}
/** Full-form or "::"-compressed IPv6 text to 16 bytes. */
export function v6(text: string): Buffer {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function ethernet(dst: Buffer, src: Buffer, type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(14);
  dst.copy(head, 0);
  src.copy(head, 6);
  head.writeUInt16BE(type, 12);
  return Buffer.concat([head, payload]);
}

export interface Ipv4Fields {
  src: Buffer;
  dst: Buffer;
  protocol: number;
  payload: Buffer;
  id?: number;
  ttl?: number;
  /** Fragment offset in bytes (multiple of 8). */
  fragmentOffset?: number;
  moreFragments?: boolean;
  options?: Buffer;
}

export function ipv4(f: Ipv4Fields): Buffer {
  const options = f.options ?? Buffer.alloc(0);
  const ihl = 20 + options.length;
  const head = Buffer.alloc(ihl);
  head[0] = 0x40 | (ihl / 4);
  head.writeUInt16BE(ihl + f.payload.length, 2);
  head.writeUInt16BE(f.id ?? 1, 4);
  head.writeUInt16BE(((f.fragmentOffset ?? 0) / 8) | (f.moreFragments ? 0x2000 : 0), 6);
  head[8] = f.ttl ?? 64;
  head[9] = f.protocol;
  f.src.copy(head, 12);
  f.dst.copy(head, 16);
  options.copy(head, 20);
  head.writeUInt16BE(~checksumTs(head, 0, ihl) & 0xffff, 10);
  return Buffer.concat([head, f.payload]);
}

export function ipv6(src: Buffer, dst: Buffer, nextHeader: number, payload: Buffer, hopLimit = 64): Buffer {
  const head = Buffer.alloc(40);
  head.writeUInt32BE(0x60000000, 0);
  head.writeUInt16BE(payload.length, 4);
  head[6] = nextHeader;
  head[7] = hopLimit;
  src.copy(head, 8);
  dst.copy(head, 24);
  return Buffer.concat([head, payload]);
}

/** A UDP datagram with a correct checksum (or `checksum` as given). */
export function udp(src: Buffer, dst: Buffer, srcPort: number, dstPort: number, data: Buffer, checksum?: number): Buffer {
  const d = Buffer.alloc(8 + data.length);
  d.writeUInt16BE(srcPort, 0);
  d.writeUInt16BE(dstPort, 2);
  d.writeUInt16BE(d.length, 4);
  data.copy(d, 8);
  const sum = ~checksumTs(d, 0, d.length, pseudoHeaderChecksum(src, dst, 17, d.length)) & 0xffff;
  d.writeUInt16BE(checksum ?? (sum === 0 ? 0xffff : sum), 6);
  return d;
}

/** An ICMP (v4) message with a correct checksum. */
export function icmp4(type: number, code: number, rest: number, body: Buffer): Buffer {
  const m = Buffer.alloc(8 + body.length);
  m[0] = type;
  m[1] = code;
  m.writeUInt32BE(rest >>> 0, 4);
  body.copy(m, 8);
  m.writeUInt16BE(~checksumTs(m, 0, m.length) & 0xffff, 2);
  return m;
}

/** An ICMPv6 message from `src` to `dst` with a correct checksum. */
export function icmp6(src: Buffer, dst: Buffer, type: number, code: number, rest: number, body: Buffer): Buffer {
  const m = Buffer.alloc(8 + body.length);
  m[0] = type;
  m[1] = code;
  m.writeUInt32BE(rest >>> 0, 4);
  body.copy(m, 8);
  m.writeUInt16BE(~checksumTs(m, 0, m.length, pseudoHeaderChecksum(src, dst, 58, m.length)) & 0xffff, 2);
  return m;
}

export function udp4Frame(dst: Buffer, srcPort: number, dstPort: number, data: Buffer, src = SANDBOX4): Buffer {
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src, dst, protocol: 17, payload: udp(src, dst, srcPort, dstPort, data) }));
}

export function udp6Frame(dst: Buffer, srcPort: number, dstPort: number, data: Buffer, src = SANDBOX6): Buffer {
  return ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x86dd, ipv6(src, dst, 17, udp(src, dst, srcPort, dstPort, data)));
}

/** Whether the Internet checksum over `len` bytes (with `initial`) verifies. */
export function sumOk(buf: Buffer, off: number, len: number, initial = 0): boolean {
  return checksumTs(buf, off, len, initial) === 0xffff;
}

/** The fields of an IPv4 frame the stack wrote, after checking its Ethernet and IP headers. */
export function parseIpv4Frame(frame: Buffer): { src: string; dst: string; protocol: number; ttl: number; payload: Buffer; headerOk: boolean; ethDst: Buffer; ethSrc: Buffer } {
  const ip = frame.subarray(14);
  const ihl = (ip[0]! & 15) * 4;
  return {
    ethDst: frame.subarray(0, 6),
    ethSrc: frame.subarray(6, 12),
    src: [...ip.subarray(12, 16)].join('.'),
    dst: [...ip.subarray(16, 20)].join('.'),
    protocol: ip[9]!,
    ttl: ip[8]!,
    headerOk: frame.readUInt16BE(12) === 0x0800 && ip[0]! >>> 4 === 4 && sumOk(ip, 0, ihl) && ip.readUInt16BE(2) === ip.length,
    payload: ip.subarray(ihl),
  };
}

export function parseIpv6Frame(frame: Buffer): { src: Buffer; dst: Buffer; nextHeader: number; hopLimit: number; payload: Buffer; ethDst: Buffer; lengthOk: boolean } {
  const ip = frame.subarray(14);
  return {
    ethDst: frame.subarray(0, 6),
    src: ip.subarray(8, 24),
    dst: ip.subarray(24, 40),
    nextHeader: ip[6]!,
    hopLimit: ip[7]!,
    payload: ip.subarray(40),
    lengthOk: frame.readUInt16BE(12) === 0x86dd && ip.readUInt16BE(4) === ip.length - 40,
  };
}

/** A Forwarder that records requests and answers UDP ones as `onUdp` says (default: leave pending). */
export class TestForwarder implements Forwarder {
  readonly udpRequests: UdpForwarderRequest[] = [];
  readonly tcpRequests: TcpForwarderRequest[] = [];
  onUdp: ((req: UdpForwarderRequest) => void) | null = null;

  tcp(req: TcpForwarderRequest): void {
    this.tcpRequests.push(req);
  }
  udp(req: UdpForwarderRequest): void {
    this.udpRequests.push(req);
    this.onUdp?.(req);
  }
}

export function setup(config: Partial<StackConfig> = {}, mtu = 1500) {
  const clock = new ManualClock();
  const link = new ChannelEndpoint({ mtu });
  const forwarder = new TestForwarder();
  const stack = new Stack({ link, clock, forwarder, ...config });
  return { clock, link, forwarder, stack };
}
