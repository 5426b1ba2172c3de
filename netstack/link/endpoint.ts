// The link layer contract, after gVisor's stack.LinkEndpoint / stack.NetworkDispatcher.
//
// A link endpoint moves whole Ethernet frames. Inbound frames are handed to the attached dispatcher
// one by one as views that are valid only during the call (the TAP endpoint reuses its read ring);
// after each batch the endpoint calls `flushed()` so the stack can send what the batch produced in one
// go. Outbound frames are written synchronously: when `writeFrame` returns, the caller may reuse the
// buffer.

export interface NetworkDispatcher {
  /** One inbound Ethernet frame. `frame` is only valid until this call returns. */
  deliverFrame(frame: Buffer): void;
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
