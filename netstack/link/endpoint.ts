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
  attach(dispatcher: NetworkDispatcher): void;
  /** Writes one Ethernet frame (header included). Copies or sends it before returning. */
  writeFrame(frame: Uint8Array): void;
  close(): void;
}
