// What the IPv4 and IPv6 input paths hand their packets to (the stack).
import type { Family } from '../stack/forwarding.js';

export interface IpDelivery {
  /**
   * One whole IP packet (reassembled if it came in fragments, trimmed of link padding), whose
   * `protocol` header starts at `payloadOffset`. `packet` is valid only during the call. `reassembled`:
   * it came in fragments, so what the link said of the last frame does not describe it.
   */
  deliver(family: Family, protocol: number, packet: Buffer, payloadOffset: number, reassembled: boolean): void;
  drop(reason: string): void;
}
