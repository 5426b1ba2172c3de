// The Stack: one NIC on one LinkEndpoint, the network layer, and the transports registered on it.
//
// Theory of operation
//
// The sandbox sits on the other end of the link and believes it talks to a router (us) at the
// gateway MAC. Every inbound frame goes through deliverFrame(): the Ethernet header is checked and
// the sandbox's MAC is learned from its source; ARP requests for the gateway/DNS addresses, and for
// the other hosts of the sandbox's on-link prefixes (network/neighbors.ts: a connect to 10.0.2.50 or
// fd00::50 then reaches the Forwarder at once instead of failing neighbour resolution 3 s later), are
// answered (arp.ts, ndp.ts); IPv4 and IPv6 packets are validated, their extension headers walked and
// fragments reassembled with bounded memory (network/ipv4.ts, ipv6.ts, fragments.ts), and each
// whole packet reaches deliver(). ICMP and ICMPv6 stop there (echo replies for our own addresses,
// neighbour advertisements, errors passed to the transport that owns the quoted flow); everything
// else goes to the transport registered for its protocol number whatever its destination address:
// the stack is promiscuous, like gVisor's forwarders, and the transports hand each new flow to the
// Forwarder, which decides whether it may reach the outside.
//
// The link may say what the sandbox's kernel left to us for a frame (FrameOffload, the TAP with a
// virtio-net header): a TCP/UDP checksum holding only the pseudo-header sum, which deliver() marks as
// trusted in NetworkInfo so the transport skips it (never for a datagram reassembled from fragments),
// and a TCP super-segment (GSO), the only packet allowed to exceed the MTU; other frames longer than
// the MTU are dropped.
//
// Outbound, every packet is built in one preallocated scratch frame per family: the transport
// writes its header and data at scratch(family).offset, then send() fills the IP header (ID, TTL 64,
// checksum) and the Ethernet header (to the sandbox's learned MAC) in front of it and writes the
// frame to the link synchronously, after which the scratch frame is free again. A datagram larger
// than the MTU (a big UDP answer, a big ping reply) is cut into IP fragments built in one more
// preallocated frame. Nothing on this path allocates except the frame view handed to the link.
import type { FrameOffload, LinkEndpoint, NetworkDispatcher } from '../link/endpoint.js';
import { BROADCAST_MAC, emitEthernet, ETHERNET_HEADER_LENGTH, EtherType, EthernetView, macEquals, parseMac, validateEthernet } from '../header/ethernet.js';
import { IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_MAX_PACKET_LENGTH, IPV4_MIN_HEADER_LENGTH, isIpv4GroupAddress, Ipv4Repr, parseIpv4 } from '../header/ipv4.js';
import { emitIpv6Fragment, IPV6_FRAGMENT_HEADER_LENGTH, IPV6_HEADER_LENGTH, Ipv6Ext, Ipv6Repr, isIpv6Multicast, parseIpv6 } from '../header/ipv6.js';
import { ICMPV6_PROTOCOL } from '../header/icmpv6.js';
import { TCP_PROTOCOL } from '../header/tcp.js';
import { ArpResponder } from '../network/arp.js';
import type { ReassemblyLimits } from '../network/fragments.js';
import { Icmp, ICMPV4_PROTOCOL } from '../network/icmp.js';
import { Ipv4Input, IPV4_REASSEMBLY_DEFAULTS } from '../network/ipv4.js';
import { Ipv6Input, IPV6_REASSEMBLY_DEFAULTS } from '../network/ipv6.js';
import { NeighborDiscovery } from '../network/ndp.js';
import { OnLinkNeighbors } from '../network/neighbors.js';
import type { NetworkHost } from '../network/host.js';
import { UdpProtocol, UDP_DEFAULTS, type UdpOptions } from '../transport/udp/index.js';
import { StackCounters } from './counters.js';
import type { Forwarder } from '../forwarding.js';
import type { Clock, Family, LimitHook, LimitName, NetworkInfo, TransportProtocol, UnreachableReason } from '../tcpip.js';

