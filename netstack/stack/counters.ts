// Counters the stack keeps for tests and diagnostics: frames in and out, and drops by reason.

export class StackCounters {
  framesIn = 0;
  framesOut = 0;
  /** Dropped (or refused) packets, by a short reason such as "ipv4-bad-checksum". */
  readonly drops: Record<string, number> = {};

  drop(reason: string): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }
}
