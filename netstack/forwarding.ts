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
  /**
   * A synchronous consumer of the sandbox's in-order bytes, tried before the stream: called with a
   * view of a buffer the stack reuses once it returns (never keep it), it returns how many bytes it
   * took; the rest is pushed to the stream as usual. Tried only while the stream holds no unread
   * bytes, so the order holds. Null (the default): everything goes through the stream.
   */
  sink: ((bytes: Buffer) => number) | null;
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
  /**
   * Hands the session to the link's native UDP relay (the TAP addon): from now on a host socket
   * connected to `host` (4 or 16 bytes):`port` carries its datagrams both ways without JS per datagram
   * (onMessage is no longer called: what the stack still receives on the tuple goes to that socket).
   * `onRefused` when the host answers port unreachable (sendIcmp then quotes the last datagram).
   * Null when the link has no relay (pcap, link faults, the in-memory channel); throws the socket's
   * errno error when it can't open. close() ends the relayed flow at once.
   */
  relay(host: Uint8Array, port: number, onRefused: () => void): RelayedUdp | null;
}

/** A session the link's relay carries (UdpConn.relay). */
export interface RelayedUdp {
  /** Sends a datagram on the relay's host socket (one the forwarder held, say). */
  send(payload: Uint8Array): void;
  /** Payload bytes each way so far (read from the relay); the final figures once the session closed. */
  readonly bytesUp: number;
  readonly bytesDown: number;
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
