// The supervisor's own health, as 'stats' lines in the audit log: RSS, open fds, event-loop delay and
// what the stack holds (connections, pending dials, UDP sessions, buffered and reassembly bytes).
// Off unless TAPBOX_STATS_MS is set (the soak, bench/soak.ts, sets it); one line per interval.
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { AuditLog } from './logger.js';

export interface StackGauges {
  tcpConnections: number;
  tcpPending: number;
  tcpBufferedBytes: number;
  udpSessions: number;
  reassemblyBytes: number;
  /** The stack's drops so far, by reason (netstack/stack/counters.ts). */
  drops: Record<string, number>;
  /** Frames to the sandbox dropped because the TAP's write queue was full. */
  tapDroppedOut: number;
  /** UDP frames the TAP's native relay carried without the stack, from the sandbox and to it. */
  udpRelayedIn: number;
  udpRelayedOut: number;
}

export interface StatsLine extends Partial<StackGauges> {
  event: 'stats';
  rssBytes: number;
  heapUsedBytes: number;
  fds: number;
  /** Event-loop delay over the interval, ms. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

/** The interval TAPBOX_STATS_MS asks for, or null when stats are off. */
export function statsIntervalFromEnv(env: NodeJS.ProcessEnv = process.env): number | null {
  const ms = Number(env.TAPBOX_STATS_MS);
  return Number.isFinite(ms) && ms >= 100 ? ms : null;
}

/** Logs a stats line every `intervalMs` until the returned stop() (which logs a last one). */
export function startStats(logger: AuditLog, intervalMs: number, gauges: () => StackGauges | null): () => void {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const sample = (): void => {
    let fds = -1;
    try {
      fds = readdirSync('/proc/self/fd').length;
    } catch {
      // not Linux /proc: leave -1
    }
    const mem = process.memoryUsage();
    const line: StatsLine = {
      event: 'stats',
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      fds,
      loopDelayP99Ms: Math.round(delay.percentile(99) / 1e4) / 100,
      loopDelayMaxMs: Math.round(delay.max / 1e4) / 100,
      ...(gauges() ?? {}),
    };
    delay.reset();
    logger.info(line, `stats: rss ${(line.rssBytes / 2 ** 20).toFixed(1)} MiB, ${fds} fds, loop delay p99 ${line.loopDelayP99Ms} ms`);
  };
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    sample();
    delay.disable();
  };
}
