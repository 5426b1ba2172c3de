// The stack's sender as the network layer and UDP see it: NetworkSender plus IP fragmentation on
// output and a hop limit for NDP.
import type { Family } from '../stack/forwarding.js';
import type { NetworkSender } from '../stack/transport.js';

export interface IpSender extends NetworkSender {
  /** Largest transport payload `send` takes: past `maxTransportLength` it goes out as IP fragments. */
  maxDatagramLength(family: Family): number;
  /** As NetworkSender.send, with an explicit TTL / hop limit (default 64). */
  send(family: Family, src: Uint8Array, dst: Uint8Array, protocol: number, length: number, hopLimit?: number): void;
}
