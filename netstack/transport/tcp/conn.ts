// TcpConn as a Node Duplex (forwarding.ts): the stream side of an Endpoint. Backpressure runs both
// ways through the endpoint: a reader that stops reading leaves bytes unread, which closes the window
// the sandbox sees; a write completes only once the send buffer has room again.
import { Duplex } from 'node:stream';
import type { TcpConn } from '../../forwarding.js';
import type { FlowId } from '../../tcpip.js';

/** What the stream asks of its connection. */
export interface ConnectionHost {
  /** The RFC 9293 state, for diagnostics. */
  readonly state: string;
  applicationRead(): void;
  applicationWrite(chunk: Buffer, done: (err?: Error | null) => void): void;
  applicationEnd(done: (err?: Error | null) => void): void;
  applicationDestroy(): void;
  applicationReset(): void;
  setKeepAlive(enable: boolean, idleMs?: number): void;
}

export class TcpConnection extends Duplex implements TcpConn {
  sink: ((bytes: Buffer) => number) | null = null;

  constructor(
    readonly id: FlowId,
    private readonly host: ConnectionHost,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
  }

  /** The connection's RFC 9293 state ('ESTABLISHED', 'CLOSE-WAIT', ..., 'CLOSED'). */
  get state(): string {
    return this.host.state;
  }

  override _read(): void {
    this.host.applicationRead();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.host.applicationWrite(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.host.applicationEnd(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.host.applicationDestroy();
    done(err);
  }

  reset(): void {
    this.host.applicationReset();
    this.destroy();
  }

  /** Keepalive probes after `idleMs` without traffic (the stack's configured idle time by default). */
  setKeepAlive(enable: boolean, idleMs?: number): this {
    this.host.setKeepAlive(enable, idleMs);
    return this;
  }
}

export function connectionError(code: 'ECONNRESET' | 'ECONNREFUSED' | 'ETIMEDOUT' | 'EPIPE' | 'EHOSTUNREACH', message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${message} (${code})`);
  err.code = code;
  return err;
}