export interface StackConfig {
  link: LinkEndpoint;
  clock: Clock;
  forwarder: Forwarder;
  /** Largest IP packet; defaults to the link's MTU. */
  mtu?: number;
  /** Our (the gateway's) MAC. Default 02:00:00:00:00:02. */
  mac?: string;
  /** The sandbox's MAC until a frame teaches it; until then frames go to broadcast. */
  sandboxMac?: string;
  gateway4?: string;
  dns4?: string;
  gateway6?: string;
  dns6?: string;
  /**
   * The sandbox's own addresses with their prefix length (default 10.0.2.100/24, fd00::100/64): the
   * on-link prefixes whose other hosts ARP / NDP answer for, and addresses never answered for.
   */
  sandbox4?: string;
  sandbox6?: string;
  udp?: Partial<UdpOptions>;
  reassembly4?: Partial<ReassemblyLimits>;
  reassembly6?: Partial<ReassemblyLimits>;
  /** Told whenever a resource cap refuses or evicts something (UDP sessions, reassembly memory). */
  onLimit?: LimitHook;
}

export const STACK_DEFAULTS = {
  mac: '02:00:00:00:00:02',
  gateway4: '10.0.2.2',
  dns4: '10.0.2.3',
  gateway6: 'fd00::2',
  dns6: 'fd00::3',
  sandbox4: '10.0.2.100/24',
  sandbox6: 'fd00::100/64',
} as const;

const DEFAULT_TTL = 64;
const IPV6_MAX_PAYLOAD = 65535;

interface Scratch {
  buf: Buffer;
  offset: number;
}

export class Stack implements NetworkDispatcher, NetworkHost {
  readonly counters = new StackCounters();
  readonly mtu: number;
  readonly mac: Uint8Array;
  /** The gateway's IPv6 link-local address (EUI-64 from our MAC), which NDP also answers for. */
  readonly linkLocal6: Uint8Array;
  readonly ipv4: Ipv4Input;
  readonly ipv6: Ipv6Input;
  readonly udp: UdpProtocol;

  private readonly link: LinkEndpoint;
  private readonly own4: Uint8Array[];
  private readonly own6: Uint8Array[];
  private readonly sandboxMac: Uint8Array;
  private readonly neighbors: OnLinkNeighbors;
  private readonly transports: (TransportProtocol | undefined)[] = new Array<TransportProtocol | undefined>(256);
  private readonly arp: ArpResponder;
  private readonly icmp: Icmp;
  private readonly eth = new EthernetView();
  private readonly scratch4: Scratch;
  private readonly scratch6: Scratch;
  private readonly net4: NetworkInfo = { family: 4, src: new Uint8Array(4), dst: new Uint8Array(4), packet: Buffer.alloc(0), checksumTrusted: false };
  private readonly net6: NetworkInfo = { family: 6, src: new Uint8Array(16), dst: new Uint8Array(16), packet: Buffer.alloc(0), checksumTrusted: false };
  /** What the link said of the frame being delivered (a partial checksum, a GSO super-segment). */
  private offload: FrameOffload | undefined = undefined;
  private readonly fragmentFrame: Buffer;
  /** The IP header of the packet being sent, one per family, reused. */
  private readonly ip4 = new Ipv4Repr();
  private readonly ip6 = new Ipv6Repr();
  private nextIpId = Math.floor(Math.random() * 0x10000);
  private nextFragmentId6 = Math.floor(Math.random() * 0x100000000);
  /** The drops that mean a cap was hit, with the cap they hit (reported through onLimit). */
  private readonly capOfDrop: Record<string, [LimitName, number, string]>;
  private readonly onLimit: LimitHook | undefined;
  private closed = false;

