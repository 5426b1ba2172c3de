// Every egress event goes three ways: the pino log, the Egress object's events, and the stats behind
// the summary and the learned allowlist. Log levels: denials are 'warn' (the one line a user sees by
// default); allowed lookups, flows and flow ends are 'debug' when enforcing and 'info' in audit mode,
// whose point is to log it all. Cap hits are 'warn', at most one line per cap per second (limits.ts).
import type { EventEmitter } from 'node:events';
import type { AuditLog } from './logger.js';
import { printable } from '../dns/names.js';
import type { Attribution } from './attribution.js';
import type { PolicyChangeEvent } from '../live-policy.js';
import type { AskEvent } from '../ask/asker.js';
import { describeRequest } from '../ask/request.js';
import { byLabel, describeFlow, type DnsEvent, type FlowEndEvent, type FlowEvent } from './events.js';
import { LimitReporter, type AuditLimitName, type LimitEvent } from './limits.js';
import type { EgressStats } from './summary.js';

export class Auditor {
  private readonly allowedLevel: 'debug' | 'info';
  private readonly limits = new LimitReporter((e) => this.limit(e));

  constructor(
    private readonly logger: AuditLog,
    private readonly events: EventEmitter,
    readonly stats: EgressStats,
    audit: boolean,
  ) {
    this.allowedLevel = audit ? 'info' : 'debug';
  }

  dns(e: DnsEvent): void {
    this.stats.dns(e);
    const what = `dns ${e.type} ${e.name}${by(e)}`;
    if (e.verdict === 'deny') {
      this.logger.warn({ event: 'dns', ...e }, `denied ${what}: ${e.reason}`);
      this.events.emit('deny', e);
    } else if (e.verdict === 'allow') {
      const answers = e.answers.length ? e.answers.join(', ') : e.rcode;
      this.logger[e.dropped.length ? 'warn' : this.allowedLevel]({ event: 'dns', ...e }, `${what}: ${answers}${e.dropped.length ? `; dropped internal ${e.dropped.join(', ')} (rebinding)` : ''}`);
    } else {
      this.logger[e.verdict === 'fail' ? 'warn' : this.allowedLevel]({ event: 'dns', ...e }, `${what}: ${e.rcode} (${e.reason})`);
    }
    this.events.emit('dns', e);
  }

  flow(e: FlowEvent): void {
    this.stats.flow(e);
    if (e.verdict === 'deny') {
      this.logger.warn({ event: 'flow', ...e }, `denied ${describeFlow(e)}${by(e)}: ${e.reason}`);
      this.events.emit('flow', e);
      this.events.emit('deny', e);
      return;
    }
    this.logger[this.allowedLevel]({ event: 'flow', ...e }, `allowed ${describeFlow(e)}${by(e)}: ${e.reason}`);
    this.events.emit('flow', e);
  }

  /** The policy changed while the sandbox runs (live-policy.ts): always logged, at info. */
  policyChange(e: PolicyChangeEvent): void {
    const replaced = e.replaced.length ? `, replacing ${e.replaced.map((r) => `"${r}"`).join(', ')}` : '';
    const reset = e.reset ? `; ${e.reset} open flow${e.reset === 1 ? '' : 's'} reset` : '';
    this.logger.info({ event: 'policy', ...e }, `policy: ${e.action} rule "${e.rule}" added by ${e.origin}${replaced}${reset}`);
    this.events.emit('policy', e);
  }

  /** Ask mode answered a question (ask/asker.ts), at info; a no at warn. */
  ask(e: AskEvent): void {
    const what = describeRequest(e.request);
    this.logger[e.answer === 'deny' ? 'warn' : 'info']({ event: 'ask', ...e }, `ask: ${printable(what)}${by(e.request)}: ${e.note}`);
    this.events.emit('ask', e);
  }

  /** A cap refused something; logged and emitted as a 'limit' event, rate-limited per cap. */
  readonly limitHit = (limit: AuditLimitName, value: number, detail: string): void => this.limits.hit(limit, value, detail);

  /** Reports the cap hits still being counted. */
  close(): void {
    this.limits.close();
  }

  private limit(e: LimitEvent): void {
    const times = e.count > 1 ? ` (${e.count} times)` : '';
    this.logger.warn({ event: 'limit', ...e }, `limit ${e.limit} = ${e.value} reached${times}: ${e.detail}`);
    this.events.emit('limit', e);
  }

  flowEnd(e: FlowEndEvent): void {
    this.stats.flowEnd(e);
    const how = e.error ? `, ${e.error}` : '';
    // An error on the host's side (refused, reset, timed out upstream) is worth a line; one on the
    // sandbox's side is mostly its own sockets going away as its command exits.
    this.logger[e.error?.startsWith('host ') ? 'info' : this.allowedLevel](
      { event: 'flowEnd', ...e },
      `closed ${describeFlow(e)}: ${e.bytesUp} B up, ${e.bytesDown} B down, ${(e.durationMs / 1000).toFixed(1)} s${how}`,
    );
    this.events.emit('flowEnd', e);
  }
}

/** " by node (esbuild postinstall)" (escaped: the sandbox chose it), or nothing without attribution. */
function by(e: { by?: Attribution | null }): string {
  const label = byLabel(e);
  return label === null ? '' : ` by ${printable(label)}`;
}
