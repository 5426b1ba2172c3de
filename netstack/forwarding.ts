// The contract between the stack and whoever decides what a flow may do (the supervisor's forwarder).
// Like gVisor's tcp.Forwarder / udp.Forwarder, the stack terminates every flow the sandbox opens,
// whatever its destination, and asks the handler what to do before it answers the first packet.
import type { Duplex } from 'node:stream';
import type { FlowId, Refusal } from './tcpip.js';

/**
 * A TCP connection the stack established with the sandbox, as a Node duplex stream with backpressure:
 * while the stream's reader does not read, the receive window the sandbox sees shrinks to zero; while
 * `write()` returns false (send buffer full), the writer should pause. `end()` sends FIN (half-close);
 * the readable side ends when the sandbox's FIN arrives; `destroy()` sends RST when the connection is
 * not already closed cleanly, and a RST from the sandbox destroys the stream with an ECONNRESET error.
 */
export interface TcpConn extends Duplex {
  readonly id: FlowId;
  /** Sends RST and destroys the stream. */
  reset(): void;
}

export interface TcpForwarderRequest {
  readonly id: FlowId;
  /** Completes the handshake (SYN-ACK now). Call only once the host side is connected. */
  accept(): TcpConn;
  /** Refuses the flow: RST for 'reset', else the ICMP error. Any later SYN for this tuple starts anew. */
  reject(how: Refusal): void;
}

export interface UdpConn {
  readonly id: FlowId;
  /** Sends one datagram to the sandbox from the flow's destination address/port. */
  send(payload: Uint8Array): void;
  /** Datagrams from the sandbox on this 4-tuple. */
  onMessage: ((payload: Buffer) => void) | null;
  /** Sends an ICMP error about this flow to the sandbox (e.g. when the host socket got ECONNREFUSED). */
  sendIcmp(how: Exclude<Refusal, 'reset'>): void;
  /** Ends the session; a later datagram on the tuple asks the forwarder again. */
  close(): void;
  /** Called when the stack expires the session for idleness. */
  onClose: (() => void) | null;
}

export interface UdpForwarderRequest {
  readonly id: FlowId;
  /** The first datagram; it is delivered to `onMessage` once accept() returns and a handler is set. */
  readonly firstPayload: Buffer;
  accept(): UdpConn;
  reject(how: Exclude<Refusal, 'reset'>): void;
}

export interface Forwarder {
  tcp(req: TcpForwarderRequest): void;
  udp(req: UdpForwarderRequest): void;
}