  constructor(config: StackConfig) {
    this.link = config.link;
    this.mtu = config.mtu ?? config.link.mtu;
    this.mac = parseMac(config.mac ?? STACK_DEFAULTS.mac);
    this.sandboxMac = config.sandboxMac ? parseMac(config.sandboxMac) : BROADCAST_MAC.slice();
    this.linkLocal6 = linkLocalFromMac(this.mac);
    this.own4 = [parseIpv4(config.gateway4 ?? STACK_DEFAULTS.gateway4), parseIpv4(config.dns4 ?? STACK_DEFAULTS.dns4)];
    this.own6 = [parseIpv6(config.gateway6 ?? STACK_DEFAULTS.gateway6), parseIpv6(config.dns6 ?? STACK_DEFAULTS.dns6), this.linkLocal6];
    // The sandbox's MACs: the configured one, and the learned one (updated in place by learnSandboxMac).
    const sandboxMacs = config.sandboxMac ? [parseMac(config.sandboxMac), this.sandboxMac] : [this.sandboxMac];
    this.neighbors = new OnLinkNeighbors(config.sandbox4 ?? STACK_DEFAULTS.sandbox4, config.sandbox6 ?? STACK_DEFAULTS.sandbox6, sandboxMacs);
    // Scratch frames hold the largest datagram (sent as fragments past the MTU); one more frame builds fragments.
    this.scratch4 = { buf: Buffer.alloc(ETHERNET_HEADER_LENGTH + IPV4_MAX_PACKET_LENGTH), offset: ETHERNET_HEADER_LENGTH + IPV4_MIN_HEADER_LENGTH };
    this.scratch6 = { buf: Buffer.alloc(ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH + IPV6_MAX_PAYLOAD), offset: ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH };
    this.fragmentFrame = Buffer.alloc(ETHERNET_HEADER_LENGTH + this.mtu);

    const udpOptions = { ...UDP_DEFAULTS, ...config.udp };
    const reassembly4 = { ...IPV4_REASSEMBLY_DEFAULTS, ...config.reassembly4 };
    const reassembly6 = { ...IPV6_REASSEMBLY_DEFAULTS, ...config.reassembly6 };
    this.capOfDrop = {
      'udp-session-cap': ['udp-sessions', udpOptions.maxSessions, 'UDP sessions at the cap: new flow refused with ICMP'],
      'reassembly-evicted': ['reassembly', Math.max(reassembly4.maxBytes, reassembly6.maxBytes), 'reassembly memory full: oldest datagram evicted'],
      'reassembly-memory-full': ['reassembly', Math.max(reassembly4.maxBytes, reassembly6.maxBytes), 'reassembly memory full: fragment dropped'],
    };
    this.onLimit = config.onLimit;
    this.arp = new ArpResponder(this, this.mac, this.neighbors);
    this.icmp = new Icmp(this, new NeighborDiscovery(this, this.mac, this.neighbors));
    this.ipv4 = new Ipv4Input(config.clock, reassembly4, this);
    this.ipv6 = new Ipv6Input(config.clock, reassembly6, this);
    // A link with a native UDP relay (the TAP) carries admitted flows the forwarder hands it (UdpConn.relay).
    const relay = this.link.udpRelay ?? null;
    relay?.enable(this.mac, this.sandboxMac, this.mtu);
    this.udp = new UdpProtocol(this, config.clock, config.forwarder, udpOptions, (reason) => this.drop(reason), relay);
    this.registerTransport(this.udp);
    this.link.attach(this);
  }

  /** Registers a transport (TCP: 6) for its protocol number; inbound packets of that protocol go to it. */
  registerTransport(transport: TransportProtocol): void {
    if (transport.protocol === ICMPV4_PROTOCOL || transport.protocol === ICMPV6_PROTOCOL) {
      throw new Error(`protocol ${transport.protocol} is handled by the stack itself`);
    }
    this.transports[transport.protocol] = transport;
  }

  /**
   * One inbound frame. Longer than the MTU only as a GSO super-segment (`offload.gsoSize` > 0: a TCP
   * segment the sandbox's kernel left to us to cut, up to 64 KiB); any other such frame is dropped.
   */
  deliverFrame(frame: Buffer, offload?: FrameOffload): void {
    if (this.closed) return;
    this.counters.framesIn++;
    const reason = validateEthernet(frame);
    if (reason) return this.counters.drop(reason);
    if (frame.length - ETHERNET_HEADER_LENGTH > this.mtu && !(offload && offload.gsoSize > 0)) return this.counters.drop('frame-too-long');
    const eth = this.eth.of(frame, 0);
    if (!eth.isGroupDestination && !macEquals(frame, eth.dstOffset, this.mac)) return this.counters.drop('not-our-mac');
    this.learnSandboxMac(frame, eth.srcOffset);
    this.offload = offload;
    this.dispatchFrame(frame, eth.etherType, eth.payloadOffset);
    this.offload = undefined;
  }

