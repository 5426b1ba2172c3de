// RACK-TLP loss detection (RFC 8985). RACK: a segment is lost once a segment sent after it has been
// delivered and a reordering window has passed since it was sent. TLP: when the tail of a flight gets
// no ACK, a probe after about two RTTs elicits the ACK/SACK that lets RACK or fast recovery repair
// it, instead of waiting for the RTO.
import type { Scoreboard, SentSegment } from './sack-scoreboard.js';
import { seqGT, seqLT } from './seqnum.js';

export class Rack {
  /** Transmit time and end of the most recently sent segment known delivered. */
  xmitTime = -1;
  endSeq = 0;
  rtt = 0;
  minRtt = Infinity;
  reorderingSeen = false;

  /** A segment was cumulatively ACKed or SACKed (RFC 8985 §6.2 step 2). */
  onDelivered(seg: SentSegment, now: number, connectionMinRtt: number): void {
    const rtt = now - seg.xmitTime;
    // A retransmitted segment's ACK may be for the original: skip samples too fast to be for the copy.
    if (seg.xmitCount > 1 && rtt < connectionMinRtt) return;
    this.rtt = rtt;
    if (rtt < this.minRtt) this.minRtt = rtt;
    if (seg.xmitTime > this.xmitTime || (seg.xmitTime === this.xmitTime && seqGT(seg.end, this.endSeq))) {
      this.xmitTime = seg.xmitTime;
      this.endSeq = seg.end;
    }
  }

  /** Step 3: a segment delivered below what was already SACKed, never retransmitted, was reordered. */
  noteReordering(seg: SentSegment, highestSacked: number, sacked: boolean): void {
    if (sacked && seg.xmitCount === 1 && seqLT(seg.end, highestSacked)) this.reorderingSeen = true;
  }

  /** Step 4: the reordering window. */
  reorderWindow(inRecovery: boolean, sackedSegments: number, srtt: number): number {
    if (!this.reorderingSeen && (inRecovery || sackedSegments >= 3)) return 0;
    return Math.min(this.minRtt === Infinity ? 0 : this.minRtt / 4, srtt);
  }

  /**
   * Step 5: marks lost every outstanding segment sent before the latest delivered one whose
   * reordering window has passed. Returns the milliseconds until the next one would be due (for the
   * reorder timer), or 0 when none is waiting.
   */
  detectLoss(board: Scoreboard, now: number, reoWnd: number): number {
    if (this.xmitTime < 0) return 0;
    let wait = 0;
    for (let i = 0; i < board.length; i++) {
      const s = board.at(i);
      if (!seqLT(s.start, this.endSeq)) break;
      if (s.sacked || s.lost) continue;
      const sentBefore = s.xmitTime < this.xmitTime || (s.xmitTime === this.xmitTime && seqLT(s.end, this.endSeq));
      if (!sentBefore) continue;
      const remaining = s.xmitTime + this.rtt + reoWnd - now;
      if (remaining <= 0) board.markLost(s);
      else if (wait === 0 || remaining < wait) wait = remaining;
    }
    return wait;
  }
}
