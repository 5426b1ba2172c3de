// Memory shared by every TCP connection. Each connection may buffer up to its configured send and
// receive sizes, but all of them together stay near one budget: past it new connections are refused
// and existing ones are held to a small window and send buffer, so they keep moving (more slowly)
// while the buffered bytes drain, instead of stalling. Out-of-order data has a global cap of its own,
// since the sandbox can make every connection hold some without ever filling the holes.

/** What an endpoint charges against the budget; kept in sync after every event that changes it. */
export class BufferBudget {
  /** Bytes held in every send buffer, unread receive buffer and out-of-order queue. */
  used = 0;
  /** Out-of-order bytes of every connection (counted in `used` too). */
  outOfOrder = 0;

  constructor(
    readonly capacity: number,
    readonly outOfOrderCapacity: number,
    /** What a connection may still buffer each way once the budget is spent. */
    readonly floor: number,
  ) {}

  get exhausted(): boolean {
    return this.used >= this.capacity;
  }

  /** A connection's buffer size: `configured` under the budget, the floor past it. */
  allowance(configured: number): number {
    return this.used < this.capacity ? configured : Math.min(configured, this.floor);
  }
}
