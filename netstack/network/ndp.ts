// Neighbour discovery (RFC 4861), the part the stack needs: answer neighbour solicitations for the
// gateway, DNS and gateway link-local addresses with a solicited, overriding advertisement that
// carries our MAC; and for the other addresses of the sandbox's on-link prefixes (neighbors.ts) with a
// solicited advertisement that neither claims a router nor overrides (RFC 4861 7.2.8, as a proxy does),
// so that a connect to fd00::50 reaches the Forwarder at once. Duplicate address detection probes
// (from ::) are answered for our own addresses only: for any other address they mean the sandbox is
// about to take it. Router advertisements are not sent: the launcher configures a static route.
import { emitNeighborAdvert, findLinkLayerOption, finishIcmpv6, ICMPV6_PROTOCOL, NDP_NEIGHBOR_LENGTH, NdpOption, NeighborAdvertFlag } from '../header/icmpv6.js';
import { isIpv6Multicast, isIpv6Unspecified, parseIpv6 } from '../header/ipv6.js';
import type { NetworkInfo } from '../tcpip.js';
import type { NetworkHost } from './host.js';
import type { OnLinkNeighbors } from './neighbors.js';

/** NDP messages must arrive with hop limit 255: proof that they were not routed (RFC 4861 7.1.1). */
const NDP_HOP_LIMIT = 255;
const ALL_NODES = parseIpv6('ff02::1');

export class NeighborDiscovery {
  private readonly target = new Uint8Array(16);

  constructor(
    private readonly host: NetworkHost,
    private readonly mac: Uint8Array,
    private readonly neighbors: OnLinkNeighbors,
  ) {}

  /** A neighbour solicitation at `off` (its ICMPv6 header) in `net.packet`, checksum already checked. */
  handleSolicitation(net: NetworkInfo, off: number, len: number): void {
    const packet = net.packet;
    if (packet[7] !== NDP_HOP_LIMIT || packet[off + 1] !== 0 || len < NDP_NEIGHBOR_LENGTH) return this.host.drop('ndp-invalid');
    if (isIpv6Multicast(packet, off + 8)) return this.host.drop('ndp-invalid');
    const sourceLinkLayer = findLinkLayerOption(packet, off + NDP_NEIGHBOR_LENGTH, off + len, NdpOption.SourceLinkLayer);
    if (typeof sourceLinkLayer === 'string') return this.host.drop(sourceLinkLayer);
    const fromUnspecified = isIpv6Unspecified(net.src, 0);
    // Duplicate address detection probes come from :: to a solicited-node group, without a source option.
    if (fromUnspecified && (sourceLinkLayer >= 0 || !isIpv6Multicast(net.dst, 0))) return this.host.drop('ndp-invalid');
    let flags: number;
    if (this.host.isOwnAddress(6, packet, off + 8)) {
      flags = NeighborAdvertFlag.Router | NeighborAdvertFlag.Override | (fromUnspecified ? 0 : NeighborAdvertFlag.Solicited);
    } else if (fromUnspecified) {
      // The sandbox is about to take this address: never answered, and never answered for from now on.
      this.neighbors.learn(6, packet, off + 8);
      return this.host.drop('ndp-target-not-ours');
    } else if (this.neighbors.answers(6, packet, off + 8)) {
      flags = NeighborAdvertFlag.Solicited;
    } else {
      return this.host.drop('ndp-target-not-ours');
    }

    packet.copy(this.target, 0, off + 8, off + 24);
    const { buf, offset } = this.host.scratch(6);
    const length = emitNeighborAdvert(buf, offset, flags, this.target, this.mac);
    const dst = fromUnspecified ? ALL_NODES : net.src;
    finishIcmpv6(buf, offset, length, this.target, dst);
    this.host.send(6, this.target, dst, ICMPV6_PROTOCOL, length, NDP_HOP_LIMIT);
  }
}
