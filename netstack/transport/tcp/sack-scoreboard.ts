// The sender's record of what it has transmitted and not yet had cumulatively acknowledged: one
// record per transmitted segment (its range, when it was last sent, whether the receiver SACKed it or
// loss detection marked it lost), in sequence order. It is the SACK scoreboard of RFC 6675 and the
// per-segment transmit times RACK needs (RFC 8985 §6.1). Records are recycled, not reallocated.
import { seqDiff, seqGT, seqLEQ } from './seqnum.js';

export class SentSegment {
  start = 0;
  /** One past the last sequence number, FIN included. */
  end = 0;
  fin = false;
  xmitTime = 0;
  xmitCount = 0;
  sacked = false;
  lost = false;

  get size(): number {
    return (this.end - this.start) >>> 0;
  }
}

export class Scoreboard {
  /** Bytes of records SACKed by the receiver. */
  sackedBytes = 0;
  /** Bytes of records marked lost and not retransmitted since. */
  lostBytes = 0;
  /** Highest sequence number SACKed + 1, when `sackedBytes > 0`. */
  highestSacked = 0;
  private ring: SentSegment[] = [];
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  at(i: number): SentSegment {
    return this.ring[(this.head + i) % this.ring.length]!;
  }

  last(): SentSegment | undefined {
    return this.count === 0 ? undefined : this.at(this.count - 1);
  }

  push(start: number, end: number, fin: boolean, now: number): SentSegment {
    if (this.count === this.ring.length) this.grow();
    const r = this.ring[(this.head + this.count) % this.ring.length]!;
    this.count++;
    r.start = start;
    r.end = end;
    r.fin = fin;
    r.xmitTime = now;
    r.xmitCount = 1;
    r.sacked = false;
    r.lost = false;
    return r;
  }

  /** Removes the first record (fully acknowledged). */
  shift(): void {
    const r = this.at(0);
    this.forget(r);
    this.head = (this.head + 1) % this.ring.length;
    this.count--;
  }

  /** Trims the first record to start at `ack` (a partial acknowledgment). */
  trimFront(ack: number): void {
    const r = this.at(0);
    const cut = seqDiff(ack, r.start);
    if (r.sacked) this.sackedBytes -= cut;
    if (r.lost) this.lostBytes -= cut;
    r.start = ack;
  }

  markSacked(r: SentSegment): void {
    if (r.sacked) return;
    if (r.lost) {
      r.lost = false;
      this.lostBytes -= r.size;
    }
    r.sacked = true;
    this.sackedBytes += r.size;
    if (this.sackedBytes === r.size || seqGT(r.end, this.highestSacked)) this.highestSacked = r.end;
  }

  markLost(r: SentSegment): void {
    if (r.lost || r.sacked) return;
    r.lost = true;
    this.lostBytes += r.size;
  }

  /** A lost record was sent again: it is in flight once more. */
  retransmitted(r: SentSegment, now: number): void {
    if (r.lost) {
      r.lost = false;
      this.lostBytes -= r.size;
    }
    r.xmitTime = now;
    r.xmitCount++;
  }

  /** Index of the first record ending after `seq` (binary search; records are in sequence order). */
  indexAfter(seq: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seqLEQ(this.at(mid).end, seq)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first lost record, or -1. */
  firstLost(): number {
    if (this.lostBytes === 0) return -1;
    for (let i = 0; i < this.count; i++) if (this.at(i).lost) return i;
    return -1;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
    this.sackedBytes = 0;
    this.lostBytes = 0;
  }

  private forget(r: SentSegment): void {
    if (r.sacked) this.sackedBytes -= r.size;
    if (r.lost) this.lostBytes -= r.size;
    r.sacked = false;
    r.lost = false;
  }

  private grow(): void {
    const old = this.ring;
    const next: SentSegment[] = [];
    for (let i = 0; i < this.count; i++) next.push(old[(this.head + i) % old.length]!);
    const size = Math.max(16, old.length * 2);
    while (next.length < size) next.push(new SentSegment());
    this.ring = next;
    this.head = 0;
  }
}
