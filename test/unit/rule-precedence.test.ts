// The rule precedence table (README "Rule precedence"): every pair of rule kinds, in both orders,
// against a flow to api.allowed.test (pinned at 203.0.113.5) on port 9999, over TCP and over UDP.
// Port-less deny rules for the name are apart: they keep the name from resolving at all.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../netstack/stack/manual-clock.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy, type FlowDecision } from '../../src/egress/policy/policy.js';
import type { Proto } from '../../src/egress/policy/rule.js';

const NAME = 'api.allowed.test';
const ADDR = '203.0.113.5';
const PORT = 9999;

/**
 * What a flow gets:
 *  deny     — refused by a deny rule;
 *  ip       — opened by an IP/subnet rule;
 *  open     — opened through the pin for any protocol (the rule names the port, and udp: for UDP);
 *  checked  — opened through the pin for protocols whose name is checked (TLS SNI, HTTP Host, QUIC);
 *  none     — no rule opens it.
 */
type Outcome = 'deny' | 'ip' | 'open' | 'checked' | 'none';

/** Each rule kind alone, written out by hand: [rule, TCP outcome, UDP outcome]. */
const KINDS: [string, Outcome, Outcome][] = [
  [NAME, 'checked', 'checked'],
  ['*.allowed.test', 'checked', 'checked'],
  [`${NAME}:${PORT}`, 'open', 'checked'],
  [`${NAME}:9000-10000`, 'open', 'checked'],
  [`${NAME}:80`, 'none', 'none'],
  [`tcp:${NAME}:${PORT}`, 'open', 'none'],
  [`udp:${NAME}:${PORT}`, 'none', 'open'],
  [`udp:*.allowed.test:${PORT}`, 'none', 'open'],
  [`tcp:${NAME}`, 'checked', 'none'],
  [ADDR, 'ip', 'ip'],
  ['203.0.113.0/24', 'ip', 'ip'],
  [`udp:203.0.113.0/24:${PORT}`, 'none', 'ip'],
  [`${ADDR}:80`, 'none', 'none'],
  [`!${ADDR}`, 'deny', 'deny'],
  [`!203.0.113.0/24:${PORT}`, 'deny', 'deny'],
  [`!${NAME}:${PORT}`, 'deny', 'deny'],
  [`!udp:*.allowed.test:${PORT}`, 'none', 'deny'],
  [`!tcp:${NAME}`, 'deny', 'none'],
];

/** The precedence: deny rules first; then the rule that opens the most, whatever the order. */
const RANK: Outcome[] = ['none', 'checked', 'open', 'ip', 'deny'];
const combine = (a: Outcome, b: Outcome): Outcome => (RANK.indexOf(a) >= RANK.indexOf(b) ? a : b);

function outcomeOf(d: FlowDecision): Outcome {
  if (d.verdict === 'deny') return /^denied by rule/.test(d.reason) ? 'deny' : 'none';
  if (d.via === 'ip-rule') return 'ip';
  if (d.via === 'pin') return d.explicitPort ? 'open' : 'checked';
  throw new Error(`unexpected decision via ${d.via}`);
}

/** Every policy also holds NAME:80, so the name resolves whatever the pair is, yet port 9999 stays shut. */
function decide(rules: string[], proto: Proto): Outcome {
  const policy = Policy.fromAllowlists([parse([...rules, `${NAME}:80`].join('\n'), 'pair.allow')], { clock: new ManualClock() });
  // The DNS proxy pins only names it may resolve; a port-less deny keeps the name from resolving at all.
  if (policy.resolvable(NAME).allowed) policy.pin(NAME, ADDR, 60);
  return outcomeOf(policy.decide({ proto, addr: ADDR, port: PORT }));
}

describe('rule precedence', () => {
  it.each(KINDS)('gives %s alone: tcp %s, udp %s', (rule, tcp, udp) => {
    expect(decide([rule], 'tcp')).toBe(tcp);
    expect(decide([rule], 'udp')).toBe(udp);
  });

  it('gives every pair of rule kinds, in either order, the stronger outcome by the precedence', () => {
    const wrong: string[] = [];
    for (const [a, aTcp, aUdp] of KINDS) {
      for (const [b, bTcp, bUdp] of KINDS) {
        if (a === b) continue;
        for (const [proto, want] of [['tcp', combine(aTcp, bTcp)], ['udp', combine(aUdp, bUdp)]] as const) {
          const got = decide([a, b], proto);
          if (got !== want) wrong.push(`${a} + ${b} (${proto}): ${got}, expected ${want}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('opens udp:NAME:PORT when the bare name comes first (issue 16)', () => {
    expect(decide([NAME, `udp:${NAME}:${PORT}`], 'udp')).toBe('open');
    expect(decide([`udp:${NAME}:${PORT}`, NAME], 'udp')).toBe('open');
  });

  it('keeps a name a port-less deny rule covers from resolving, so only an IP rule opens its address', () => {
    for (const deny of [`!${NAME}`, '!*.allowed.test']) {
      for (const allow of [NAME, '*.allowed.test', `${NAME}:${PORT}`, `udp:${NAME}:${PORT}`]) {
        const policy = Policy.fromAllowlists([parse(`${allow}\n${deny}\n`, 'pair.allow')], { clock: new ManualClock() });
        expect(policy.resolvable(NAME)).toMatchObject({ allowed: false, reason: expect.stringMatching(/^denied by rule/) });
      }
      expect(decide([ADDR, deny], 'tcp')).toBe('ip');
    }
  });

  it('lets a deny rule for a pinned name win over an IP rule for its address', () => {
    expect(decide([ADDR, `!${NAME}:${PORT}`], 'tcp')).toBe('deny');
    expect(decide([`!${NAME}:${PORT}`, '203.0.113.0/24'], 'udp')).toBe('deny');
  });
});
