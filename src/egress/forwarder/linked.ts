// A relayed TCP flow is two connections with one fate: the sandbox's (through our stack) and the host
// socket. An error, or a close without an orderly end, on one side resets the other, as a direct
// connection would have been reset; `forward` relays each direction. Used by the outbound forwarder
// and by published ports.
import type { TcpConn } from '../../../netstack/index.js';
import type { RelaySocket } from './host-socket.js';

/**
 * `setError` gets each side's error as "host CODE" / "sandbox CODE" (the caller keeps the first);
 * `onClosed` runs once per side as it closes.
 */
export function linkFates(conn: TcpConn, host: RelaySocket, setError: (text: string) => void, onClosed: () => void): void {
  host.on('error', (err: NodeJS.ErrnoException) => {
    setError(`host ${err.code ?? err.message}`);
    conn.reset();
  });
  conn.on('error', (err: NodeJS.ErrnoException) => {
    setError(`sandbox ${err.code ?? err.message}`);
    host.resetAndDestroy();
  });
  host.on('close', () => {
    if (!conn.destroyed && !conn.writableEnded) conn.reset();
    onClosed();
  });
  conn.on('close', () => {
    if (!host.destroyed && !host.writableEnded) host.resetAndDestroy();
    onClosed();
  });
}

/** Either end of a relay, as forward() uses it (a TcpConn, a net.Socket, a NativeHostSocket). */
interface ByteStream {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  once(event: 'drain', listener: () => void): unknown;
  write(chunk: Buffer): boolean;
  end(): unknown;
  pause(): unknown;
  resume(): unknown;
}

/**
 * Relays `from`'s bytes to `to` with backpressure (paused while `to` is full) and its end as a
 * half-close. What pipe() does for a relay, without its unpipe machinery and its half-dozen listeners
 * per direction (a short connection costs ~4% less CPU); errors and closes are linkFates'.
 */
export function forward(from: ByteStream, to: ByteStream, count: (n: number) => void): void {
  const resume = () => from.resume();
  from.on('data', (c: Buffer) => {
    count(c.length);
    if (!to.write(c)) {
      from.pause();
      to.once('drain', resume);
    }
  });
  from.on('end', () => to.end());
  // As pipe() does: a data listener alone leaves a stream paused explicitly (the proxy handshake's
  // reader pauses the socket) paused.
  from.resume();
}
