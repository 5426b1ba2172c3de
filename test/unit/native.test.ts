// The addon's control-socket calls and TAP reader/writer. The TapEndpoint tests run over
// a SOCK_SEQPACKET socketpair, which keeps frame boundaries like a TAP does; test/integration/tap.test.ts
// runs it on a real TAP.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd, recvMessage, sendMessage, socketpair, type ControlMessage } from '../../src/supervisor/control.js';
import { requireNative } from '../../native/addon/index.js';
import { TapEndpoint } from '../../netstack/link/tap.js';
import type { NetworkDispatcher } from '../../netstack/link/endpoint.js';

const addon = requireNative();
const receive = promisify(recvMessage) as (fd: number) => Promise<ControlMessage>;

const MAC_HEADER = 'ffffffffffff02000000000108'; // dst, src, first byte of the ethertype
function ipv4Frame(protocol: number, optionWords = 0): Buffer {
  const ihl = 5 + optionWords;
  const ip = Buffer.alloc(ihl * 4 + 8);
  ip[0] = 0x40 | ihl;
  ip.writeUInt16BE(ip.length, 2);
  ip[8] = 64;
  ip[9] = protocol;
  Buffer.from([10, 0, 2, 100, 10, 0, 2, 2]).copy(ip, 12);
  ip.writeUInt16BE(~addon.checksum(ip, 0, ihl * 4, 0) & 0xffff, 10);
  return Buffer.concat([Buffer.from(MAC_HEADER + '00', 'hex'), ip]);
}
describe('control socket', () => {
  const open = new Set<number>();
  const pair = (): [number, number] => {
    const p = socketpair();
    p.forEach((fd) => open.add(fd));
    return p;
  };
  const close = (fd: number): void => {
    open.delete(fd);
    closeFd(fd);
  };
  afterEach(() => {
    open.forEach(closeFd);
    open.clear();
  });

  it('asks a TAP device whether it has the virtio-net header, and refuses an fd that is not one', () => {
    const [a] = pair();
    expect(() => addon.tapHasVnetHdr(a)).toThrow(/TUNGETIFF/);
  });

  it('keeps message boundaries', async () => {
    const [a, b] = pair();
    sendMessage(a, Buffer.from('TAP'));
    sendMessage(a, Buffer.from('GO'));
    expect((await receive(b)).data.toString()).toBe('TAP');
    expect((await receive(b)).data.toString()).toBe('GO');
  });

  it('passes an fd across that reads the same open file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-native-'));
    try {
      writeFileSync(join(dir, 'f'), 'through SCM_RIGHTS');
      const file = openSync(join(dir, 'f'), 'r');
      const [a, b] = pair();
      sendMessage(a, Buffer.from('FD'), file);
      closeSync(file);
      const message = await receive(b);
      expect(message.data.toString()).toBe('FD');
      expect(message.fd).toBeTypeOf('number');
      const bytes = Buffer.alloc(64);
      const n = readSync(message.fd!, bytes, 0, 64, 0);
      closeSync(message.fd!);
      expect(bytes.subarray(0, n).toString()).toBe('through SCM_RIGHTS');
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('reports the peer closing as an empty message without fd', async () => {
    const [a, b] = pair();
    close(a);
    expect(await receive(b)).toEqual({ data: Buffer.alloc(0) });
  });

  it('keeps a receive pending across the close of our fd, and ends it when the peer closes', async () => {
    const [a, b] = pair();
    const pending = receive(b);
    close(b);
    close(a);
    await expect(pending).resolves.toEqual({ data: Buffer.alloc(0) });
  });

  it('closing our copy of a socket leaves a child’s copy working', async () => {
    const [a, b] = pair();
    const child = spawn('python3', ['-c', 'import socket; socket.socket(fileno=3).send(b"from the child")'], {
      stdio: ['ignore', 'inherit', 'inherit', b],
    });
    close(b);
    expect((await receive(a)).data.toString()).toBe('from the child');
    await new Promise((resolve) => child.on('exit', resolve));
  });

  it('throws an errno error when the peer is gone', () => {
    const [a, b] = pair();
    close(b);
    expect(() => sendMessage(a, Buffer.from('x'))).toThrow(expect.objectContaining({ code: 'EPIPE', syscall: 'sendmsg' }));
  });
});

/** Collects inbound frames (copied: the views die with the batch) and batch boundaries. */
class Recorder implements NetworkDispatcher {
  frames: Buffer[] = [];
  batches: number[] = [];
  private inBatch = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly onFrame?: (frame: Buffer) => void) {}
  deliverFrame(frame: Buffer): void {
    this.frames.push(Buffer.from(frame));
    this.inBatch++;
    this.onFrame?.(frame);
  }
  batchDone(): void {
    this.batches.push(this.inBatch);
    this.inBatch = 0;
    for (const w of this.waiters.splice(0)) w();
  }
  async waitFrames(n: number): Promise<void> {
    while (this.frames.length < n) await new Promise<void>((r) => this.waiters.push(r));
  }
}

