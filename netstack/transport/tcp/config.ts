// Tunables of the TCP protocol, with the defaults the sandbox uses. Every duration is in milliseconds.

export interface KeepaliveConfig {
  /** Off by default for forwarded flows; `TcpConn.setKeepAlive` turns it on per connection. */
  enabled: boolean;
  /** Idle time before the first probe. */
  idleMs: number;
  /** Time between unanswered probes. */
  intervalMs: number;
  /** Unanswered probes before the connection is aborted with ETIMEDOUT. */
  count: number;
}

export interface TcpConfig {
  /** Receive buffer per connection: bytes the application has not read plus out-of-order data. */
  receiveBufferSize: number;
  /** Send buffer per connection: bytes written and not yet acknowledged. */
  sendBufferSize: number;
  /** Cap on out-of-order bytes held per connection. */
  outOfOrderBufferSize: number;
  /**
   * Budget over every connection's send, receive and out-of-order bytes together: past it new
   * connections are reset and existing ones shrink their windows and send buffers to `bufferFloorBytes`.
   */
  maxTotalBufferBytes: number;
  /** Cap on out-of-order bytes held by all connections together. */
  maxTotalOutOfOrderBytes: number;
  bufferFloorBytes: number;
  /** Forwarder requests waiting for accept()/reject(), in total and per destination address. */
  maxPendingRequests: number;
  maxPendingPerDestination: number;
  /** A request neither accepted nor rejected by then is reset. */
  requestDeadlineMs: number;
  sack: boolean;
  timestamps: boolean;
  windowScaling: boolean;
  initialCwndSegments: number;
  initialRtoMs: number;
  minRtoMs: number;
  maxRtoMs: number;
  /** Consecutive RTO expiries before the connection is aborted (Linux tcp_retries2). */
  maxRetransmits: number;
  /** SYN-ACK retransmissions before a half-open connection is dropped. */
  synAckRetries: number;
  delayedAckMs: number;
  /** Zero-window probes back off from the RTO up to this interval. */
  maxPersistIntervalMs: number;
  /** FIN_WAIT_2 is abandoned after this long without a segment from the sandbox. */
  finWait2TimeoutMs: number;
  timeWaitMs: number;
  keepalive: KeepaliveConfig;
  /** RFC 5961 challenge ACKs sent per second, all connections together. */
  challengeAckLimit: number;
}

export const defaultTcpConfig: TcpConfig = {
  receiveBufferSize: 4 << 20,
  sendBufferSize: 4 << 20,
  outOfOrderBufferSize: 4 << 20,
  maxTotalBufferBytes: 256 << 20,
  maxTotalOutOfOrderBytes: 32 << 20,
  bufferFloorBytes: 64 << 10,
  maxPendingRequests: 1024,
  maxPendingPerDestination: 256,
  requestDeadlineMs: 30_000,
  sack: true,
  timestamps: true,
  windowScaling: true,
  initialCwndSegments: 10,
  initialRtoMs: 1000,
  minRtoMs: 200,
  maxRtoMs: 120_000,
  maxRetransmits: 15,
  synAckRetries: 5,
  delayedAckMs: 40,
  maxPersistIntervalMs: 60_000,
  finWait2TimeoutMs: 5_000,
  timeWaitMs: 2_000,
  keepalive: { enabled: false, idleMs: 60_000, intervalMs: 10_000, count: 5 },
  challengeAckLimit: 1000,
};

export type TcpConfigInput = Partial<Omit<TcpConfig, 'keepalive'>> & { keepalive?: Partial<KeepaliveConfig> };

export function resolveTcpConfig(input: TcpConfigInput = {}): TcpConfig {
  return { ...defaultTcpConfig, ...input, keepalive: { ...defaultTcpConfig.keepalive, ...input.keepalive } };
}
