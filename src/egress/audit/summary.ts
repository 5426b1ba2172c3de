// What the sandbox talked to: per destination (name when one is known, else address), the verdict,
// connections and bytes. Printed as a table at exit and written as the JSON report. Connections into the
// sandbox through a published port (-p) are destinations of their own, ADDR:PORT of the sandbox, with
// the verdict 'inbound' (up: what the sandbox sent); they are not learned.
import { formatBytes } from '../../units.js';
import { printable } from '../dns/names.js';
import { byLabel, type DnsEvent, type FlowEndEvent, type FlowEvent } from './events.js';

export interface DestinationSummary {
  destination: string;
  verdict: 'allowed' | 'denied' | 'mixed' | 'inbound';
  /** Allowed flows, denied flows, DNS lookups (allowed or not). */
  connections: number;
  denied: number;
  lookups: number;
  bytesUp: number;
  bytesDown: number;
  /** The sandbox processes behind its flows and lookups (attribution.ts), at most MAX_BY; absent without attribution. */
  by?: string[];
}

export interface EgressSummary {
  destinations: DestinationSummary[];
  totals: { connections: number; denied: number; lookups: number; deniedLookups: number; bytesUp: number; bytesDown: number };
}

/** One learned destination: a name or address, a port, the protocols seen and how often. */
export interface LearnedFlow {
  target: string;
  isName: boolean;
  port: number;
  protos: Set<'tcp' | 'udp'>;
  hits: number;
  /** The processes behind its flows (labels; at most MAX_BY). */
  by: Set<string>;
}

/** Distinct processes kept per destination or learned rule (the first ones seen). */
const MAX_BY = 8;

interface DestinationStats {
  inbound: boolean;
  allowed: number;
  denied: number;
  lookups: number;
  deniedLookups: number;
  bytesUp: number;
  bytesDown: number;
  by: Set<string> | null;
}

/** A flow still open: where it goes and what it relayed so far. */
export interface OpenFlowBytes {
  dst: string;
  port: number;
  name: string | null;
  direction?: 'inbound';
  bytesUp: number;
  bytesDown: number;
}

export class EgressStats {
  private readonly destinations = new Map<string, DestinationStats>();
  private readonly learned = new Map<string, LearnedFlow>();
  /** Names the sandbox looked up, with how many times. */
  readonly lookedUp = new Map<string, number>();

  dns(e: DnsEvent): void {
    const d = this.destination(e.name);
    addBy(d, e);
    d.lookups++;
    if (e.verdict === 'deny') d.deniedLookups++;
    this.lookedUp.set(e.name, (this.lookedUp.get(e.name) ?? 0) + 1);
  }

  flow(e: FlowEvent): void {
    const d = this.destination(keyOf(e), e.direction === 'inbound');
    addBy(d, e);
    if (e.verdict === 'deny') {
      d.denied++;
      return;
    }
    d.allowed++;
    if (e.direction === 'inbound') return;
    const target = e.name ?? e.dst;
    const key = `${target} ${e.port}`;
    const learned = this.learned.get(key) ?? { target, isName: e.name !== null, port: e.port, protos: new Set(), hits: 0, by: new Set() };
    learned.protos.add(e.proto);
    const label = byLabel(e);
    if (label !== null && learned.by.size < MAX_BY) learned.by.add(label);
    learned.hits++;
    this.learned.set(key, learned);
  }

  flowEnd(e: FlowEndEvent): void {
    const d = this.destination(keyOf(e), e.direction === 'inbound');
    d.bytesUp += e.bytesUp;
    d.bytesDown += e.bytesDown;
  }

  learnedFlows(): LearnedFlow[] {
    return [...this.learned.values()];
  }