  private dispatchFrame(frame: Buffer, etherType: number, payloadOffset: number): void {
    switch (etherType) {
      case EtherType.ARP:
        return this.arp.handle(frame, payloadOffset);
      case EtherType.IPv4:
        return this.ipv4.handle(frame, payloadOffset);
      case EtherType.IPv6:
        return this.ipv6.handle(frame, payloadOffset);
      default:
        return this.counters.drop('unknown-ethertype');
    }
  }

  /** Frames are written synchronously as they are produced, so a batch leaves nothing to flush. */
  batchDone(): void {}

  maxTransportLength(family: Family): number {
    return this.mtu - (family === 4 ? IPV4_MIN_HEADER_LENGTH : IPV6_HEADER_LENGTH);
  }

  scratch(family: Family): { buf: Buffer; offset: number } {
    return family === 4 ? this.scratch4 : this.scratch6;
  }

  /**
   * Largest transport payload `send` accepts: more than `maxTransportLength` is sent as IP fragments
   * (UDP and ICMP only: TCP sizes its segments to the MTU).
   */
  maxDatagramLength(family: Family): number {
    return family === 4 ? IPV4_MAX_PACKET_LENGTH - IPV4_MIN_HEADER_LENGTH : IPV6_MAX_PAYLOAD - IPV6_FRAGMENT_HEADER_LENGTH;
  }

  send(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number, hopLimit = DEFAULT_TTL): void {
    if (this.closed) return;
    if (length > this.maxTransportLength(family)) {
      if (length > this.maxDatagramLength(family)) return this.counters.drop('send-too-big');
      return family === 4 ? this.sendFragments4(src, dst, protocol, length, hopLimit) : this.sendFragments6(src, dst, protocol, length, hopLimit);
    }
    this.writeFrame(this.packetAtScratch(family, src, dst, protocol, length, hopLimit));
  }

  maxTcpSuperSegmentLength(family: Family): number {
    if (!this.link.tcpSegmentation) return 0;
    // Both families within one 64 KiB IP packet: the frame then fits the TAP's largest frame.
    return IPV4_MAX_PACKET_LENGTH - (family === 4 ? IPV4_MIN_HEADER_LENGTH : IPV6_HEADER_LENGTH);
  }

  sendTcpSuperSegment(family: Family, src: Uint8Array, dst: Uint8Array, length: number, segmentSize: number): void {
    const link = this.link.tcpSegmentation;
    if (this.closed) return;
    if (!link || length > this.maxTcpSuperSegmentLength(family)) return this.counters.drop('send-too-big');
    const frame = this.packetAtScratch(family, src, dst, TCP_PROTOCOL, length, DEFAULT_TTL);
    this.counters.framesOut++;
    link.writeSuperSegment(frame, family, segmentSize, ETHERNET_HEADER_LENGTH + (family === 4 ? IPV4_MIN_HEADER_LENGTH : IPV6_HEADER_LENGTH));
  }

  /** Puts the IP and Ethernet headers in front of the `length` bytes at the family's scratch offset; the frame. */
  private packetAtScratch(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number, hopLimit: number): Buffer {
    const buf = family === 4 ? this.scratch4.buf : this.scratch6.buf;
    if (family === 4) {
      // A packet that fits the MTU is never fragmented on its way (nor is a super-segment), so DF is set.
      const ip = this.ipv4Packet(src, dst, protocol, hopLimit);
      ip.flags = IPV4_FLAG_DF;
      ip.payloadLength = length;
      ip.emit(buf, ETHERNET_HEADER_LENGTH);
      this.emitEthernetTo(buf, dst, EtherType.IPv4);
      return buf.subarray(0, ETHERNET_HEADER_LENGTH + IPV4_MIN_HEADER_LENGTH + length);
    }
    const ip = this.ipv6Packet(src, dst, protocol, hopLimit);
    ip.payloadLength = length;
    ip.emit(buf, ETHERNET_HEADER_LENGTH);
    this.emitEthernetTo(buf, dst, EtherType.IPv6);
    return buf.subarray(0, ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH + length);
  }

