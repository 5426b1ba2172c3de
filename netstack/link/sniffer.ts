// A link endpoint wrapper that records every frame, both directions, to a pcap file (what
// `--pcap FILE` uses). Classic pcap (microsecond timestamps, LINKTYPE_ETHERNET), readable by
// tcpdump and Wireshark. Records are buffered and written in large chunks; close() flushes.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { FrameOffload, LinkEndpoint, NetworkDispatcher } from './endpoint.js';

const PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
const LINKTYPE_ETHERNET = 1;
/** Larger than any frame we carry (65535-byte MTU plus the Ethernet header): frames are never cut. */
const SNAPLEN = 262144;
const RECORD_HEADER_LENGTH = 16;
const BUFFER_SIZE = 1 << 20;

export class SnifferEndpoint implements LinkEndpoint, NetworkDispatcher {
  readonly mtu: number;
  private dispatcher: NetworkDispatcher | null = null;
  private fd: number | null;
  private readonly buffer = Buffer.allocUnsafe(BUFFER_SIZE);
  private used = 0;

  /** Creates (truncates) `path` now, so a bad path fails before any traffic. */
  constructor(
    private readonly inner: LinkEndpoint,
    path: string,
  ) {
    this.mtu = inner.mtu;
    this.fd = openSync(path, 'w', 0o600);
    const header = Buffer.alloc(24);
    header.writeUInt32LE(PCAP_MAGIC_MICROSECONDS, 0);
    header.writeUInt16LE(2, 4);
    header.writeUInt16LE(4, 6);
    header.writeUInt32LE(SNAPLEN, 16);
    header.writeUInt32LE(LINKTYPE_ETHERNET, 20);
    writeSync(this.fd, header);
  }

  attach(dispatcher: NetworkDispatcher): void {
    this.dispatcher = dispatcher;
    this.inner.attach(this);
  }

  /** Offloaded frames are recorded as read (a super-segment whole, a partial checksum unfinished), as tcpdump shows them. */
  deliverFrame(frame: Buffer, offload?: FrameOffload): void {
    this.record(frame);
    this.dispatcher?.deliverFrame(frame, offload);
  }

  batchDone(): void {
    this.dispatcher?.batchDone();
  }

  writeFrame(frame: Uint8Array): void {
    this.record(frame);
    this.inner.writeFrame(frame);
  }

  /** Flushes and closes the file, then closes the wrapped endpoint. */
  close(): void {
    if (this.fd !== null) {
      this.flush();
      closeSync(this.fd);
      this.fd = null;
    }
    this.inner.close();
  }

  private record(frame: Uint8Array): void {
    if (this.fd === null) return;
    if (this.used + RECORD_HEADER_LENGTH + frame.length > BUFFER_SIZE) this.flush();
    const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    const at = this.used;
    this.buffer.writeUInt32LE(Math.floor(micros / 1e6), at);
    this.buffer.writeUInt32LE(micros % 1e6, at + 4);
    this.buffer.writeUInt32LE(frame.length, at + 8);
    this.buffer.writeUInt32LE(frame.length, at + 12);
    if (RECORD_HEADER_LENGTH + frame.length <= BUFFER_SIZE) {
      this.buffer.set(frame, at + RECORD_HEADER_LENGTH);
      this.used += RECORD_HEADER_LENGTH + frame.length;
    } else {
      // A frame larger than the whole buffer (which was just flushed) is written straight through.
      writeSync(this.fd, this.buffer, 0, RECORD_HEADER_LENGTH);
      writeSync(this.fd, frame);
    }
  }

  private flush(): void {
    if (this.fd === null || this.used === 0) return;
    writeSync(this.fd, this.buffer, 0, this.used);
    this.used = 0;
  }
}
