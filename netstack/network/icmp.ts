// ICMP and ICMPv6 for the stack: echo replies from our own addresses, errors out to the sandbox
// (destination unreachable, packet too big), and errors in (dispatched to the transport that owns
// the quoted flow). Neighbour discovery messages are handed to ndp.ts.
import {
  emitIcmpv4Header,
  finishIcmpv4,
  ICMP_HEADER_LENGTH,
  Icmpv4Type,
  Icmpv4UnreachableCode,
  Icmpv4View,
  isIcmpv4Error,
  validateIcmpv4,
} from '../header/icmpv4.js';
import {
  emitIcmpv6Header,
  finishIcmpv6,
  ICMPV6_HEADER_LENGTH,
  ICMPV6_PROTOCOL,
  Icmpv6Type,
  Icmpv6UnreachableCode,
  Icmpv6View,
  isIcmpv6Error,
  validateIcmpv6,
} from '../header/icmpv6.js';
import { IPV4_MIN_HEADER_LENGTH, isIpv4GroupAddress } from '../header/ipv4.js';
import { IPV6_HEADER_LENGTH, IPV6_MIN_MTU, Ipv6Walk, isIpv6Multicast, isIpv6Unspecified, walkIpv6Extensions } from '../header/ipv6.js';
import type { Family, NetworkInfo, UnreachableReason } from '../tcpip.js';
import type { NetworkHost } from './host.js';
import type { NeighborDiscovery } from './ndp.js';

export const ICMPV4_PROTOCOL = 1;

/** An ICMPv4 error may quote up to 576 bytes in all (RFC 1812 4.3.2.3); ICMPv6 up to 1280 (RFC 4443). */
const ICMPV4_ERROR_MAX = 576;

const V4_CODES: Record<UnreachableReason, number> = {
  port: Icmpv4UnreachableCode.Port,
  host: Icmpv4UnreachableCode.Host,
  net: Icmpv4UnreachableCode.Net,
  'admin-prohibited': Icmpv4UnreachableCode.AdminProhibited,
};
const V6_CODES: Record<UnreachableReason, number> = {
  port: Icmpv6UnreachableCode.PortUnreachable,
  host: Icmpv6UnreachableCode.AddressUnreachable,
  net: Icmpv6UnreachableCode.NoRoute,
  'admin-prohibited': Icmpv6UnreachableCode.AdminProhibited,
};

export class Icmp {
  private readonly v4 = new Icmpv4View();
  private readonly v6 = new Icmpv6View();
  private readonly walk = new Ipv6Walk();
  /** The network facts of a quoted packet, for handleControl: reused, like the stack's NetworkInfo. */
  private readonly control4: NetworkInfo = { family: 4, src: new Uint8Array(4), dst: new Uint8Array(4), packet: Buffer.alloc(0), checksumTrusted: false };
  private readonly control6: NetworkInfo = { family: 6, src: new Uint8Array(16), dst: new Uint8Array(16), packet: Buffer.alloc(0), checksumTrusted: false };

  constructor(
    private readonly host: NetworkHost,
    private readonly ndp: NeighborDiscovery,
  ) {}

  /** An inbound ICMPv4 message at `off` in `net.packet`. */
  handleV4(net: NetworkInfo, off: number): void {
    const packet = net.packet;
    const len = packet.length - off;
    const reason = validateIcmpv4(packet, off, len);
    if (reason) return this.host.drop(reason);
    const icmp = this.v4.of(packet, off);
    switch (icmp.type) {
      case Icmpv4Type.Echo:
        if (!this.host.isOwnAddress(4, net.dst, 0)) return this.echoNotOurs(4, net, 'icmp-echo-not-ours');
        return this.echoReply(4, net, off, len, Icmpv4Type.EchoReply);
      case Icmpv4Type.DestinationUnreachable: {
        const tooBig = icmp.code === Icmpv4UnreachableCode.FragmentationNeeded;
        return this.controlV4(packet, off + ICMP_HEADER_LENGTH, tooBig ? 'packet-too-big' : 'unreachable', tooBig ? icmp.nextHopMtu : 0);
      }
      default:
        return this.host.drop('icmp-ignored');
    }
  }

