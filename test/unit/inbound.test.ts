// Published connections (-p) as flows (src/egress/forwarder/inbound.ts): they take slots under the flow cap
// (refused past it with a 'flows' limit event and a denied flow), give back their slot when they end,
// and are counted in the summary as destinations of their own with the verdict 'inbound', never
// learned. The relay itself, in a real sandbox: test/integration/ports.test.ts.
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { UdpConn } from '../../netstack/index.js';
import { Auditor } from '../../src/egress/audit/auditor.js';
import type { FlowEndEvent, FlowEvent } from '../../src/egress/audit/events.js';
import type { LimitEvent } from '../../src/egress/audit/limits.js';
import { EgressStats, formatSummary } from '../../src/egress/audit/summary.js';
import { DnsProxy } from '../../src/egress/dns/proxy.js';
import { createForwarder } from '../../src/egress/forwarder/index.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';

function setup(maxFlows?: number) {
  const policy = Policy.fromAllowlists([parse('198.18.0.0/15\n', 'test.allow')], { maxFlows });
  const events = new EventEmitter();
  const seen = { flows: [] as FlowEvent[], ends: [] as FlowEndEvent[], limits: [] as LimitEvent[] };
  events.on('flow', (e: FlowEvent) => seen.flows.push(e));
  events.on('flowEnd', (e: FlowEndEvent) => seen.ends.push(e));
  events.on('limit', (e: LimitEvent) => seen.limits.push(e));
  const stats = new EgressStats();
  const auditor = new Auditor(pino({ level: 'silent' }), events, stats, false);
  const dns = new DnsProxy({ policy, upstream: { resolve: async () => null }, hostAddrs: new Set() });
  const forwarder = createForwarder({ policy, dns, auditor, sandbox: { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' }, sniCheck: false });
  return { forwarder, stats, auditor, seen };
}

const client = { addr: '127.0.0.1', port: 40000 };
const sandbox = { addr: '10.0.2.100', port: 8000 };

describe('inbound flows', () => {
  it('take a slot under the flow cap; past it they are refused with a limit event, and a slot given back is reused', () => {
    const { forwarder, auditor, seen } = setup(1);
    const first = forwarder.inbound.open('tcp', client, sandbox, 'published port (-p 8080:8000)');
    expect(first).not.toBeNull();
    expect(forwarder.inbound.open('tcp', { ...client, port: 40001 }, sandbox, 'published port (-p 8080:8000)')).toBeNull();
    first!.end(10, 20);
    first!.end(10, 20); // once only
    expect(forwarder.inbound.open('udp', { ...client, port: 40002 }, sandbox, 'published port (-p 8080:8000/udp)')).not.toBeNull();
    auditor.close();
    expect(seen.flows.map((e) => [e.direction, e.verdict, e.proto, e.src, e.srcPort, e.dst, e.port])).toEqual([
      ['inbound', 'allow', 'tcp', '127.0.0.1', 40000, '10.0.2.100', 8000],
      ['inbound', 'deny', 'tcp', '127.0.0.1', 40001, '10.0.2.100', 8000],
      ['inbound', 'allow', 'udp', '127.0.0.1', 40002, '10.0.2.100', 8000],
    ]);
    expect(seen.flows[1]!.reason).toBe('already 1 flows open (the connection limit)');
    expect(seen.ends).toEqual([expect.objectContaining({ flowId: seen.flows[0]!.flowId, direction: 'inbound', bytesUp: 10, bytesDown: 20 })]);
    expect(seen.limits.map((e) => [e.limit, e.value, e.count])).toEqual([['flows', 1, 1]]);
    forwarder.close();
  });

  it('share the cap with outbound flows', async () => {
    const { forwarder, seen } = setup(2);
    const outbound = {
      id: { family: 4 as const, srcAddr: '10.0.2.100', srcPort: 1234, dstAddr: '198.18.0.1', dstPort: 9 },
      firstPayload: Buffer.from('x'),
      rejected: null as string | null,
      accept: (): UdpConn => ({ id: outbound.id, onMessage: null, onClose: null, send() {}, sendIcmp() {}, close() {}, relay: () => null }),
      reject(how: string) {
        outbound.rejected = how;
      },
    };
    forwarder.udp(outbound);
    await new Promise((r) => setTimeout(r, 50));
    expect(outbound.rejected).toBeNull();
    expect(forwarder.inbound.open('tcp', client, sandbox, 'x')).not.toBeNull();
    expect(forwarder.inbound.open('tcp', { ...client, port: 40001 }, sandbox, 'x')).toBeNull();
    expect(seen.flows.map((e) => [e.direction ?? 'outbound', e.verdict])).toEqual([
      ['outbound', 'allow'],
      ['inbound', 'allow'],
      ['inbound', 'deny'],
    ]);
    forwarder.close();
  });

  it('are destinations of their own in the summary, verdict inbound, and are not learned', () => {
    const { forwarder, stats } = setup();
    const a = forwarder.inbound.open('tcp', client, sandbox, 'x')!;
    const b = forwarder.inbound.open('tcp', { ...client, port: 40001 }, sandbox, 'x')!;
    const six = forwarder.inbound.open('tcp', { addr: '::1', port: 40002 }, { addr: 'fd00::100', port: 8000 }, 'x')!;
    a.end(100, 5);
    b.end(200, 7, 'sandbox ECONNREFUSED');
    six.end(1, 1);
    const summary = stats.summary();
    expect(summary.destinations).toEqual([
      { destination: '[fd00::100]:8000', verdict: 'inbound', connections: 1, denied: 0, lookups: 0, bytesUp: 1, bytesDown: 1 },
      { destination: '10.0.2.100:8000', verdict: 'inbound', connections: 2, denied: 0, lookups: 0, bytesUp: 300, bytesDown: 12 },
    ]);
    expect(summary.totals).toMatchObject({ connections: 3, bytesUp: 301, bytesDown: 13 });
    expect(stats.learnedFlows()).toEqual([]);
    expect(formatSummary(summary, false)).toMatch(/\n10\.0\.2\.100:8000 +inbound +2 +0 +0 +300 B +12 B\n/);
    forwarder.close();
  });
});
