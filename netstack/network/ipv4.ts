// IPv4 input: header validation, then fragment reassembly, then delivery to the stack.
import { Ipv4View, IPV4_MAX_PACKET_LENGTH, IPV4_MIN_HEADER_LENGTH, isIpv4GroupAddress, refreshIpv4Checksum, validateIpv4 } from '../header/ipv4.js';
import type { Clock } from '../tcpip.js';
import { Reassembler, type ReassemblyLimits } from './fragments.js';
import type { NetworkHost } from './host.js';

export const IPV4_REASSEMBLY_DEFAULTS: ReassemblyLimits = {
  maxBytes: 4 * 1024 * 1024,
  maxDatagramBytes: IPV4_MAX_PACKET_LENGTH - IPV4_MIN_HEADER_LENGTH,
  maxFragments: 64,
  timeoutMs: 30_000,
};

export class Ipv4Input {
  readonly reassembler: Reassembler;
  private readonly ip = new Ipv4View();

  constructor(
    clock: Clock,
    limits: ReassemblyLimits,
    private readonly host: NetworkHost,
  ) {
    this.reassembler = new Reassembler(clock, limits, (reason) => host.drop(reason));
  }

  /** Handles the IPv4 packet that starts at `off` in `frame` and runs to the end of the frame. */
  handle(frame: Buffer, off: number): void {
    const reason = validateIpv4(frame, off, frame.length - off);
    if (reason) return this.host.drop(reason);
    const ip = this.ip.of(frame, off);
    if (isIpv4GroupAddress(ip.src)) return this.host.drop('ipv4-bad-source');
    const packet = frame.subarray(off, off + ip.totalLength);
    const headerLength = ip.headerLength;
    if (!ip.isFragment) return this.host.deliver(4, ip.protocol, packet, headerLength, false);

    const key = `${ip.src}/${ip.dst}/${ip.protocol}/${ip.id}`;
    const done = this.reassembler.add(key, ip.fragmentOffset, ip.moreFragments, packet.subarray(headerLength), packet.subarray(0, headerLength));
    if (!done) return;
    if (done.packet.length > IPV4_MAX_PACKET_LENGTH) return this.host.drop('ipv4-reassembled-too-big');
    // The first fragment's header now describes the whole datagram: fix its length and fragment fields.
    done.packet.writeUInt16BE(done.packet.length, 2);
    done.packet.writeUInt16BE(0, 6);
    refreshIpv4Checksum(done.packet, 0);
    this.host.deliver(4, done.packet[9]!, done.packet, done.headerLength, true);
  }
}
