// The audit events: logged through pino and emitted by the Egress object ('dns', 'flow', 'deny',
// 'flowEnd') with the same fields. 'deny' carries a denied FlowEvent or a denied DnsEvent.
import type { FlowVia } from '../policy/policy.js';
import type { Attribution } from './attribution.js';
import type { Proto } from '../policy/rule.js';

export type { DnsEvent } from '../dns/proxy.js';
export type { LimitEvent } from './limits.js';
export type { Attribution } from './attribution.js';

export interface FlowEvent {
  flowId: number;
  proto: Proto;
  src: string;
  srcPort: number;
  dst: string;
  port: number;
  /** The allowed name the flow goes to (pinned to dst, or its SNI/Host), when one is known. */
  name: string | null;
  verdict: 'allow' | 'deny';
  reason: string;
  via?: FlowVia;
  /** 'inbound': a connection to a published port (-p): src is the host client, dst and port the sandbox's. */
  direction?: 'inbound';
  /** The sandbox process that opened it (attribution.ts); null: unknown (gone before it was read). */
  by?: Attribution | null;
}

export interface FlowEndEvent {
  flowId: number;
  proto: Proto;
  dst: string;
  port: number;
  name: string | null;
  /** Bytes from the sandbox to the destination, and back. */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** Why it ended abnormally (the host refused, a reset, ...). */
  error?: string;
  /** 'inbound' for a published port (-p); bytesUp is then what the sandbox sent, bytesDown what it received. */
  direction?: 'inbound';
}

/** Who a flow or query came from, for messages and tables: its label, "unknown", or null when not looked up. */
export function byLabel(e: { by?: Attribution | null }): string | null {
  if (e.by === undefined) return null;
  return e.by ? e.by.label : 'unknown';
}

/** "tcp registry.npmjs.org:443 (104.16.0.35)", or "tcp 192.0.2.1:443" when no name is known. */
export function describeFlow(e: { proto: Proto; dst: string; port: number; name: string | null; direction?: 'inbound' }): string {
  const host = e.dst.includes(':') ? `[${e.dst}]` : e.dst;
  if (e.direction === 'inbound') return `inbound ${e.proto} ${host}:${e.port}`;
  return e.name ? `${e.proto} ${e.name}:${e.port} (${e.dst})` : `${e.proto} ${host}:${e.port}`;
}
