// A connection's addresses: the 4-tuple as the stack sends on it, and the text form FlowId uses.
import { formatIpv4 } from '../../header/ipv4.js';
import { formatIpv6 } from '../../header/ipv6.js';
import type { Family } from '../../tcpip.js';

/** The 4-tuple as the endpoint sends: local is the destination the sandbox dialled. */
export interface Tuple {
  family: Family;
  local: Uint8Array;
  remote: Uint8Array;
  localPort: number;
  remotePort: number;
}

/** Dotted quad, or RFC 5952 canonical IPv6, for 4 or 16 bytes. */
export function formatAddress(bytes: Uint8Array): string {
  return bytes.length === 4 ? formatIpv4(bytes, 0) : formatIpv6(bytes, 0);
}
