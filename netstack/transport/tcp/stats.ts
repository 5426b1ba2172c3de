// Counters of the TCP protocol, all connections together (gVisor's tcpip.TCPStats, trimmed).

export interface TcpStats {
  segmentsReceived: number;
  segmentsSent: number;
  badChecksum: number;
  malformed: number;
  resetsSent: number;
  resetsReceived: number;
  requestsCreated: number;
  requestsOverCap: number;
  /** SYNs reset because every buffer together was past the global budget. */
  requestsOverBudget: number;
  requestsExpired: number;
  synRetransmitsWhilePending: number;
  connectionsEstablished: number;
  connectionsAborted: number;
  retransmits: number;
  timeouts: number;
  fastRecoveries: number;
  tailLossProbes: number;
  windowProbes: number;
  keepaliveProbes: number;
  challengeAcks: number;
  challengeAcksSuppressed: number;
  outOfOrderDropped: number;
}

export function newTcpStats(): TcpStats {
  return {
    segmentsReceived: 0,
    segmentsSent: 0,
    badChecksum: 0,
    malformed: 0,
    resetsSent: 0,
    resetsReceived: 0,
    requestsCreated: 0,
    requestsOverCap: 0,
    requestsOverBudget: 0,
    requestsExpired: 0,
    synRetransmitsWhilePending: 0,
    connectionsEstablished: 0,
    connectionsAborted: 0,
    retransmits: 0,
    timeouts: 0,
    fastRecoveries: 0,
    tailLossProbes: 0,
    windowProbes: 0,
    keepaliveProbes: 0,
    challengeAcks: 0,
    challengeAcksSuppressed: 0,
    outOfOrderDropped: 0,
  };
}
