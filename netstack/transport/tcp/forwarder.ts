// Forwarder requests (gVisor's tcp.ForwarderRequest): a SYN the stack has not answered yet, waiting
// for the forwarder to connect the host side. While a request is pending, retransmitted SYNs do not
// create another one; accept() sends the SYN-ACK, reject() a RST or an ICMP error. Requests are capped
// in total and per destination address, and a request never settled is reset at its deadline, so a
// slow or buggy forwarder can never leave the sandbox hanging or leak slots.
import type { TcpConn, TcpForwarderRequest } from '../../forwarding.js';
import type { FlowId, Refusal } from '../../tcpip.js';
import { TcpConnection, connectionError, type ConnectionHost } from './conn.js';
import type { Tuple } from './address.js';
import type { SynInfo } from './handshake.js';
import { Timer } from './timer.js';

/** What a request needs from the protocol. */
export interface RequestOwner {
  acceptRequest(req: PendingRequest): TcpConn;
  refuseRequest(req: PendingRequest, how: Refusal): void;
  releaseRequest(req: PendingRequest): void;
}

export class PendingRequest implements TcpForwarderRequest {
  /** Set once accepted, rejected, cancelled by the sandbox's RST, or expired. */
  settled = false;
  readonly deadline: Timer;

  constructor(
    private readonly owner: RequestOwner,
    readonly id: FlowId,
    readonly key: string,
    readonly destinationKey: string,
    readonly tuple: Tuple,
    readonly syn: SynInfo,
    /** A copy of the SYN's IP packet, quoted by ICMP refusals. */
    readonly packet: Buffer,
    deadline: Timer,
  ) {
    this.deadline = deadline;
  }

  accept(): TcpConn {
    if (this.settled) return closedConnection(this.id);
    this.settle();
    return this.owner.acceptRequest(this);
  }

  reject(how: Refusal): void {
    if (this.settled) return;
    this.settle();
    this.owner.refuseRequest(this, how);
  }

  /** The sandbox reset the flow or the deadline passed; `reset` also sends RST. */
  cancel(reset: boolean): void {
    if (this.settled) return;
    this.settle();
    if (reset) this.owner.refuseRequest(this, 'reset');
  }

  private settle(): void {
    this.settled = true;
    this.deadline.stop();
    this.owner.releaseRequest(this);
  }
}

const closedHost: ConnectionHost = {
  state: 'CLOSED',
  applicationRead() {},
  applicationWrite(_chunk, done) {
    done(connectionError('EPIPE', 'write on a flow that was already closed'));
  },
  applicationEnd(done) {
    done();
  },
  applicationDestroy() {},
  applicationReset() {},
  setKeepAlive() {},
};

/** A stream for a request the sandbox gave up on (or that expired) before accept(): already reset. */
function closedConnection(id: FlowId): TcpConn {
  const conn = new TcpConnection(id, closedHost);
  conn.destroy(connectionError('ECONNRESET', 'the sandbox gave up on the connection before it was accepted'));
  return conn;
}
