// The link layer contract, after gVisor's stack.LinkEndpoint / stack.NetworkDispatcher.
//
// A link endpoint moves whole Ethernet frames. Inbound frames are handed to the attached dispatcher
// one by one as views that are valid only during the call (the TAP endpoint reuses its read ring);
// after each batch the endpoint calls `batchDone()` (the Stack has nothing to do there: it writes every
// frame as it is produced). Outbound frames are written synchronously: when `writeFrame` returns, the
// caller may reuse the buffer.
//
// A link whose peer offloads work to us (the TAP with a virtio-net header) says so per frame with
// `offload`; a link that passes nothing (the in-memory channel, a wrapper that may alter frames)
// gets every checksum verified and every packet held to the MTU.

/** What the sending kernel left to us for one inbound frame (virtio-net header facts). */
export interface FrameOffload {
  /** The TCP/UDP checksum field holds only the pseudo-header sum: don't verify it. */
  readonly checksumPartial: boolean;
  /** > 0: a TCP super-segment (GSO) of segments this big, whose IP packet may exceed the MTU. */
  readonly gsoSize: number;
}

export interface NetworkDispatcher {
  /**
   * One inbound Ethernet frame. `frame` and `offload` are only valid until this call returns; no
   * `offload` means nothing was offloaded.
   */
  deliverFrame(frame: Buffer, offload?: FrameOffload): void;
  /** The end of an inbound batch. */
  batchDone(): void;
}

export interface LinkEndpoint {
  /** Largest IP packet (Ethernet payload) the link carries. */
  readonly mtu: number;
  /**
   * Present on a link that can relay admitted UDP flows itself (the TAP). A wrapper that must see
   * every frame (pcap, link faults) leaves it out, and its flows stay on the stack's path.
   */
  readonly udpRelay?: UdpRelayLink;
  attach(dispatcher: NetworkDispatcher): void;
  /** Writes one Ethernet frame (header included). Copies or sends it before returning. */
  writeFrame(frame: Uint8Array): void;
  /**
   * Present on a link whose peer takes TCP super-segments (the TAP with a virtio-net header). A wrapper
   * that must see frames as they would be on a wire (pcap, link faults) leaves it out.
   */
  readonly tcpSegmentation?: TcpSegmentationLink;
  close(): void;
}

/**
 * Writes TCP packets larger than the MTU that the peer's kernel takes whole, as it takes what its own
 * GRO merged: one frame and one pass through its stack for up to 64 KiB, where MTU-sized segments
 * cost one each.
 */
export interface TcpSegmentationLink {
  /**
   * Writes one frame holding a TCP segment of more than `segmentSize` payload bytes, which stands for
   * segments of `segmentSize` (0: a single segment, no larger than the MTU allows); its checksum field
   * holds only the pseudo-header sum (the peer's kernel takes it as verified, and computes nothing).
   * `tcpOffset`: where the TCP header starts in the frame.
   */
  writeSuperSegment(frame: Uint8Array, family: 4 | 6, segmentSize: number, tcpOffset: number): void;
}

/**
 * The native UDP relay of a link (native/addon/udp_relay.h): frames of an added flow's exact tuple go
 * straight to its host socket and its socket's datagrams straight back as frames, without the stack.
 */
export interface UdpRelayLink {
  /** Starts the relay (once): frames go from `ourMac` to `sandboxMac`, which the stack updates in place. */
  enable(ourMac: Uint8Array, sandboxMac: Uint8Array, mtu: number): void;
  /** Relays `flow` until remove(); throws the errno error of a socket that can't open or connect. */
  add(flow: UdpRelaySpec, events: UdpRelayEvents): RelayedUdpFlow;
}

export interface UdpRelaySpec {
  family: 4 | 6;
  /** The sandbox's address and port, and where it sends to (4 or 16 bytes each). */
  sandboxAddr: Uint8Array;
  sandboxPort: number;
  remoteAddr: Uint8Array;
  remotePort: number;
  /** Where the host socket connects (the remote address, or host loopback). */
  hostAddr: Uint8Array;
  hostPort: number;
}

export interface UdpRelayEvents {
  /** The host answered port unreachable; `quote`: the last IP packet relayed from the sandbox (may be empty). */
  refused(quote: Buffer): void;
  /** A host datagram too big for one frame, for the stack to send as fragments. */
  oversize(payload: Buffer): void;
}

export interface UdpRelayFigures {
  bytesUp: number;
  bytesDown: number;
  datagramsUp: number;
  datagramsDown: number;
  /** Milliseconds since the last datagram either way. */
  idleMs: number;
}

export interface RelayedUdpFlow {
  /** Sends a datagram the stack received on the flow's tuple (a reassembled one, say) on its socket. */
  send(payload: Uint8Array): void;
  /** The figures so far; the last ones after remove(). */
  figures(): UdpRelayFigures;
  /** Ends the flow and closes its socket; its last figures. */
  remove(): UdpRelayFigures;
}