  sendUnreachable(packet: Buffer, family: Family, how: UnreachableReason): void {
    this.icmp.sendUnreachable(packet, family, how);
  }

  /** Sends an ICMP "fragmentation needed" / ICMPv6 packet-too-big about `packet` (an inbound IP packet). */
  sendPacketTooBig(packet: Buffer, family: Family, mtu: number): void {
    this.icmp.sendPacketTooBig(packet, family, mtu);
  }

  /** Whether the 4- or 16-byte address at `off` in `buf` is one of ours (gateway, DNS, link-local). */
  isOwnAddress(family: Family, buf: Uint8Array, off: number): boolean {
    const list = family === 4 ? this.own4 : this.own6;
    for (const addr of list) if (bytesEqual(buf, off, addr)) return true;
    return false;
  }

  isOnLinkNeighbor(family: Family, buf: Uint8Array, off: number): boolean {
    return !this.isOwnAddress(family, buf, off) && this.neighbors.answers(family, buf, off);
  }

  transport(protocol: number): TransportProtocol | undefined {
    return this.transports[protocol];
  }

  drop(reason: string): void {
    this.counters.drop(reason);
    const cap = this.onLimit && this.capOfDrop[reason];
    if (cap) this.onLimit!(...cap);
  }

  /** Stops the stack: no more frames in or out, UDP sessions end, reassembly memory is freed. */
  close(): void {
    if (this.closed) return;
    this.udp.close();
    this.closed = true;
    this.ipv4.reassembler.clear();
    this.ipv6.reassembler.clear();
  }

  /** Sends the `length` bytes at the IPv4 scratch offset as fragments, each built in the fragment frame. */
  private sendFragments4(src: Uint8Array, dst: Uint8Array, protocol: number, length: number, ttl: number): void {
    const data = this.scratch4.buf;
    const frame = this.fragmentFrame;
    const chunk = Math.floor((this.mtu - IPV4_MIN_HEADER_LENGTH) / 8) * 8;
    const ip = this.ipv4Packet(src, dst, protocol, ttl);
    this.emitEthernetTo(frame, dst, EtherType.IPv4);
    for (let off = 0; off < length; off += chunk) {
      const size = Math.min(chunk, length - off);
      const flags = (off / 8) | (off + size < length ? IPV4_FLAG_MF : 0);
      data.copy(frame, ETHERNET_HEADER_LENGTH + IPV4_MIN_HEADER_LENGTH, this.scratch4.offset + off, this.scratch4.offset + off + size);
      ip.flags = flags;
      ip.payloadLength = size;
      ip.emit(frame, ETHERNET_HEADER_LENGTH);
      this.writeFrame(frame.subarray(0, ETHERNET_HEADER_LENGTH + IPV4_MIN_HEADER_LENGTH + size));
    }
  }

  /** Sends the `length` bytes at the IPv6 scratch offset as fragments (RFC 8200 section 4.5). */
  private sendFragments6(src: Uint8Array, dst: Uint8Array, protocol: number, length: number, hopLimit: number): void {
    const data = this.scratch6.buf;
    const frame = this.fragmentFrame;
    const headers = IPV6_HEADER_LENGTH + IPV6_FRAGMENT_HEADER_LENGTH;
    const chunk = Math.floor((this.mtu - headers) / 8) * 8;
    const id = this.nextFragmentId6;
    this.nextFragmentId6 = (this.nextFragmentId6 + 1) >>> 0;
    const ip = this.ipv6Packet(src, dst, Ipv6Ext.Fragment, hopLimit);
    this.emitEthernetTo(frame, dst, EtherType.IPv6);
    for (let off = 0; off < length; off += chunk) {
      const size = Math.min(chunk, length - off);
      data.copy(frame, ETHERNET_HEADER_LENGTH + headers, this.scratch6.offset + off, this.scratch6.offset + off + size);
      ip.payloadLength = IPV6_FRAGMENT_HEADER_LENGTH + size;
      ip.emit(frame, ETHERNET_HEADER_LENGTH);
      emitIpv6Fragment(frame, ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH, protocol, off, off + size < length, id);
      this.writeFrame(frame.subarray(0, ETHERNET_HEADER_LENGTH + headers + size));
    }
  }

