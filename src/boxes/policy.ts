// A running box's egress policy, changed through its control socket (`tapbox policy NAME`, the
// library's box.allow / deny / policy): the daemon applies the change with the sandbox's live policy
// (src/egress/live-policy.ts), as a one-shot run's sandbox.allow / deny does. Every rule of a request
// is checked before any is applied, so a bad one changes nothing. Each change is a 'policy' event in the
// box's audit log, and is kept for `tapbox policy NAME show`.
import { TapboxError } from '../errors.js';
import { allowRule, denyRule, type PolicyChangeEvent } from '../egress/live-policy.js';
import type { Sandbox } from '../supervisor/sandbox.js';
import type { Request } from './control.js';

/** Who changed the policy, as the audit log tells it. */
export const POLICY_ORIGIN = 'tapbox policy';

export interface PolicyChange extends PolicyChangeEvent {
  /** When (ISO 8601). */
  at: string;
}

export interface BoxPolicy {
  /** The rules in force now, in allowlist syntax. */
  rules: string[];
  /** The changes made since the box started, oldest first. */
  changes: PolicyChange[];
}

/** The policy changes of `sandbox`, as they come. */
export class PolicyChanges {
  readonly list: PolicyChange[] = [];

  constructor(sandbox: Sandbox) {
    sandbox.on('policy', (e) => this.list.push({ at: new Date().toISOString(), ...e }));
  }
}

type PolicyRequest = Extract<Request, { op: 'allow' | 'deny' | 'policy' }>;

/** Answers a policy request: the policy now (show), or the changes this request made. */
export function applyPolicy(req: PolicyRequest, name: string, sandbox: Sandbox, changes: PolicyChanges): BoxPolicy | PolicyChange[] {
  const net = sandbox.options.net;
  if (net !== 'tap') throw new TapboxError('EUSAGE', `box ${name} has no egress policy to change (it runs with --net ${net}); start a box with --net tap (or an --allow rule) to have one.`);
  if (req.op === 'policy') return { rules: sandbox.rules().map((r) => r.text), changes: changes.list };
  const rules = Array.isArray(req.rules) ? req.rules : [];
  if (rules.length === 0 || rules.some((r) => typeof r !== 'string')) {
    throw new TapboxError('EUSAGE', `give the rules to ${req.op}, e.g. \`tapbox policy ${name} ${req.op} example.com:443\`.`);
  }
  for (const text of rules) {
    if (req.op === 'deny') denyRule(text, POLICY_ORIGIN);
    else if (text.trim().startsWith('!')) throw new TapboxError('EPOLICY', `"${text.trim()}" is a deny rule; give it to deny instead (\`tapbox policy ${name} deny ${text.trim().slice(1)}\`).`);
    else allowRule(text, POLICY_ORIGIN);
  }
  const before = changes.list.length;
  for (const text of rules) {
    if (req.op === 'allow') sandbox.allow(text, POLICY_ORIGIN);
    else sandbox.deny(text, { resetFlows: req.cut === true }, POLICY_ORIGIN);
  }
  return changes.list.slice(before);
}
