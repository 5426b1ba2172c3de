// The out-of-order queue of the receiver: copies of data that arrived beyond RCV.NXT, sorted by
// sequence number, overlaps trimmed on insert, and capped in bytes (a segment that would exceed the
// cap is dropped; the sender retransmits it once the hole is filled). The same bytes count against the
// global out-of-order cap of the BufferBudget shared by every connection.
import type { BufferBudget } from './budget.js';
import { seqAdd, seqDiff, seqGEQ, seqGT, seqLEQ, seqLT } from './seqnum.js';

interface Piece {
  seq: number;
  data: Buffer;
}

export class SegmentQueue {
  bytes = 0;
  private pieces: Piece[] = [];

  constructor(
    private readonly capacity: number,
    private readonly shared?: BufferBudget,
  ) {}

  get empty(): boolean {
    return this.pieces.length === 0;
  }

  /**
   * Stores the part of `data[off, off+len)` (starting at `seq`) not already held.
   * Returns false when it was dropped for lack of room.
   */
  insert(seq: number, data: Buffer, off: number, len: number): boolean {
    let start = seq;
    let end = seqAdd(seq, len);
    // Drop held pieces the new one covers entirely; trim it against partial overlaps.
    let i = 0;
    while (i < this.pieces.length && seqLEQ(this.pieceEnd(this.pieces[i]!), start)) i++;
    if (i < this.pieces.length && seqLEQ(this.pieces[i]!.seq, start)) {
      start = this.pieceEnd(this.pieces[i]!);
      i++;
    }
    if (seqGEQ(start, end)) return true;
    let j = i;
    while (j < this.pieces.length && seqLEQ(this.pieceEnd(this.pieces[j]!), end) && seqGEQ(this.pieces[j]!.seq, start)) j++;
    if (j < this.pieces.length && seqLT(this.pieces[j]!.seq, end)) end = this.pieces[j]!.seq;
    let removed = 0;
    for (let k = i; k < j; k++) removed += this.pieces[k]!.data.length;
    const add = seqDiff(end, start);
    if (this.bytes - removed + add > this.capacity) return false;
    if (this.shared && this.shared.outOfOrder - removed + add > this.shared.outOfOrderCapacity) return false;
    const copy = Buffer.allocUnsafe(add);
    const from = off + seqDiff(start, seq);
    data.copy(copy, 0, from, from + add);
    this.pieces.splice(i, j - i, { seq: start, data: copy });
    this.bytes += add - removed;
    if (this.shared) this.shared.outOfOrder += add - removed;
    return true;
  }

  /** Removes and returns the next piece that starts at or before `nxt`, trimmed to start at `nxt`. */
  takeAt(nxt: number): Buffer | null {
    while (this.pieces.length > 0) {
      const p = this.pieces[0]!;
      if (seqGT(p.seq, nxt)) return null;
      this.pieces.shift();
      this.bytes -= p.data.length;
      if (this.shared) this.shared.outOfOrder -= p.data.length;
      const skip = seqDiff(nxt, p.seq);
      if (skip < p.data.length) return skip === 0 ? p.data : p.data.subarray(skip);
    }
    return null;
  }

  /** Frees everything held (the connection closed). */
  clear(): void {
    if (this.shared) this.shared.outOfOrder -= this.bytes;
    this.bytes = 0;
    this.pieces = [];
  }

  /** The contiguous run of held data containing `seq`, as [start, end), or null. */
  runContaining(seq: number): [number, number] | null {
    for (let i = 0; i < this.pieces.length; i++) {
      const p = this.pieces[i]!;
      if (seqLEQ(p.seq, seq) && seqLT(seq, this.pieceEnd(p))) {
        let first = i;
        while (first > 0 && this.pieceEnd(this.pieces[first - 1]!) === this.pieces[first]!.seq) first--;
        let last = i;
        while (last + 1 < this.pieces.length && this.pieceEnd(this.pieces[last]!) === this.pieces[last + 1]!.seq) last++;
        return [this.pieces[first]!.seq, this.pieceEnd(this.pieces[last]!)];
      }
    }
    return null;
  }

  private pieceEnd(p: Piece): number {
    return seqAdd(p.seq, p.data.length);
  }
}