  /** An inbound ICMPv6 message at `off` in `net.packet`. */
  handleV6(net: NetworkInfo, off: number): void {
    const packet = net.packet;
    const len = packet.length - off;
    const reason = validateIcmpv6(packet, off, len, net.src, net.dst);
    if (reason) return this.host.drop(reason);
    const icmp = this.v6.of(packet, off);
    switch (icmp.type) {
      case Icmpv6Type.EchoRequest:
        if (!this.host.isOwnAddress(6, net.dst, 0)) return this.echoNotOurs(6, net, 'icmpv6-echo-not-ours');
        return this.echoReply(6, net, off, len, Icmpv6Type.EchoReply);
      case Icmpv6Type.NeighborSolicitation:
        return this.ndp.handleSolicitation(net, off, len);
      case Icmpv6Type.DestinationUnreachable:
        return this.controlV6(packet, off + ICMPV6_HEADER_LENGTH, 'unreachable', 0);
      case Icmpv6Type.PacketTooBig:
        return this.controlV6(packet, off + ICMPV6_HEADER_LENGTH, 'packet-too-big', icmp.mtu);
      default:
        return this.host.drop('icmpv6-ignored');
    }
  }

  /**
   * An echo request to an address that is not ours: dropped, except that one of the on-link hosts ARP /
   * NDP answered for gets "host unreachable" at once, what the sandbox's kernel would have said had its
   * neighbour resolution failed.
   */
  private echoNotOurs(family: Family, net: NetworkInfo, reason: string): void {
    this.host.drop(reason);
    if (this.host.isOnLinkNeighbor(family, net.dst, 0)) this.sendUnreachable(net.packet, family, 'host');
  }

  /** Sends a destination-unreachable about `packet` (an inbound IP packet) to its source. */
  sendUnreachable(packet: Buffer, family: Family, how: UnreachableReason): void {
    if (family === 4) this.sendErrorV4(packet, Icmpv4Type.DestinationUnreachable, V4_CODES[how], 0);
    else this.sendErrorV6(packet, Icmpv6Type.DestinationUnreachable, V6_CODES[how], 0);
  }

  /** Tells the sandbox that `packet` was too big for a path of `mtu` bytes. */
  sendPacketTooBig(packet: Buffer, family: Family, mtu: number): void {
    if (family === 4) this.sendErrorV4(packet, Icmpv4Type.DestinationUnreachable, Icmpv4UnreachableCode.FragmentationNeeded, mtu & 0xffff);
    else this.sendErrorV6(packet, Icmpv6Type.PacketTooBig, 0, Math.max(mtu, IPV6_MIN_MTU));
  }

  private echoReply(family: Family, net: NetworkInfo, off: number, len: number, replyType: number): void {
    if (len > this.host.maxDatagramLength(family)) return this.host.drop('icmp-echo-too-big');
    const { buf, offset } = this.host.scratch(family);
    net.packet.copy(buf, offset, off, off + len);
    buf[offset] = replyType;
    buf[offset + 1] = 0;
    if (family === 4) finishIcmpv4(buf, offset, len);
    else finishIcmpv6(buf, offset, len, net.dst, net.src);
    this.host.send(family, net.dst, net.src, family === 4 ? ICMPV4_PROTOCOL : ICMPV6_PROTOCOL, len);
  }

  /** Passes the transport header quoted at `off` (after an IPv4 header) to its protocol's handleControl. */
  private controlV4(packet: Buffer, off: number, kind: 'unreachable' | 'packet-too-big', mtu: number): void {
    if (off + IPV4_MIN_HEADER_LENGTH > packet.length || packet[off]! >>> 4 !== 4) return this.host.drop('icmp-bad-quote');
    const ihl = (packet[off]! & 0x0f) * 4;
    if (ihl < IPV4_MIN_HEADER_LENGTH || off + ihl + 8 > packet.length) return this.host.drop('icmp-bad-quote');
    const transport = this.host.transport(packet[off + 9]!);
    if (!transport?.handleControl) return this.host.drop('icmp-error-no-transport');
    const net = this.control4;
    packet.copy(net.src, 0, off + 12, off + 16);
    packet.copy(net.dst, 0, off + 16, off + 20);
    net.packet = packet;
    transport.handleControl(net, kind, mtu, packet.subarray(off + ihl));
  }

