// IPv6 input: header validation, the extension header walk, fragment reassembly, then delivery.
import { Ipv6View, Ipv6Walk, IPV6_HEADER_LENGTH, isIpv6Multicast, validateIpv6, walkIpv6Extensions } from '../header/ipv6.js';
import type { Clock } from '../tcpip.js';
import { Reassembler, type ReassemblyLimits } from './fragments.js';
import type { NetworkHost } from './host.js';

export const IPV6_REASSEMBLY_DEFAULTS: ReassemblyLimits = {
  maxBytes: 4 * 1024 * 1024,
  maxDatagramBytes: 65535,
  maxFragments: 64,
  timeoutMs: 60_000, // RFC 8200 section 4.5
};

export class Ipv6Input {
  readonly reassembler: Reassembler;
  private readonly ip = new Ipv6View();
  private readonly walk = new Ipv6Walk();

  constructor(
    clock: Clock,
    limits: ReassemblyLimits,
    private readonly host: NetworkHost,
  ) {
    this.reassembler = new Reassembler(clock, limits, (reason) => host.drop(reason));
  }

  /** Handles the IPv6 packet that starts at `off` in `frame` and runs to the end of the frame. */
  handle(frame: Buffer, off: number): void {
    const reason = validateIpv6(frame, off, frame.length - off);
    if (reason) return this.host.drop(reason);
    const ip = this.ip.of(frame, off);
    if (isIpv6Multicast(frame, ip.srcOffset)) return this.host.drop('ipv6-bad-source');
    const packet = frame.subarray(off, off + ip.totalLength);
    const walk = walkIpv6Extensions(packet, 0, packet.length, this.walk);
    if (walk.reason) return this.host.drop(walk.reason);
    if (walk.fragmentHeaderOffset < 0) return this.host.deliver(6, walk.protocol, packet, walk.payloadOffset, false);

    // RFC 8200: fragments of one datagram share source, destination and identification.
    const key = `${packet.toString('hex', 8, 40)}/${walk.fragmentId}`;
    const data = packet.subarray(walk.payloadOffset);
    const done = this.reassembler.add(key, walk.fragmentOffset, walk.moreFragments, data, packet.subarray(0, walk.payloadOffset));
    if (!done) return;
    if (done.packet.length - IPV6_HEADER_LENGTH > 65535) return this.host.drop('ipv6-reassembled-too-big');
    // Keep the fragment header but make it atomic (offset 0, no M flag): the walk then steps over it
    // to the upper-layer header, and an ICMP error can quote the datagram as it was sent.
    done.packet.writeUInt16BE(done.packet.length - IPV6_HEADER_LENGTH, 4);
    done.packet.writeUInt16BE(0, done.headerLength - 6);
    const whole = walkIpv6Extensions(done.packet, 0, done.packet.length, this.walk);
    if (whole.reason) return this.host.drop(whole.reason);
    this.host.deliver(6, whole.protocol, done.packet, whole.payloadOffset, true);
  }
}
