import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { ManualClock } from '../../netstack/stack/manual-clock.js';
import { Auditor } from '../../src/egress/audit/auditor.js';
import type { FlowEvent } from '../../src/egress/audit/events.js';
import { EgressStats } from '../../src/egress/audit/summary.js';
import type { EgressForwarder } from '../../src/egress/forwarder/index.js';
import { LivePolicy, type PolicyChangeEvent } from '../../src/egress/live-policy.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';

function setup(rules: string) {
  const policy = Policy.fromAllowlists([parse(rules, 'test.allow')], { clock: new ManualClock() });
  const events = new EventEmitter();
  const changes: PolicyChangeEvent[] = [];
  events.on('policy', (e: PolicyChangeEvent) => changes.push(e));
  const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), false);
  const open: { flow: FlowEvent; cut: (reason: string) => void }[] = [];
  const cuts: { flowId: number; reason: string }[] = [];
  const flow = (flowId: number, dst: string, port: number, name: string | null, proto: 'tcp' | 'udp' = 'tcp') =>
    open.push({ flow: { flowId, proto, src: '10.0.2.100', srcPort: 40000 + flowId, dst, port, name, verdict: 'allow', reason: 'x' }, cut: (reason) => cuts.push({ flowId, reason }) });
  const forwarder = { relayedFlows: () => open } as unknown as EgressForwarder;
  return { policy, live: new LivePolicy(policy, forwarder, auditor), changes, flow, cuts };
}

const tcp = (addr: string, port: number) => ({ proto: 'tcp' as const, addr, port });

describe('live policy', () => {
  it('opens a denied name and address from the next lookup and flow on, as an audit event', () => {
    const { policy, live, changes } = setup('app.example\n');
    expect(policy.resolvable('late.example').allowed).toBe(false);
    live.allow('late.example');
    expect(policy.resolvable('late.example').allowed).toBe(true);
    policy.pin('late.example', '192.0.2.7', 60);
    expect(policy.decide(tcp('192.0.2.7', 443)).verdict).toBe('allow');
    expect(policy.decide(tcp('198.51.100.1', 22)).verdict).toBe('deny');
    live.allow('198.51.100.0/24:22');
    expect(policy.decide(tcp('198.51.100.1', 22)).verdict).toBe('allow');
    expect(changes).toEqual([
      { action: 'allow', rule: 'late.example', origin: 'sandbox.allow', replaced: [], reset: 0 },
      { action: 'allow', rule: '198.51.100.0/24:22', origin: 'sandbox.allow', replaced: [], reset: 0 },
    ]);
    expect(live.rules().map((r) => r.text)).toEqual(['app.example', 'late.example', '198.51.100.0/24:22']);
  });

  it('replaces the rule of the same scope with the other verdict, so allow after deny (and back) takes effect', () => {
    const { policy, live, changes } = setup('app.example\n!blocked.example\n');
    live.allow('blocked.example');
    expect(policy.resolvable('blocked.example').allowed).toBe(true);
    expect(changes[0]).toMatchObject({ replaced: ['!blocked.example'] });
    live.deny('app.example');
    expect(policy.resolvable('app.example').allowed).toBe(false);
    expect(live.rules().map((r) => r.text)).toEqual(['blocked.example', '!app.example']);
    // A narrower allow stays: only the exact scope is replaced, and deny rules still win.
    live.allow('app.example:443');
    expect(policy.resolvable('app.example').allowed).toBe(false);
  });

  it('resets, when asked, the open flows the new deny covers (by address or by name), and only those', () => {
    const { policy, live, changes, flow, cuts } = setup('app.example\nother.example\n192.0.2.0/24\n');
    policy.pin('app.example', '203.0.113.5', 60);
    flow(1, '203.0.113.5', 443, 'app.example');
    flow(2, '203.0.113.6', 443, 'other.example');
    flow(3, '192.0.2.9', 22, null);
    flow(4, '192.0.2.9', 80, null);
    live.deny('app.example');
    expect(cuts).toEqual([]); // not asked: open flows run to their end
    live.deny('192.0.2.9:22', { resetFlows: true });
    expect(cuts.map((c) => c.flowId)).toEqual([3]);
    live.deny('!app.example', { resetFlows: true });
    expect(cuts.map((c) => c.flowId)).toEqual([3, 1]);
    expect(cuts[0]!.reason).toMatch(/denied by rule "!192\.0\.2\.9:22" \(sandbox\.deny\), added while the flow was open/);
    expect(changes.map((c) => c.reset)).toEqual([0, 1, 1]);
  });

  it('refuses a bad rule, and a deny rule given to allow, with one sentence naming the fix', () => {
    const { live, changes } = setup('');
    expect(() => live.allow('*.com')).toThrow(/sandbox\.allow: bad rule "\*\.com"/);
    expect(() => live.allow('!x.example')).toThrow(/is a deny rule; give it to deny\(\) instead\./);
    expect(changes).toEqual([]);
  });
});
