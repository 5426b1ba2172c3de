// What the network layer (ARP, NDP, IPv4/IPv6 input, ICMP) needs from the stack that owns it. The
// Stack implements it; the network layer never imports the stack (tcpip.ts gives the layering).
import type { Family, NetworkSender, TransportProtocol } from '../tcpip.js';

export interface NetworkHost extends NetworkSender {
  /**
   * One whole IP packet (reassembled if it came in fragments, trimmed of link padding), whose
   * `protocol` header starts at `payloadOffset`. `packet` is valid only during the call. `reassembled`:
   * it came in fragments, so what the link said of the last frame does not describe it.
   */
  deliver(family: Family, protocol: number, packet: Buffer, payloadOffset: number, reassembled: boolean): void;
  /** Counts a dropped packet by reason (and tells the supervisor when the reason is a cap). */
  drop(reason: string): void;
  /** Whether the 4- or 16-byte address at `off` in `buf` is one the stack answers for. */
  isOwnAddress(family: Family, buf: Uint8Array, off: number): boolean;
  /** Whether the address is another host of the sandbox's on-link prefix that ARP / NDP answer for. */
  isOnLinkNeighbor(family: Family, buf: Uint8Array, off: number): boolean;
  /** The transport registered for an IP protocol number, for ICMP errors about its flows. */
  transport(protocol: number): TransportProtocol | undefined;
  /** Writes a whole Ethernet frame (ARP replies). */
  writeFrame(frame: Uint8Array): void;
}