describe('TapEndpoint (over a SOCK_SEQPACKET pair)', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });
  function endpoint(options: Partial<ConstructorParameters<typeof TapEndpoint>[1]> = {}): { tap: TapEndpoint; peer: number } {
    const [ours, peer] = socketpair();
    const tap = new TapEndpoint(ours, { mtu: 1500, ...options });
    cleanup.push(() => {
      tap.close();
      closeFd(peer);
    });
    return { tap, peer };
  }
  const frame = (seq: number, length = 60): Buffer => {
    const f = Buffer.alloc(length, seq & 0xff);
    f.writeUInt32BE(seq, 0);
    return f;
  };

  it('delivers what arrived before attach as batches of at most batchFrames, then batchDone', async () => {
    const { tap, peer } = endpoint({ batchFrames: 3 });
    for (let i = 0; i < 5; i++) sendMessage(peer, frame(i, 60 + i));
    const recorder = new Recorder();
    tap.attach(recorder);
    await recorder.waitFrames(5);
    expect(recorder.frames).toEqual([0, 1, 2, 3, 4].map((i) => frame(i, 60 + i)));
    expect(recorder.batches).toEqual([3, 2]);
    expect(tap.stats).toMatchObject({ framesIn: 5, bytesIn: 60 + 61 + 62 + 63 + 64 });
  });

  it('drops and counts a frame longer than the MTU allows instead of delivering it cut short', async () => {
    const { tap, peer } = endpoint({ mtu: 1000 });
    sendMessage(peer, frame(1, 1015));
    sendMessage(peer, frame(2, 1014));
    const recorder = new Recorder();
    tap.attach(recorder);
    await recorder.waitFrames(1);
    expect(recorder.frames).toEqual([frame(2, 1014)]);
    expect(tap.stats).toMatchObject({ framesIn: 1, oversizeIn: 1 });
  });

  it('with vnetHdr: strips the virtio-net header from reads, reports its offloads, and prepends one to writes', async () => {
    const { tap, peer } = endpoint({ vnetHdr: true });
    const seen: Array<[boolean, number]> = [];
    const recorder = new Recorder(() => seen.push([tap.frameInfo.checksumPartial, tap.frameInfo.gsoSize]));
    tap.attach(recorder);
    const offloaded = Buffer.from([1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0]); // NEEDS_CSUM, GSO TCPv4, gso_size 1448
    sendMessage(peer, Buffer.concat([offloaded, ipv4Frame(6)]));
    sendMessage(peer, Buffer.concat([Buffer.alloc(10), frame(3)]));
    await recorder.waitFrames(2);
    expect(recorder.frames).toEqual([ipv4Frame(6), frame(3)]);
    expect(seen).toEqual([
      [true, 1448],
      [false, 0],
    ]);
    tap.writeFrame(frame(4));
    expect((await receive(peer)).data).toEqual(Buffer.concat([Buffer.alloc(10), frame(4)]));
  });

  it('writes frames the peer receives whole and in order', async () => {
    const { tap, peer } = endpoint();
    tap.writeFrame(frame(1, 1514));
    tap.writeFrame(frame(2, 42).subarray(0, 42));
    expect((await receive(peer)).data).toEqual(frame(1, 1514));
    expect((await receive(peer)).data).toEqual(frame(2, 42));
    expect(tap.stats).toMatchObject({ framesOut: 2, bytesOut: 1556, queuedOut: 0, droppedOut: 0 });
  });

  it('queues frames the kernel cannot take yet, drops beyond the queue, and flushes the rest in order', async () => {
    const { tap, peer } = endpoint({ pendingFrames: 4 });
    let sent = 0;
    while (tap.stats.droppedOut < 3) tap.writeFrame(frame(sent++, 1000));
    const { framesOut, queuedOut, droppedOut } = tap.stats;
    expect(queuedOut).toBe(4);
    expect(sent).toBe(framesOut + queuedOut + droppedOut);
    const received: number[] = [];
    while (received.length < framesOut + queuedOut) received.push((await receive(peer)).data.readUInt32BE(0));
    expect(received).toEqual(Array.from({ length: framesOut + queuedOut }, (_, i) => i));
    expect(tap.stats.framesOut).toBe(framesOut + queuedOut);
  });

  it('stops delivering while paused and catches up on resume', async () => {
    const { tap, peer } = endpoint();
    const recorder = new Recorder();
    tap.attach(recorder);
    tap.pause();
    sendMessage(peer, frame(7));
    await new Promise((r) => setTimeout(r, 50));
    expect(recorder.frames).toHaveLength(0);
    tap.resume();
    await recorder.waitFrames(1);
    expect(recorder.frames).toEqual([frame(7)]);
  });

  it('reports the end of its fd through onError and stops reading', async () => {
    const [ours, peer] = socketpair();
    const error = new Promise<NodeJS.ErrnoException>((resolve) => {
      const tap = new TapEndpoint(ours, { mtu: 1500, onError: resolve });
      cleanup.push(() => tap.close());
      tap.attach(new Recorder());
    });
    closeFd(peer);
    expect(await error).toMatchObject({ code: 'EPIPE', syscall: 'read' });
  });

  it('closes its fd on close(), which the peer sees, and drops frames written afterwards', async () => {
    const [ours, peer] = socketpair();
    const tap = new TapEndpoint(ours, { mtu: 1500 });
    tap.close();
    tap.close();
    expect(await receive(peer)).toEqual({ data: Buffer.alloc(0) });
    closeFd(peer);
    tap.writeFrame(frame(1));
    expect(tap.stats.framesOut).toBe(0);
  });

  it('stops delivering a batch when the dispatcher closes the endpoint', async () => {
    const { tap, peer } = endpoint();
    for (let i = 0; i < 3; i++) sendMessage(peer, frame(i));
    const recorder = new Recorder(() => tap.close());
    tap.attach(recorder);
    await recorder.waitFrames(1);
    expect(recorder.frames).toEqual([frame(0)]);
    expect(recorder.batches).toEqual([1]);
  });
});
