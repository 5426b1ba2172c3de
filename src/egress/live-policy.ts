// Changing the egress policy while the sandbox runs (README "Changing the policy while it runs"):
// the library's sandbox.allow / deny / rules, and a box's `tapbox policy NAME` (src/boxes/), call these.
// A change applies to every decision made after it: DNS lookups, new flows, pins. A new deny rule can
// also cut the open flows it covers (TCP reset, UDP refused with ICMP). Every change is an audit event.
import type { Auditor } from './audit/auditor.js';
import { TapboxError } from '../errors.js';
import type { EgressForwarder } from './forwarder/index.js';
import type { Policy } from './policy/policy.js';
import { parseRule, type Rule } from './policy/rule.js';

export interface PolicyChangeEvent {
  action: 'allow' | 'deny';
  /** The rule as given ("!tracker.example.com" for a deny). */
  rule: string;
  /** Who changed it: "sandbox.allow", "ask: allow for this run", ... */
  origin: string;
  /** The rules it replaced (the same scope with the other verdict). */
  replaced: string[];
  /** Open flows reset because the new deny rule covers them. */
  reset: number;
}

export interface DenyOptions {
  /** Also cut the open flows the new rule covers (default false: they run to their end). */
  resetFlows?: boolean;
}

/** The rule `allow(text)` would add; throws TapboxError EPOLICY on a bad rule or a deny rule. */
export function allowRule(text: string, origin: string): Rule {
  const rule = parseRule(text, origin);
  if (rule.deny) throw new TapboxError('EPOLICY', `${origin}: "${rule.text}" is a deny rule; give it to deny() instead.`);
  return rule;
}

/** The rule `deny(text)` would add ("!" optional); throws TapboxError EPOLICY on a bad rule. */
export function denyRule(text: string, origin: string): Rule {
  const trimmed = text.trim();
  return parseRule(trimmed.startsWith('!') ? trimmed : `!${trimmed}`, origin);
}

export class LivePolicy {
  constructor(
    private readonly policy: Policy,
    private readonly forwarder: EgressForwarder,
    private readonly auditor: Auditor,
  ) {}

  /** Allows `text` (rule syntax, without "!") from now on; throws TapboxError EPOLICY on a bad rule. */
  allow(text: string, origin = 'sandbox.allow'): Rule {
    const rule = allowRule(text, origin);
    const replaced = this.policy.change(rule);
    this.auditor.policyChange({ action: 'allow', rule: rule.text, origin, replaced: replaced.map((r) => r.text), reset: 0 });
    return rule;
  }

  /** Denies `text` (rule syntax; the "!" is optional) from now on; with resetFlows, cuts the open flows it covers. */
  deny(text: string, opts: DenyOptions = {}, origin = 'sandbox.deny'): Rule {
    const rule = denyRule(text, origin);
    const replaced = this.policy.change(rule);
    let reset = 0;
    if (opts.resetFlows) {
      for (const { flow, cut } of this.forwarder.relayedFlows()) {
        if (flow.direction === 'inbound') continue;
        const names = [...new Set([...(flow.name ? [flow.name] : []), ...this.policy.pinnedNames(flow.dst)])];
        if (!this.policy.appliesTo(rule, { proto: flow.proto, addr: flow.dst, port: flow.port }, names)) continue;
        cut(`denied by rule "${rule.text}" (${origin}), added while the flow was open`);
        reset++;
      }
    }
    this.auditor.policyChange({ action: 'deny', rule: rule.text, origin, replaced: replaced.map((r) => r.text), reset });
    return rule;
  }

  /** The rules in force now. */
  rules(): readonly Rule[] {
    return [...this.policy.rules];
  }
}
