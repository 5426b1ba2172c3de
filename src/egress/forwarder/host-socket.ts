// The host side of a plain relayed TCP flow as a native socket (native/addon/host_sockets.cc): what a
// relay needs of net.Socket and nothing more — a connect, bytes both ways with backpressure, half-closes,
// a reset, and the events linkFates and forward() listen to ('connect', 'data', 'end', 'drain',
// 'error', 'close'), with net.Socket's meaning. net.Socket's Duplex, its read and write requests and
// destroy's ticks cost a short connection about a fifth of the supervisor's time; this costs a map
// lookup per event. Flows that are inspected, or go through an upstream proxy, keep net.Socket (they
// pipe through Transforms and read a handshake back with unshift).
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { requireNative, type NativeHostSockets } from '../../../native/addon/index.js';
import { ipBytes, parseIp } from '../policy/address.js';

/** The host socket of a relay: a net.Socket, or the native one. */
export type RelaySocket = net.Socket | NativeHostSocket;

let sockets: NativeHostSockets | null = null;
const byId = new Map<number, NativeHostSocket>();

function hostSockets(): NativeHostSockets {
  if (!sockets) {
    const addon = requireNative();
    const kinds = addon.hostSocketEvents;
    sockets = new addon.HostSockets((id, kind, value, length) => {
      const socket = byId.get(id);
      if (!socket) return;
      if (kind === kinds.data) socket.emit('data', length < (value as Buffer).length ? (value as Buffer).subarray(0, length) : value);
      else if (kind === kinds.writable) socket.flush();
      else if (kind === kinds.end) socket.ended();
      else if (kind === kinds.connected) socket.emit('connect');
      else if (kind === kinds.error) socket.fail(value as NodeJS.ErrnoException);
    });
  }
  return sockets;
}

export class NativeHostSocket extends EventEmitter {
  destroyed = false;
  writableEnded = false;
  readableEnded = false;
  /** Bytes write() accepted that the kernel has not taken yet, in order. */
  private queue: Buffer[] = [];
  private queued = 0;
  private reading = false;
  private shut = false;
  /** A write failed: nothing more is written, and the error is on its way. */
  private broken = false;

  private constructor(private readonly id: number) {
    super();
  }

  /**
   * Connects to `host` (an IP address) and `port`, keepalive probes after `keepAliveMs` of silence;
   * 'connect' or 'error' follows, never synchronously (as net.connect). Reading starts with resume().
   */
  static connect(host: string, port: number, keepAliveMs: number): NativeHostSocket {
    const ip = parseIp(host);
    let id: number;
    try {
      if (!ip) throw Object.assign(new Error(`not an IP address: ${host}`), { code: 'EINVAL' });
      id = hostSockets().connect(ip.family, ipBytes(ip), port, Math.max(1, Math.round(keepAliveMs / 1000)));
    } catch (err) {
      const socket = new NativeHostSocket(0);
      process.nextTick(() => socket.fail(err as NodeJS.ErrnoException));
      return socket;
    }
    const socket = new NativeHostSocket(id);
    byId.set(id, socket);
    return socket;
  }

  /** What waits for the kernel to take it (net.Socket counts the same way). */
  get writableLength(): number {
    return this.queued;
  }

  /** Sends `bytes`, or queues what the kernel can't take now; false means wait for 'drain'. */
  write(bytes: Buffer): boolean {
    if (this.destroyed || this.writableEnded || this.broken) return false;
    if (this.queued === 0) {
      const n = this.send(bytes);
      if (n === bytes.length) return true;
      if (n < 0) return false;
      bytes = bytes.subarray(n);
    }
    this.queue.push(bytes);
    this.queued += bytes.length;
    if (this.queue.length === 1) hostSockets().wantWritable(this.id);
    return false;
  }

  /**
   * A write straight from the stack's receive ring (TcpConn.sink): how many bytes the kernel took, and
   * only while nothing is queued, so the bytes keep their order; 0 leaves them to the usual way.
   */
  writeDirect(bytes: Buffer): number {
    if (this.queued > 0 || this.destroyed || this.writableEnded || this.broken) return 0;
    return Math.max(0, this.send(bytes));
  }

  /** Ends our byte stream once what is queued has gone (a FIN). */
  end(): this {
    if (this.writableEnded || this.destroyed) return this;
    this.writableEnded = true;
    if (this.queued === 0) this.shutdown();
    return this;
  }

  pause(): this {
    if (this.reading && !this.destroyed) {
      this.reading = false;
      hostSockets().setReading(this.id, false);
    }
    return this;
  }

  resume(): this {
    if (!this.reading && !this.destroyed) {
      this.reading = true;
      hostSockets().setReading(this.id, true);
    }
    return this;
  }

  destroy(): this {
    return this.close(false);
  }

  /** Closes with a RST to the peer (net.Socket's resetAndDestroy). */
  resetAndDestroy(): this {
    return this.close(true);
  }

  /** The socket takes bytes again: what is queued goes, then 'drain' (and the FIN, if end() came). */
  flush(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const n = this.send(head);
      if (n < 0) return;
      this.queued -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        hostSockets().wantWritable(this.id);
        return;
      }
      this.queue.shift();
    }
    if (this.writableEnded) this.shutdown();
    this.emit('drain');
  }

  /** The peer's FIN: no more data. With ours sent too, the socket is done (allowHalfOpen's close). */
  ended(): void {
    this.readableEnded = true;
    this.emit('end');
    if (this.shut) this.destroy();
  }

  /** A failed connect, read or write: 'error', then 'close' (as net.Socket). */
  fail(err: NodeJS.ErrnoException): void {
    if (this.destroyed) return;
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.destroy();
  }

  private send(bytes: Buffer): number {
    try {
      return hostSockets().write(this.id, bytes);
    } catch (err) {
      // Reported as net.Socket does: after the write returned.
      this.broken = true;
      process.nextTick(() => this.fail(err as NodeJS.ErrnoException));
      return -1;
    }
  }

  private shutdown(): void {
    if (this.shut || this.destroyed) return;
    this.shut = true;
    hostSockets().shutdown(this.id);
    if (this.readableEnded) this.destroy();
  }

  private close(reset: boolean): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    if (byId.delete(this.id)) hostSockets().close(this.id, reset);
    this.queue = [];
    this.queued = 0;
    process.nextTick(() => this.emit('close'));
    return this;
  }
}