  /** The figures so far; `open` adds the bytes the flows still open relayed (ended ones are counted at flowEnd). */
  summary(open: readonly OpenFlowBytes[] = []): EgressSummary {
    const extra = new Map<string, { bytesUp: number; bytesDown: number }>();
    for (const f of open) {
      const key = keyOf(f);
      const e = extra.get(key) ?? { bytesUp: 0, bytesDown: 0 };
      e.bytesUp += f.bytesUp;
      e.bytesDown += f.bytesDown;
      extra.set(key, e);
    }
    const destinations: DestinationSummary[] = [...this.destinations]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([destination, d]) => ({
        destination,
        verdict: verdictOf(d),
        connections: d.allowed,
        denied: d.denied,
        lookups: d.lookups,
        bytesUp: d.bytesUp + (extra.get(destination)?.bytesUp ?? 0),
        bytesDown: d.bytesDown + (extra.get(destination)?.bytesDown ?? 0),
        ...(d.by ? { by: [...d.by] } : {}),
      }));
    const sum = (f: (d: DestinationSummary) => number) => destinations.reduce((n, d) => n + f(d), 0);
    return {
      destinations,
      totals: {
        connections: sum((d) => d.connections),
        denied: sum((d) => d.denied),
        lookups: sum((d) => d.lookups),
        deniedLookups: [...this.destinations.values()].reduce((n, d) => n + d.deniedLookups, 0),
        bytesUp: sum((d) => d.bytesUp),
        bytesDown: sum((d) => d.bytesDown),
      },
    };
  }

  private destination(key: string, inbound = false): DestinationStats {
    let d = this.destinations.get(key);
    if (!d) this.destinations.set(key, (d = { inbound, allowed: 0, denied: 0, lookups: 0, deniedLookups: 0, bytesUp: 0, bytesDown: 0, by: null }));
    return d;
  }
}

function addBy(d: DestinationStats, e: Parameters<typeof byLabel>[0]): void {
  const label = byLabel(e);
  if (label === null) return;
  d.by ??= new Set();
  if (d.by.size < MAX_BY) d.by.add(label);
}

/** A flow's destination: its name, else its address; for an inbound flow, the sandbox's ADDR:PORT. */
function keyOf(e: { dst: string; port: number; name: string | null; direction?: 'inbound' }): string {
  if (e.direction === 'inbound') return `${e.dst.includes(':') ? `[${e.dst}]` : e.dst}:${e.port}`;
  return e.name ?? e.dst;
}

function verdictOf(d: DestinationStats): DestinationSummary['verdict'] {
  if (d.inbound) return 'inbound';
  const denied = d.denied + d.deniedLookups > 0;
  const allowed = d.allowed > 0 || d.lookups > d.deniedLookups;
  return denied && allowed ? 'mixed' : denied ? 'denied' : 'allowed';
}

/** The summary as a table: box-drawn for a terminal, plain aligned text otherwise. */
export function formatSummary(s: EgressSummary, terminal: boolean): string {
  // The "by" column when processes were attributed (attribution.ts).
  const withBy = s.destinations.some((d) => d.by);
  const header = ['destination', 'verdict', 'conns', 'denied', 'lookups', 'up', 'down', ...(withBy ? ['by'] : [])];
  // Destinations and processes are named by the sandbox: escaped, so that no control sequence reaches the terminal.
  const rows = s.destinations.map((d) => [
    printable(d.destination),
    d.verdict,
    String(d.connections),
    String(d.denied),
    String(d.lookups),
    formatBytes(d.bytesUp),
    formatBytes(d.bytesDown),
    ...(withBy ? [printable((d.by ?? []).join(', '))] : []),
  ]);
  const t = s.totals;
  rows.push(['total', '', String(t.connections), String(t.denied), String(t.lookups), formatBytes(t.bytesUp), formatBytes(t.bytesDown), ...(withBy ? [''] : [])]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const cells = (r: string[]) => r.map((c, i) => (i >= 2 && i <= 6 ? c.padStart(widths[i]) : c.padEnd(widths[i])));
  if (!terminal) {
    return ['tapbox egress summary', ...[header, ...rows].map((r) => cells(r).join('  ').trimEnd())].join('\n') + '\n';
  }
  const line = (l: string, m: string, r: string) => l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r;
  const row = (r: string[]) => `│ ${cells(r).join(' │ ')} │`;
  return [
    'tapbox egress summary',
    line('┌', '┬', '┐'),
    row(header),
    line('├', '┼', '┤'),
    ...rows.slice(0, -1).map(row),
    line('├', '┼', '┤'),
    row(rows[rows.length - 1]),
    line('└', '┴', '┘'),
  ].join('\n') + '\n';
}

