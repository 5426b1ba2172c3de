// One inbound segment, parsed into a record the protocol reuses for every packet (gVisor's
// tcp.segment without the reference counting: the payload is a view valid only during the call).
import { TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, TcpOptions, parseTcpOptions } from '../../header/tcp.js';

export class Segment {
  srcPort = 0;
  dstPort = 0;
  seq = 0;
  ack = 0;
  flags = 0;
  /** The window field as sent (not scaled). */
  window = 0;
  /** The whole TCP segment (header and data). */
  buf: Buffer = Buffer.alloc(0);
  dataOffset = 0;
  dataLength = 0;
  readonly options = new TcpOptions();

  /** Parses the header at the start of `buf`; the caller has checked the length and data offset. */
  parse(buf: Buffer, headerLength: number): void {
    this.buf = buf;
    this.srcPort = buf.readUInt16BE(0);
    this.dstPort = buf.readUInt16BE(2);
    this.seq = buf.readUInt32BE(4);
    this.ack = buf.readUInt32BE(8);
    this.flags = buf[13]!;
    this.window = buf.readUInt16BE(14);
    this.dataOffset = headerLength;
    this.dataLength = buf.length - headerLength;
    parseTcpOptions(buf, 20, headerLength, this.options);
  }

  get syn(): boolean {
    return (this.flags & TCP_FLAG_SYN) !== 0;
  }
  get fin(): boolean {
    return (this.flags & TCP_FLAG_FIN) !== 0;
  }
  get rst(): boolean {
    return (this.flags & TCP_FLAG_RST) !== 0;
  }
  get hasAck(): boolean {
    return (this.flags & TCP_FLAG_ACK) !== 0;
  }
  /** Sequence space the segment occupies: data plus SYN and FIN. */
  get sequenceLength(): number {
    return this.dataLength + (this.syn ? 1 : 0) + (this.fin ? 1 : 0);
  }
}
