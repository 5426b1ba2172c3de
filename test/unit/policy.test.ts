import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../netstack/stack/manual-clock.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy, type FlowQuery } from '../../src/egress/policy/policy.js';
import { PinTable } from '../../src/egress/policy/pins.js';

function policyOf(text: string, opts: { audit?: boolean; hostAddrs?: Set<string> } = {}) {
  const clock = new ManualClock();
  return { policy: Policy.fromAllowlists([parse(text, 'test.allow')], { ...opts, clock }), clock };
}

const tcp = (addr: string, port: number): FlowQuery => ({ proto: 'tcp', addr, port });
const udp = (addr: string, port: number): FlowQuery => ({ proto: 'udp', addr, port });

describe('policy', () => {
  it('resolves only names a rule allows; deny wins; wildcards do not match the apex', () => {
    const { policy } = policyOf('example.com\n*.cdn.example.net\n!ads.cdn.example.net\nudp:time.example.org:123\n');
    expect(policy.resolvable('example.com').allowed).toBe(true);
    expect(policy.resolvable('EXAMPLE.com.').allowed).toBe(true);
    expect(policy.resolvable('www.example.com').allowed).toBe(false);
    expect(policy.resolvable('a.cdn.example.net').allowed).toBe(true);
    expect(policy.resolvable('a.b.cdn.example.net').allowed).toBe(true);
    expect(policy.resolvable('cdn.example.net').allowed).toBe(false);
    expect(policy.resolvable('ads.cdn.example.net')).toMatchObject({ allowed: false, reason: expect.stringMatching(/denied by rule "!ads\.cdn\.example\.net" \(test\.allow:3\)/) });
    expect(policy.resolvable('time.example.org').allowed).toBe(true);
    expect(policy.resolvable('evil.example')).toEqual({ allowed: false, reason: 'not in allowlist', askable: true });
  });

  it('lets non-QUIC datagrams through a pin only when the rule names udp: and the port', () => {
    const { policy } = policyOf('api.example.com:443\nudp:time.example.org:123\n');
    policy.pin('api.example.com', '203.0.113.5', 60);
    policy.pin('time.example.org', '203.0.113.8', 60);
    expect(policy.decide(tcp('203.0.113.5', 443))).toMatchObject({ verdict: 'allow', via: 'pin', explicitPort: true });
    expect(policy.decide(udp('203.0.113.5', 443))).toMatchObject({ verdict: 'allow', via: 'pin', explicitPort: false });
    expect(policy.decide(udp('203.0.113.8', 123))).toMatchObject({ verdict: 'allow', via: 'pin', explicitPort: true });
  });

  it('allows an address only by a static rule or a pin carrying the name, with its rule ports', () => {
    const { policy } = policyOf('api.example.com:443\nother.example.com\n198.51.100.0/24\n');
    expect(policy.decide(tcp('198.51.100.9', 22))).toMatchObject({ verdict: 'allow', via: 'ip-rule' });
    expect(policy.decide(tcp('203.0.113.5', 443))).toMatchObject({ verdict: 'deny', reason: 'not in allowlist' });
    policy.pin('api.example.com', '203.0.113.5', 60);
    expect(policy.decide(tcp('203.0.113.5', 443))).toMatchObject({ verdict: 'allow', via: 'pin', names: ['api.example.com'], explicitPort: true });
    expect(policy.decide(tcp('203.0.113.5', 80))).toMatchObject({ verdict: 'deny', reason: 'tcp port 80 is not allowed for api.example.com' });
    // Another allowed name's address is not opened by api.example.com's pin, and vice versa.
    policy.pin('other.example.com', '203.0.113.6', 60);
    expect(policy.decide(tcp('203.0.113.6', 8080))).toMatchObject({ verdict: 'allow', names: ['other.example.com'], explicitPort: false });
    expect(policy.decide(tcp('203.0.113.7', 443)).verdict).toBe('deny');
  });

  it('applies protocol prefixes and port ranges', () => {
    const { policy } = policyOf('udp:time.example.org:123\ntcp:web.example.org:8000-8100\n');
    policy.pin('time.example.org', '192.0.2.10', 60);
    policy.pin('web.example.org', '192.0.2.11', 60);
    expect(policy.decide(udp('192.0.2.10', 123)).verdict).toBe('allow');
    expect(policy.decide(tcp('192.0.2.10', 123)).verdict).toBe('deny');
    expect(policy.decide(tcp('192.0.2.11', 8000)).verdict).toBe('allow');
    expect(policy.decide(tcp('192.0.2.11', 8100)).verdict).toBe('allow');
    expect(policy.decide(tcp('192.0.2.11', 8101)).verdict).toBe('deny');
    expect(policy.decide(udp('192.0.2.11', 8050)).verdict).toBe('deny');
  });

  it('matches IPv4 and IPv6 addresses and subnets, IPv4-mapped addresses included', () => {
    const { policy } = policyOf('10.0.0.0/8\n2001:db8:aa::/48\n[2001:db8::1]:443\n192.0.2.1\n');
    expect(policy.decide(tcp('10.200.3.4', 1)).verdict).toBe('allow');
    expect(policy.decide(tcp('11.0.0.1', 1)).verdict).toBe('deny');
    expect(policy.decide(tcp('::ffff:10.1.1.1', 1)).verdict).toBe('allow');
    expect(policy.decide(tcp('2001:db8:aa:ffff::1', 9)).verdict).toBe('allow');
    expect(policy.decide(tcp('2001:db8:ab::1', 9)).verdict).toBe('deny');
    expect(policy.decide(tcp('2001:0db8:0000::0001', 443)).verdict).toBe('allow');
    expect(policy.decide(tcp('2001:db8::1', 444)).verdict).toBe('deny');
    expect(policy.decide(tcp('192.0.2.1', 65535)).verdict).toBe('allow');
    expect(policy.decide(tcp('192.0.2.2', 65535)).verdict).toBe('deny');
  });

  it('lets deny rules win over allow rules, for names and addresses', () => {
    const { policy } = policyOf('10.0.0.0/8\n!10.0.0.5\nexample.com\n!example.com:25\n');
    expect(policy.decide(tcp('10.0.0.4', 80)).verdict).toBe('allow');
    expect(policy.decide(tcp('10.0.0.5', 80))).toMatchObject({ verdict: 'deny', reason: expect.stringMatching(/denied by rule "!10\.0\.0\.5"/) });
    policy.pin('example.com', '192.0.2.20', 60);
    expect(policy.decide(tcp('192.0.2.20', 443)).verdict).toBe('allow');
    expect(policy.decide(tcp('192.0.2.20', 25))).toMatchObject({ verdict: 'deny', reason: expect.stringMatching(/denied by rule "!example\.com:25"/) });
    // A deny rule with a port does not stop the name from resolving.
    expect(policy.resolvable('example.com').allowed).toBe(true);
  });

  it('expires pins after the TTL plus the grace period', () => {
    const { policy, clock } = policyOf('example.com\n');
    policy.pin('example.com', '192.0.2.30', 60);
    clock.advance(60_000 + 5 * 60_000 - 1);
    expect(policy.decide(tcp('192.0.2.30', 443)).verdict).toBe('allow');
    clock.advance(1);
    expect(policy.decide(tcp('192.0.2.30', 443)).verdict).toBe('deny');
  });

  it('sweeps expired pins of addresses nobody asks about again, so the table stays bounded', () => {
    const clock = new ManualClock();
    const pins = new PinTable(clock);
    for (let i = 0; i < 100; i++) pins.pin('example.com', `192.0.2.${i}`, 60);
    expect(pins.size).toBe(100);
    clock.advance(60_000 + 5 * 60_000);
    pins.pin('example.com', '198.51.100.1', 60);
    expect(pins.size).toBe(1);
  });

  it('verifies a name (SNI) only when it is allowed and pinned to that address', () => {
    const { policy } = policyOf('a.example.com\nb.example.com\n');
    policy.pin('a.example.com', '192.0.2.40', 60);
    policy.pin('b.example.com', '192.0.2.41', 60);
    expect(policy.verifyName('A.example.com', tcp('192.0.2.40', 443))).toBe(true);
    expect(policy.verifyName('b.example.com', tcp('192.0.2.40', 443))).toBe(false);
    expect(policy.verifyName('evil.example', tcp('192.0.2.40', 443))).toBe(false);
  });

  it('allows everything in audit mode, still naming pinned destinations', () => {
    const { policy } = policyOf('', { audit: true });
    expect(policy.resolvable('anything.example').allowed).toBe(true);
    policy.pin('anything.example', '192.0.2.50', 60);
    expect(policy.decide(tcp('192.0.2.50', 1234))).toMatchObject({ verdict: 'allow', via: 'audit', names: ['anything.example'] });
    expect(policy.decide(udp('203.0.113.1', 9))).toMatchObject({ verdict: 'allow', via: 'audit' });
  });

  it('opens link-local, multicast and host addresses only for an IP rule as specific as their range', () => {
    const hostAddrs = new Set(['198.18.7.1', '2001:db8:7::1', '192.0.2.77']);
    const guarded = ['169.254.169.254', 'fe80::1', '224.0.0.251', 'ff02::fb', '198.18.7.1', '2001:db8:7::1', '192.0.2.77', '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe', '64:ff9b::c612:701'];
    // Audit mode, a DNS pin, and the widest rules open none of them.
    const audit = policyOf('', { audit: true, hostAddrs }).policy;
    const wide = policyOf('0.0.0.0/0\n::/0\n169.0.0.0/8\nfe80::/9\n198.18.0.0/15\n2001:db8::/32\n192.0.2.0/24\nmeta.example\n', { hostAddrs }).policy;
    for (const addr of guarded) {
      audit.pin('meta.example', addr, 60);
      wide.pin('meta.example', addr, 60);
      expect(audit.decide(tcp(addr, 80)), `audit ${addr}`).toMatchObject({ verdict: 'deny', reason: expect.stringMatching(/only an IP rule naming it opens it/) });
      expect(wide.decide(tcp(addr, 80)), `rules ${addr}`).toMatchObject({ verdict: 'deny' });
    }
    // Their neighbours are not guarded.
    expect(audit.decide(tcp('198.18.7.2', 80))).toMatchObject({ verdict: 'allow', via: 'audit' });
    expect(wide.decide(tcp('198.18.7.2', 80))).toMatchObject({ verdict: 'allow', via: 'ip-rule' });
    // An explicit rule, at least as specific as the range, opens them, on its ports only; deny still wins.
    const explicit = policyOf('169.254.169.254:80\n169.254.0.0/16:8080\nfe80::/10\n198.18.7.1\n[2001:db8:7::1]:443\n!169.254.169.254:81\n', { audit: true, hostAddrs }).policy;
    expect(explicit.decide(tcp('169.254.169.254', 80))).toMatchObject({ verdict: 'allow', via: 'ip-rule' });
    expect(explicit.decide(tcp('169.254.1.1', 8080))).toMatchObject({ verdict: 'allow', via: 'ip-rule' });
    expect(explicit.decide(tcp('169.254.169.254', 22)).verdict).toBe('deny');
    expect(explicit.decide(tcp('169.254.169.254', 81)).verdict).toBe('deny');
    expect(explicit.decide(udp('fe80::1', 53)).verdict).toBe('allow');
    expect(explicit.decide(tcp('198.18.7.1', 22)).verdict).toBe('allow');
    expect(explicit.decide(tcp('2001:db8:7::1', 443)).verdict).toBe('allow');
    expect(explicit.decide(tcp('2001:db8:7::1', 80)).verdict).toBe('deny');
    expect(explicit.decide(tcp('224.0.0.251', 80)).verdict).toBe('deny');
    expect(audit.decide(tcp('64:ff9b::c612:702', 80)).verdict).toBe('allow');
    expect(policyOf('64:ff9b::/96\n', { hostAddrs }).policy.decide(tcp('64:ff9b::a9fe:a9fe', 80)).verdict).toBe('deny');
    expect(policyOf('64:ff9b::a9fe:0/112\n', { hostAddrs }).policy.decide(tcp('64:ff9b::a9fe:a9fe', 80)).verdict).toBe('allow');
  });

  it('takes the smallest connection limit of its lists', () => {
    const p = Policy.fromAllowlists([parse('10\na.example.com', 'a'), parse('4\nb.example.com', 'b'), parse('c.example.com', 'c')]);
    expect(p.maxFlows).toBe(4);
  });
});