  /** Passes the transport header quoted at `off` (after an IPv6 header and its extensions) to handleControl. */
  private controlV6(packet: Buffer, off: number, kind: 'unreachable' | 'packet-too-big', mtu: number): void {
    if (off + IPV6_HEADER_LENGTH > packet.length || packet[off]! >>> 4 !== 6) return this.host.drop('icmpv6-bad-quote');
    const quoted = packet.subarray(off);
    const walk = walkIpv6Extensions(quoted, 0, quoted.length, this.walk);
    if (walk.reason || walk.fragmentHeaderOffset >= 0 || walk.payloadOffset + 8 > quoted.length) return this.host.drop('icmpv6-bad-quote');
    const transport = this.host.transport(walk.protocol);
    if (!transport?.handleControl) return this.host.drop('icmpv6-error-no-transport');
    const net = this.control6;
    quoted.copy(net.src, 0, 8, 24);
    quoted.copy(net.dst, 0, 24, 40);
    net.packet = packet;
    transport.handleControl(net, kind, mtu, quoted.subarray(walk.payloadOffset));
  }

  private sendErrorV4(packet: Buffer, type: number, code: number, rest: number): void {
    if (packet.length < IPV4_MIN_HEADER_LENGTH) return;
    const ihl = (packet[0]! & 0x0f) * 4;
    // Never about an ICMP error, a later fragment, or a packet from/to a group address (RFC 1122 3.2.2).
    if (packet[9] === ICMPV4_PROTOCOL && packet.length > ihl && isIcmpv4Error(packet[ihl]!)) return;
    if ((packet.readUInt16BE(6) & 0x1fff) !== 0) return;
    const src = packet.readUInt32BE(12);
    if (src === 0 || isIpv4GroupAddress(src) || isIpv4GroupAddress(packet.readUInt32BE(16))) return;

    const quote = Math.min(packet.length, ICMPV4_ERROR_MAX - IPV4_MIN_HEADER_LENGTH - ICMP_HEADER_LENGTH, this.host.maxTransportLength(4) - ICMP_HEADER_LENGTH);
    const { buf, offset } = this.host.scratch(4);
    emitIcmpv4Header(buf, offset, type, code, rest);
    packet.copy(buf, offset + ICMP_HEADER_LENGTH, 0, quote);
    finishIcmpv4(buf, offset, ICMP_HEADER_LENGTH + quote);
    // The error comes from the address the packet was sent to, as if that host answered.
    this.host.send(4, packet.subarray(16, 20), packet.subarray(12, 16), ICMPV4_PROTOCOL, ICMP_HEADER_LENGTH + quote);
  }

  private sendErrorV6(packet: Buffer, type: number, code: number, rest: number): void {
    if (packet.length < IPV6_HEADER_LENGTH) return;
    if (isIpv6Unspecified(packet, 8) || isIpv6Multicast(packet, 8) || isIpv6Multicast(packet, 24)) return;
    const walk = walkIpv6Extensions(packet, 0, packet.length, this.walk);
    if (walk.fragmentHeaderOffset >= 0 && walk.fragmentOffset !== 0) return;
    if (!walk.reason && walk.protocol === ICMPV6_PROTOCOL && walk.payloadOffset < packet.length && isIcmpv6Error(packet[walk.payloadOffset]!)) return;

    const quote = Math.min(packet.length, IPV6_MIN_MTU - IPV6_HEADER_LENGTH - ICMPV6_HEADER_LENGTH, this.host.maxTransportLength(6) - ICMPV6_HEADER_LENGTH);
    const { buf, offset } = this.host.scratch(6);
    emitIcmpv6Header(buf, offset, type, code, rest);
    packet.copy(buf, offset + ICMPV6_HEADER_LENGTH, 0, quote);
    const src = packet.subarray(24, 40);
    const dst = packet.subarray(8, 24);
    finishIcmpv6(buf, offset, ICMPV6_HEADER_LENGTH + quote, src, dst);
    this.host.send(6, src, dst, ICMPV6_PROTOCOL, ICMPV6_HEADER_LENGTH + quote);
  }
}
