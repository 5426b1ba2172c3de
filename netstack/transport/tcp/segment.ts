// One inbound segment, parsed into a record the protocol reuses for every packet (gVisor's
// tcp.segment without the reference counting: the payload is a view valid only during the call).
import { TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, TcpRepr, type TcpHeader } from '../../header/tcp.js';

export class Segment extends TcpRepr {
  /** The whole TCP segment (header and data). */
  buf: Buffer = Buffer.alloc(0);
  dataOffset = 0;
  dataLength = 0;

  /** Parses the segment `h` views, which runs to the end of `h.buf`; the caller has checked the data offset. */
  parseSegment(h: TcpHeader): void {
    this.parse(h);
    this.buf = h.buf;
    this.dataOffset = h.off + h.dataOffset;
    this.dataLength = h.buf.length - this.dataOffset;
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
