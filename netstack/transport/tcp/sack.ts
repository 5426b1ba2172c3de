// The SACK blocks the receiver reports (RFC 2018 §4): the block holding the most recently received
// out-of-order segment first, then the other most recent blocks, each a contiguous run of queued data.
import { seqGEQ, seqLEQ } from './seqnum.js';

export const MAX_SACK_BLOCKS = 4;

export class SackBlocks {
  /** [start0, end0, start1, end1, ...], most recent first. */
  readonly blocks: number[] = new Array<number>(MAX_SACK_BLOCKS * 2).fill(0);
  count = 0;

  /** Records that the run [start, end) just grew or appeared. */
  update(start: number, end: number): void {
    const next: number[] = [start, end];
    for (let b = 0; b < this.count; b++) {
      const s = this.blocks[b * 2]!;
      const e = this.blocks[b * 2 + 1]!;
      // A block inside the new run merged into it.
      if (seqGEQ(s, start) && seqLEQ(e, end)) continue;
      if (next.length < MAX_SACK_BLOCKS * 2) next.push(s, e);
    }
    for (let k = 0; k < next.length; k++) this.blocks[k] = next[k]!;
    this.count = next.length / 2;
  }

  /** Forgets blocks RCV.NXT has passed. */
  advance(rcvNxt: number): void {
    let w = 0;
    for (let b = 0; b < this.count; b++) {
      const s = this.blocks[b * 2]!;
      const e = this.blocks[b * 2 + 1]!;
      if (seqLEQ(e, rcvNxt)) continue;
      this.blocks[w * 2] = s;
      this.blocks[w * 2 + 1] = e;
      w++;
    }
    this.count = w;
  }

  clear(): void {
    this.count = 0;
  }
}
