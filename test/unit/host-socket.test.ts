// The native host socket of plain relays (src/egress/forwarder/host-socket.ts over
// native/addon/host_sockets.cc), against servers on loopback: net.Socket's meaning for everything a
// relay relies on — order and backpressure, half-closes both ways, resets both ways, errors, pause.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NativeHostSocket } from '../../src/egress/forwarder/host-socket.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

async function server(onConnection: (s: net.Socket) => void, host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => {
    s.on('error', () => {});
    onConnection(s);
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  cleanups.push(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

function connect(port: number, host = '127.0.0.1'): Promise<NativeHostSocket> {
  const socket = NativeHostSocket.connect(host, port, 60_000);
  cleanups.push(() => socket.destroy());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function collect(socket: NativeHostSocket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.resume();
  return new Promise((resolve) => socket.once('end', () => resolve(Buffer.concat(chunks))));
}

const closed = (socket: NativeHostSocket) => new Promise<void>((r) => socket.once('close', () => r()));

describe('the native host socket', () => {
  it('relays bytes both ways byte-identical, IPv4 and IPv6, with half-closes and then one close', async () => {
    for (const host of ['127.0.0.1', '::1']) {
      const sent = randomBytes(3_000_000);
      let received: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));
      const port = await server((s) => {
        const chunks: Buffer[] = [];
        received = new Promise((r) => {
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('end', () => {
            r(Buffer.concat(chunks));
            s.end(Buffer.from(sent).reverse()); // answers only after our FIN: a half-closed socket still reads
          });
        });
      }, host);
      const socket = await connect(port, host);
      const back = collect(socket);
      const done = closed(socket);
      for (let off = 0; off < sent.length; off += 100_000) socket.write(sent.subarray(off, off + 100_000));
      socket.end();
      expect((await received).equals(sent)).toBe(true);
      expect((await back).equals(Buffer.from(sent).reverse())).toBe(true);
      await done;
      expect(socket.destroyed).toBe(true);
    }
  });

  it('holds what a peer that does not read can not take, says so, and drains it in order', async () => {
    let peer!: net.Socket;
    const port = await server((s) => {
      peer = s;
      s.pause();
    });
    const socket = await connect(port);
    const sent = randomBytes(16 * 1024 * 1024);
    let accepted = true;
    let off = 0;
    while (accepted && off < sent.length) {
      accepted = socket.write(sent.subarray(off, off + 65536));
      off += 65536;
    }
    expect(accepted).toBe(false);
    expect(socket.writableLength).toBeGreaterThan(0);
    expect(socket.writeDirect(Buffer.from('jump the queue'))).toBe(0); // nothing overtakes queued bytes
    const chunks: Buffer[] = [];
    peer.on('data', (c: Buffer) => chunks.push(c));
    const got = new Promise<void>((r) => peer.on('end', () => r()));
    peer.resume();
    await new Promise<void>((r) => socket.once('drain', () => r()));
    expect(socket.writableLength).toBe(0);
    socket.write(sent.subarray(off));
    socket.end();
    await got;
    expect(Buffer.concat(chunks).equals(sent)).toBe(true);
  });

  it('delivers nothing while paused, and everything after resume', async () => {
    const port = await server((s) => s.end('hello, paused reader'));
    const socket = await connect(port);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    await new Promise((r) => setTimeout(r, 100));
    expect(chunks).toHaveLength(0);
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    socket.resume();
    await ended;
    expect(Buffer.concat(chunks).toString()).toBe('hello, paused reader');
    socket.pause();
    socket.end();
    await closed(socket);
  });

  it('reports a refused connect as ECONNREFUSED, and an address that is not an IP without connecting anywhere', async () => {
    const port = await server(() => {});
    cleanups.splice(0).forEach((c) => c()); // the port is free again
    await new Promise((r) => setTimeout(r, 50));
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(connect(80, 'localhost')).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('resets the peer with resetAndDestroy, and hears the peer reset after the bytes that came before it', async () => {
    let peerError: Promise<string> = Promise.resolve('');
    const port = await server((s) => {
      peerError = new Promise((r) => s.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')));
    });
    const socket = await connect(port);
    await new Promise((r) => setTimeout(r, 20));
    socket.resetAndDestroy();
    expect(await peerError).toBe('ECONNRESET');

    const port2 = await server((s) => s.write('last words', () => setTimeout(() => s.resetAndDestroy(), 20)));
    const socket2 = await connect(port2);
    const chunks: Buffer[] = [];
    socket2.on('data', (c: Buffer) => chunks.push(c));
    const failed = new Promise<NodeJS.ErrnoException>((r) => socket2.once('error', r));
    const done = closed(socket2);
    socket2.resume();
    expect((await failed).code).toBe('ECONNRESET');
    await done;
    expect(Buffer.concat(chunks).toString()).toBe('last words');
  });

  it('reports a write to a reset peer as an error after the write returned, then closes', async () => {
    const port = await server((s) => s.once('data', () => s.resetAndDestroy()));
    const socket = await connect(port);
    const events: string[] = [];
    socket.on('error', (e: NodeJS.ErrnoException) => events.push(`error ${e.code}`));
    socket.on('close', () => events.push('close'));
    let returned = false;
    // The first write makes the peer reset; a later one fails.
    for (let i = 0; i < 10 && !socket.destroyed && events.length === 0; i++) {
      socket.write(Buffer.alloc(1000));
      returned = true;
      expect(events).toHaveLength(0);
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(returned).toBe(true);
    expect(events[0]).toMatch(/^error E(PIPE|CONNRESET)$/);
    expect(events.at(-1)).toBe('close');
  });
});
