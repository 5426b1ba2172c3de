// The contract between the network layer (IPv4/IPv6) and the transport protocols (TCP, UDP, ICMP).
import type { Family } from './forwarding.js';

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
 * How a transport sends. The transport asks for the stack's scratch frame, writes its header and data
 * at `offset` (checksum included: `pseudoHeaderChecksum` in header/checksum.ts), then calls `send`,
 * which fills the IP and Ethernet headers in place and writes the frame to the link synchronously, so
 * the scratch frame is free again when `send` returns. Nothing is allocated per packet.
 */
export interface NetworkSender {
  /** Largest transport payload (segment incl. header) that fits one IP packet for this family. */
  maxTransportLength(family: Family): number;
  scratch(family: Family): { buf: Buffer; offset: number };
  /** Sends `length` bytes at the scratch offset from `src` to `dst` (4 or 16 bytes each). */
  send(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number): void;
  /** Sends an ICMP(v6) destination-unreachable quoting `packet` (an inbound IP packet). */
  sendUnreachable(packet: Buffer, family: Family, how: 'port' | 'host' | 'net' | 'admin-prohibited'): void;
}

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
