// Which allowed names this sandbox's DNS proxy resolved to which addresses, and until when.
// A pin lasts the record's TTL plus a grace period: programs cache answers past their TTL (and
// connection pools reuse addresses), so the grace keeps a well-behaved program from being cut off.

/** The time pins expire by: monotonic milliseconds (the stack's clocks fit; tests pass a ManualClock). */
export interface PinClock {
  now(): number;
}

export const monotonicClock: PinClock = { now: () => performance.now() };

export const DEFAULT_PIN_GRACE_MS = 5 * 60_000;
export const MIN_PIN_GRACE_MS = 30_000;

export class PinTable {
  /** address (canonical text) → name → expiry time (clock ms). */
  private readonly byAddress = new Map<string, Map<string, number>>();
  private readonly graceMs: number;
  private lastSweep: number;

  constructor(
    private readonly clock: PinClock,
    graceMs = DEFAULT_PIN_GRACE_MS,
  ) {
    this.graceMs = Math.max(graceMs, MIN_PIN_GRACE_MS);
    this.lastSweep = clock.now();
  }

  /** Addresses with a live (or not yet swept) pin. */
  get size(): number {
    return this.byAddress.size;
  }

  pin(name: string, address: string, ttlSeconds: number): void {
    const now = this.clock.now();
    // A long run resolves many names: drop the expired pins of every address now and then, not only
    // of those looked up again, so the table follows what is live.
    if (now - this.lastSweep >= this.graceMs) {
      this.lastSweep = now;
      for (const address of [...this.byAddress.keys()]) this.names(address);
    }
    const expires = now + Math.max(0, ttlSeconds) * 1000 + this.graceMs;
    let names = this.byAddress.get(address);
    if (!names) this.byAddress.set(address, (names = new Map()));
    names.set(name, Math.max(expires, names.get(name) ?? 0));
  }

  /** The names pinned to `address` now, in the order each was first pinned (pinning again keeps its place); expired pins are dropped. */
  names(address: string): string[] {
    const names = this.byAddress.get(address);
    if (!names) return [];
    const now = this.clock.now();
    for (const [name, expires] of names) if (expires <= now) names.delete(name);
    if (names.size === 0) this.byAddress.delete(address);
    return [...names.keys()];
  }
}
