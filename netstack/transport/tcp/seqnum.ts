// Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4), like gVisor's seqnum package.

export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
/** a - b as a signed distance. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}
export function seqLT(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
export function seqLEQ(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}
export function seqGT(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}
export function seqGEQ(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}
/** start <= x < start + size. */
export function seqInWindow(x: number, start: number, size: number): boolean {
  return ((x - start) >>> 0) < size;
}
