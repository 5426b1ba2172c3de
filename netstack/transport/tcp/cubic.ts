// CUBIC congestion control (RFC 9438): after a loss the window grows along a cubic curve centred on
// the window where the loss happened (W_max), concave up to it, then convex beyond; a Reno-friendly
// estimate keeps it no slower than standard TCP. Windows here are in segments; time in milliseconds.

const C = 0.4;
const BETA = 0.7;
/** RFC 9438 §4.3: alpha of the Reno-friendly estimate so it matches Reno's average rate. */
const ALPHA = (3 * (1 - BETA)) / (1 + BETA);

export class Cubic {
  private wMax = 0;
  private wLastMax = 0;
  private k = 0;
  private epochStart = -1;
  private origin = 0;
  private wEst = 0;

  /** Congestion avoidance for `acked` segments' worth of ACKs; returns the new window. */
  onAck(cwnd: number, acked: number, now: number, srtt: number): number {
    if (this.epochStart < 0) {
      this.epochStart = now;
      if (cwnd < this.wMax) {
        this.k = Math.cbrt((this.wMax - cwnd) / C);
        this.origin = this.wMax;
      } else {
        this.k = 0;
        this.origin = cwnd;
      }
      this.wEst = cwnd;
    }
    const t = (now - this.epochStart) / 1000;
    const target = Math.min(Math.max(this.wCubic(t + srtt / 1000), cwnd), 1.5 * cwnd);
    this.wEst += (ALPHA * acked) / cwnd;
    if (this.wCubic(t) < this.wEst) return Math.max(cwnd, this.wEst);
    return cwnd + ((target - cwnd) / cwnd) * acked;
  }

  /** A congestion event (fast retransmit / RACK loss); returns the new ssthresh. */
  onLoss(cwnd: number): number {
    // Fast convergence: release bandwidth faster when the window keeps shrinking.
    this.wMax = cwnd < this.wLastMax ? (cwnd * (1 + BETA)) / 2 : cwnd;
    this.wLastMax = cwnd;
    this.epochStart = -1;
    return Math.max(cwnd * BETA, 2);
  }

  /** A retransmission timeout: same reduction, and the next growth epoch starts afresh. */
  onTimeout(cwnd: number): number {
    return this.onLoss(cwnd);
  }

  private wCubic(t: number): number {
    return C * (t - this.k) ** 3 + this.origin;
  }
}
