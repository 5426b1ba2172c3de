// The types every layer of netstack shares, like gVisor's tcpip package: addresses and flows, the
// clock, the contract between the network layer and the transports, and the names of resource caps.
//
// Layers import downward only (test/unit/netstack-imports.test.ts checks it, and that there is no
// import cycle):
//   tcpip.ts, forwarding.ts   this root: types shared by all (imports nothing of netstack)
//   header/                   wire formats: views, parsed representations, emit, checksums
//   link/                     moving Ethernet frames (TAP, in-memory channel, fault injection, pcap)
//   network/                  ARP, NDP, IPv4/IPv6 input, reassembly, ICMP (calls the stack back
//                             through NetworkHost, an interface it defines)
//   transport/                TCP and UDP
//   stack/                    the Stack that composes all of them
//   index.ts                  the public surface for src/
//   defaults.ts               the part of it the options need on every run: the defaults alone

export type Family = 4 | 6;

/** A flow as the sandbox sees it. Addresses are in textual form ("10.0.2.100", "fd00::100"). */
export interface FlowId {
  family: Family;
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

/** How to refuse a flow: a TCP RST, or an ICMP/ICMPv6 destination-unreachable with this meaning. */
export type Refusal = 'reset' | 'port-unreachable' | 'host-unreachable' | 'net-unreachable' | 'admin-prohibited';

/** The destination-unreachable codes the stack sends, in either family. */
export type UnreachableReason = 'port' | 'host' | 'net' | 'admin-prohibited';

/** A clock the stack and every timer use; tests drive a manual one (gVisor's faketime). */
export interface Clock {
  now(): number; // milliseconds, monotonic
  setTimeout(fn: () => void, ms: number): TimerHandle;
}
export interface TimerHandle {
  cancel(): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** The network-layer facts of one inbound transport packet. Views are valid only during the call. */
export interface NetworkInfo {
  family: Family;
  /** Source and destination addresses: 4 or 16 bytes. */
  src: Uint8Array;
  dst: Uint8Array;
  /** The whole IP packet (header included), for ICMP errors that quote it. */
  packet: Buffer;
  /**
   * The link vouches for the transport checksum: the sending kernel left it to us (a virtio-net
   * "partial" checksum: the field holds only the pseudo-header sum), so the transport must not verify
   * it. False for every other packet, which the transport verifies.
   */
  checksumTrusted: boolean;
}

export interface TransportProtocol {
  /** IANA protocol number: 6 TCP, 17 UDP. */
  readonly protocol: number;
  /**
   * One inbound segment/datagram: `payload` is the transport header and data, after IP reassembly.
   * The transport checks its own checksum (pseudo-header included) unless `net.checksumTrusted`.
   * Views are valid only during the call.
   */
  handlePacket(net: NetworkInfo, payload: Buffer): void;
  /** An ICMP error from the sandbox about a flow of this protocol (the quoted transport header). */
  handleControl?(net: NetworkInfo, kind: 'unreachable' | 'packet-too-big', mtu: number, quoted: Buffer): void;
}

/**
 * How a transport (and ICMP) sends. The sender asks for the stack's scratch frame, writes its header
 * and data at `offset` (checksum included: `pseudoHeaderChecksum` in header/checksum.ts), then calls
 * `send`, which fills the IP and Ethernet headers in place and writes the frame to the link
 * synchronously, so the scratch frame is free again when `send` returns. Nothing is allocated per packet.
 */
export interface NetworkSender {
  /** Largest transport payload (segment incl. header) that fits one IP packet for this family. */
  maxTransportLength(family: Family): number;
  /** Largest transport payload `send` takes: past `maxTransportLength` it goes out as IP fragments. */
  maxDatagramLength(family: Family): number;
  scratch(family: Family): { buf: Buffer; offset: number };
  /** Sends `length` bytes at the scratch offset from `src` to `dst` (4 or 16 bytes each), TTL 64 unless told. */
  send(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number, hopLimit?: number): void;
  /** Largest TCP segment (header included) `sendTcpSuperSegment` takes; 0 where the link takes none. */
  maxTcpSuperSegmentLength(family: Family): number;
  /**
   * Sends the TCP segment of `length` bytes at the scratch offset in one frame, which may be larger than
   * the MTU: the link's peer takes it as segments of `segmentSize` payload bytes (LinkEndpoint
   * .tcpSegmentation), or with `segmentSize` 0 as the one segment it is. Its checksum field holds only
   * the pseudo-header sum: the peer's kernel takes it as verified either way.
   */
  sendTcpSuperSegment(family: Family, src: Uint8Array, dst: Uint8Array, length: number, segmentSize: number): void;
  /** Sends an ICMP(v6) destination-unreachable quoting `packet` (an inbound IP packet). */
  sendUnreachable(packet: Buffer, family: Family, how: UnreachableReason): void;
}

// Resource caps of the stack, named the way the audit log reports them. A cap that is hit degrades the
// newest work (RST, ICMP, drop) and calls the LimitHook so the supervisor can log it; the hook may be
// called once per packet, so whoever implements it rate-limits what it logs.
export type LimitName =
  /** TCP connection requests waiting for the forwarder, in total or per destination. */
  | 'tcp-pending'
  /** Bytes held in every TCP send and receive buffer together. */
  | 'tcp-buffers'
  /** Out-of-order bytes held by one connection, or by all of them. */
  | 'tcp-out-of-order'
  | 'udp-sessions'
  /** Memory of incomplete IP datagrams. */
  | 'reassembly';

/** `value` is the configured cap; `detail` says which part of it and what was done. */
export type LimitHook = (limit: LimitName, value: number, detail: string) => void;