  /** The IPv4 header of the next packet (or of all fragments of the next datagram), with its own ID. */
  private ipv4Packet(src: Uint8Array, dst: Uint8Array, protocol: number, ttl: number): Ipv4Repr {
    const ip = this.ip4;
    ip.src = src;
    ip.dst = dst;
    ip.protocol = protocol;
    ip.ttl = ttl;
    ip.id = this.nextIpId;
    this.nextIpId = (this.nextIpId + 1) & 0xffff;
    return ip;
  }

  private ipv6Packet(src: Uint8Array, dst: Uint8Array, nextHeader: number, hopLimit: number): Ipv6Repr {
    const ip = this.ip6;
    ip.src = src;
    ip.dst = dst;
    ip.nextHeader = nextHeader;
    ip.hopLimit = hopLimit;
    return ip;
  }

  /** The Ethernet header towards `dst`: the sandbox's MAC, or the RFC 2464 group MAC for IPv6 multicast. */
  private emitEthernetTo(buf: Buffer, dst: Uint8Array, etherType: number): void {
    if (etherType === EtherType.IPv6 && isIpv6Multicast(dst, 0)) {
      buf[0] = 0x33;
      buf[1] = 0x33;
      for (let i = 0; i < 4; i++) buf[2 + i] = dst[12 + i]!;
      buf.set(this.mac, 6);
      buf.writeUInt16BE(etherType, 12);
    } else {
      emitEthernet(buf, 0, this.sandboxMac, this.mac, etherType);
    }
  }

  deliver(family: Family, protocol: number, packet: Buffer, payloadOffset: number, reassembled: boolean): void {
    const net = family === 4 ? this.net4 : this.net6;
    const addrLength = family === 4 ? 4 : 16;
    const srcOffset = family === 4 ? 12 : 8;
    packet.copy(net.src, 0, srcOffset, srcOffset + addrLength);
    packet.copy(net.dst, 0, srcOffset + addrLength, srcOffset + 2 * addrLength);
    net.packet = packet;
    // Every on-link source the sandbox uses is one of its addresses: ARP / NDP never answer for it.
    this.neighbors.learn(family, net.src, 0);
    // The sandbox's kernel never leaves the checksum of a fragmented datagram to us.
    net.checksumTrusted = !reassembled && this.offload !== undefined && this.offload.checksumPartial;
    if (family === 4 && protocol === ICMPV4_PROTOCOL) return this.icmp.handleV4(net, payloadOffset);
    if (family === 6 && protocol === ICMPV6_PROTOCOL) return this.icmp.handleV6(net, payloadOffset);
    // A flow has one peer: multicast and broadcast destinations never become one.
    if (family === 4 ? isIpv4GroupAddress(packet.readUInt32BE(16)) : isIpv6Multicast(net.dst, 0)) return this.counters.drop('group-destination');
    const transport = this.transports[protocol];
    if (!transport) return this.counters.drop('unknown-protocol');
    transport.handlePacket(net, packet.subarray(payloadOffset));
  }

  private learnSandboxMac(frame: Buffer, off: number): void {
    if ((frame[off]! & 1) === 1 || macEquals(frame, off, this.sandboxMac)) return;
    frame.copy(this.sandboxMac, 0, off, off + 6);
  }

  writeFrame(frame: Uint8Array): void {
    this.counters.framesOut++;
    this.link.writeFrame(frame);
  }
}

function bytesEqual(buf: Uint8Array, off: number, addr: Uint8Array): boolean {
  for (let i = 0; i < addr.length; i++) if (buf[off + i] !== addr[i]) return false;
  return true;
}

/** fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A). */
function linkLocalFromMac(mac: Uint8Array): Uint8Array {
  const addr = new Uint8Array(16);
  addr[0] = 0xfe;
  addr[1] = 0x80;
  addr[8] = mac[0]! ^ 0x02;
  addr[9] = mac[1]!;
  addr[10] = mac[2]!;
  addr[11] = 0xff;
  addr[12] = 0xfe;
  addr[13] = mac[3]!;
  addr[14] = mac[4]!;
  addr[15] = mac[5]!;
  return addr;
}
