// Round-trip time estimation and the retransmission timeout, per RFC 6298 (the 200 ms floor of
// Linux and gVisor instead of RFC 6298's 1 s).

export class RttEstimator {
  srtt = 0;
  rttvar = 0;
  minRtt = Infinity;
  rto: number;
  private hasSample = false;

  constructor(
    initialRto: number,
    private readonly minRto: number,
    private readonly maxRto: number,
  ) {
    this.rto = initialRto;
  }

  get measured(): boolean {
    return this.hasSample;
  }

  sample(rtt: number): void {
    if (rtt < 0) return;
    if (!this.hasSample) {
      this.srtt = rtt;
      this.rttvar = rtt / 2;
      this.hasSample = true;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - rtt);
      this.srtt = 0.875 * this.srtt + 0.125 * rtt;
    }
    if (rtt < this.minRtt) this.minRtt = rtt;
    this.rto = Math.min(this.maxRto, Math.max(this.minRto, this.srtt + Math.max(1, 4 * this.rttvar)));
  }

  /** The RTO after `backoff` consecutive expiries. */
  backedOff(backoff: number): number {
    return Math.min(this.maxRto, this.rto * 2 ** backoff);
  }
}
