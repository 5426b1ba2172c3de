// Tunables of the UDP protocol, with the defaults the sandbox uses (as ../tcp/config.ts for TCP).

export interface UdpOptions {
  /** A session with no datagram either way for this long is closed. */
  idleMs: number;
  /** The same for sessions to port 53, whose exchanges are one query and one answer. */
  dnsIdleMs: number;
  /** Most sessions at once; past it new tuples get ICMP admin-prohibited. */
  maxSessions: number;
  /** Most datagrams a session queues while its forwarder request is pending or no handler is set. */
  maxQueued: number;
}

export const UDP_DEFAULTS: UdpOptions = { idleMs: 60_000, dnsIdleMs: 10_000, maxSessions: 4096, maxQueued: 32 };
