// Cap hits, rate-limited for the audit log. The stack reports a hit every time a cap refuses something,
// which under a flood is every packet; the log gets at most one event per cap per interval, carrying
// how many hits it stands for, so a flood costs a line a second and no hit goes uncounted.
import type { LimitName } from '../../../netstack/index.js';

/** The stack's caps and the supervisor's own: open flows, DNS queries waiting for the upstream. */
export type AuditLimitName = LimitName | 'flows' | 'dns-in-flight' | 'dns-tcp' | 'ask-pending';

export interface LimitEvent {
  limit: AuditLimitName;
  /** The configured cap. */
  value: number;
  /** The latest hit's description. */
  detail: string;
  /** Hits this event stands for (1 for the first hit after a quiet interval). */
  count: number;
}

interface Window {
  openedAt: number;
  pending: LimitEvent | null;
  timer: NodeJS.Timeout | null;
}

export class LimitReporter {
  private readonly windows = new Map<AuditLimitName, Window>();

  constructor(
    private readonly emit: (e: LimitEvent) => void,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  hit(limit: AuditLimitName, value: number, detail: string): void {
    const t = this.now();
    let w = this.windows.get(limit);
    if (!w) {
      w = { openedAt: -Infinity, pending: null, timer: null };
      this.windows.set(limit, w);
    }
    if (!w.timer && t - w.openedAt >= this.intervalMs) {
      w.openedAt = t;
      this.emit({ limit, value, detail, count: 1 });
      return;
    }
    w.pending = { limit, value, detail, count: (w.pending?.count ?? 0) + 1 };
    if (!w.timer) {
      const window = w;
      window.timer = setTimeout(() => this.flush(window), Math.max(0, window.openedAt + this.intervalMs - t));
      window.timer.unref();
    }
  }

  /** Reports the hits still being counted (at shutdown). */
  close(): void {
    for (const w of this.windows.values()) this.flush(w);
  }

  private flush(w: Window): void {
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    if (!w.pending) return;
    w.openedAt = this.now();
    this.emit(w.pending);
    w.pending = null;
  }
}
