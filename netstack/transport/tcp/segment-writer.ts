// The one way a TCP segment leaves (gVisor's sendTCP). Every sender (the endpoint's data, ACKs, probes,
// SYN-ACKs and RSTs, the protocol's RSTs for segments of no connection, the active open's SYN and RST)
// fills `out` and calls `send`: the header and options are emitted from `out` into the stack's scratch
// frame, the payload copied after them from the send buffer, the checksum computed with the tuple's
// pseudo-header, and the segment counted.
import { checksum, fold, pseudoHeaderChecksum } from '../../header/checksum.js';
import { TCP_FLAG_RST, TCP_PROTOCOL, TcpHeader, TcpRepr } from '../../header/tcp.js';
import type { NetworkSender } from '../../tcpip.js';
import type { Tuple } from './address.js';
import type { TcpStats } from './stats.js';

/** Where a segment's payload comes from (the send buffer). */
export interface PayloadSource {
  copyOut(offset: number, length: number, dst: Buffer, dstOffset: number): void;
}

export class SegmentWriter {
  /** The next segment: `begin` resets it, the caller adds options, `send` sends it. Reused. */
  readonly out = new TcpRepr();
  private readonly header = new TcpHeader();

  constructor(
    private readonly sender: NetworkSender,
    private readonly stats: TcpStats,
  ) {}

  /** Starts a segment on `t` with these fields and no options; returns `out` for the options. */
  begin(t: Tuple, seq: number, ack: number, flags: number, window: number): TcpRepr {
    const out = this.out;
    out.srcPort = t.localPort;
    out.dstPort = t.remotePort;
    out.seq = seq;
    out.ack = ack;
    out.flags = flags;
    out.window = window;
    out.options.clear();
    return out;
  }

  /**
   * Sends `out` on `t`, followed by `length` bytes of `payload` from `payloadOffset`. With `segmentSize`
   * (> 0: the link takes TCP offloads, NetworkSender.sendTcpSuperSegment) the checksum is left to the
   * receiving kernel, which takes the segment as verified (only the pseudo-header sum is written: no
   * pass over the payload on either side), and more than `segmentSize` bytes go as one super-segment
   * of segments that big.
   */
  send(t: Tuple, payload?: PayloadSource, payloadOffset = 0, length = 0, segmentSize = 0): void {
    const { buf, offset } = this.sender.scratch(t.family);
    const h = this.header.at(buf, offset);
    const headerLength = this.out.emit(h);
    if (length > 0) payload!.copyOut(payloadOffset, length, buf, offset + headerLength);
    const total = headerLength + length;
    const pseudo = pseudoHeaderChecksum(t.local, t.remote, TCP_PROTOCOL, total);
    if (segmentSize > 0) {
      h.checksum = fold(pseudo);
      this.sender.sendTcpSuperSegment(t.family, t.local, t.remote, total, length > segmentSize ? segmentSize : 0);
    } else {
      h.checksum = ~fold(pseudo + checksum(buf, offset, total)) & 0xffff;
      this.sender.send(t.family, t.local, t.remote, TCP_PROTOCOL, total);
    }
    this.stats.segmentsSent++;
    if ((this.out.flags & TCP_FLAG_RST) !== 0) this.stats.resetsSent++;
  }
}
