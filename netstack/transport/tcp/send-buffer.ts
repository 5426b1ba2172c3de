// The send buffer: bytes the application wrote, from SND.UNA on. Written Buffers are kept by
// reference (no copy) in a chunk queue; small writes are coalesced into a tail chunk so a chatty
// writer does not produce one chunk per byte. The first tail of a burst is small (a slice of Node's
// Buffer pool: a thousand connections that each wrote a few bytes don't leave 16 MiB of chunks for the
// GC), and each next one twice as big, up to TAIL_CHUNK_MAX. Segments copy straight out of it into the
// outbound frame; a cursor makes the usual in-order reads O(1).

const COALESCE_BELOW = 4096;
const TAIL_CHUNK_MIN = 1024;
const TAIL_CHUNK_MAX = 16 * 1024;

export class SendBuffer {
  /** Bytes held (acknowledged bytes are dropped at once). */
  length = 0;
  private chunks: Buffer[] = [];
  /** Absolute stream offset where each chunk starts. */
  private starts: number[] = [];
  private head = 0;
  /** Absolute offset of the first held byte. */
  private front = 0;
  private tail: Buffer | null = null;
  private tailUsed = 0;
  private nextTailSize = TAIL_CHUNK_MIN;
  private cursor = 0;

  append(data: Buffer): void {
    if (data.length === 0) return;
    const end = this.front + this.length;
    if (data.length < COALESCE_BELOW) {
      if (this.tail && this.chunks.length > this.head && this.tailUsed + data.length <= this.tail.length) {
        data.copy(this.tail, this.tailUsed);
        this.tailUsed += data.length;
        this.chunks[this.chunks.length - 1] = this.tail.subarray(0, this.tailUsed); // the tail is always the last chunk
        this.length += data.length;
        return;
      }
      this.tail = Buffer.allocUnsafe(Math.max(this.nextTailSize, data.length));
      this.nextTailSize = Math.min(2 * this.nextTailSize, TAIL_CHUNK_MAX);
      data.copy(this.tail, 0);
      this.tailUsed = data.length;
      this.push(this.tail.subarray(0, data.length), end);
      this.length += data.length;
      return;
    }
    this.tail = null;
    this.push(data, end);
    this.length += data.length;
  }

  /** Drops `n` acknowledged bytes from the front. */
  consume(n: number): void {
    this.length -= n;
    this.front += n;
    while (this.head < this.chunks.length) {
      const c = this.chunks[this.head]!;
      if (this.starts[this.head]! + c.length > this.front) break;
      this.head++;
    }
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.starts.length = 0;
      this.head = 0;
      this.tail = null;
      this.nextTailSize = TAIL_CHUNK_MIN;
    } else if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks.splice(0, this.head);
      this.starts.splice(0, this.head);
      this.cursor = Math.max(0, this.cursor - this.head);
      this.head = 0;
    }
    if (this.cursor < this.head) this.cursor = this.head;
  }

  /** Copies `len` bytes from `offset` (relative to the front) into `dst` at `dstOff`. */
  copyOut(offset: number, len: number, dst: Buffer, dstOff: number): void {
    let abs = this.front + offset;
    let i = this.cursor;
    if (i < this.head || i >= this.chunks.length || this.starts[i]! > abs) i = this.head;
    while (this.starts[i]! + this.chunks[i]!.length <= abs) i++;
    this.cursor = i;
    while (len > 0) {
      const c = this.chunks[i]!;
      const from = abs - this.starts[i]!;
      const n = Math.min(len, c.length - from);
      c.copy(dst, dstOff, from, from + n);
      dstOff += n;
      abs += n;
      len -= n;
      if (from + n === c.length) i++;
    }
  }

  private push(chunk: Buffer, start: number): void {
    this.chunks.push(chunk);
    this.starts.push(start);
  }
}
