// The egress policy: the rules, and the pins the DNS proxy adds. Decisions, in order:
//  1. a deny rule for the address (IP/subnet), or for a name pinned to it, covering the flow's
//     protocol and port → denied;
//  1b. a guarded address (link-local: the cloud metadata service; multicast; the host's own addresses)
//     → allowed only by an IP rule at least as specific as its range (a /16 inside 169.254.0.0/16,
//     the exact host address), never by audit mode, a DNS pin, 0.0.0.0/0 or ::/0;
//  2. audit mode → allowed (and logged);
//  3. an allow rule for the address → allowed, not inspected;
//  4. a name pinned to the address whose allow rule covers protocol and port, and no deny rule for
//     that name covers them → allowed "via pin" (the forwarder then checks SNI/Host against the names);
//  5. otherwise denied. "Any IP of any allowed name" is never enough: the pin carries the name.
// Precedence when several rules match (README "Rule precedence"): deny rules decide first, whatever
// their order or kind; then, among allow rules, any one that opens this protocol and port decides, and
// the most explicit of them wins (one naming the port, and for UDP also udp:, lets any protocol pass
// rather than only those whose names tapbox can check), so a broader rule never hides a narrower one.
import { formatIp, onFirstUse, parseIp, parseSubnet, subnetContains, type IpAddr, type Subnet } from './address.js';
import type { Allowlist } from './allowlist.js';
import { monotonicClock, PinTable, type PinClock } from './pins.js';
import { normalizeName, ruleCovers, ruleMatchesAddress, ruleMatchesName, type Proto, type Rule } from './rule.js';

/** The name a flow is reported under: the last of its decision's names (pins.ts orders them by first pin). */
export function flowName(names: readonly string[]): string | null {
  return names[names.length - 1] ?? null;
}

export interface PolicyOptions {
  /** Allow everything and log it (--audit, --learn). */
  audit?: boolean;
  /** The most flows open at once; undefined: no limit. */
  maxFlows?: number;
  /** How long a pin outlives its record's TTL (ms; at least 30 s). */
  pinGraceMs?: number;
  /** What pins expire by (default: monotonic time). */
  clock?: PinClock;
  /** The host's own addresses (dns/rebinding.ts liveHostAddresses()): guarded like link-local. */
  hostAddrs?: { has(addr: string): boolean };
}

/** Ranges a flow reaches only through an IP rule at least as specific as the range. */
const GUARDED = onFirstUse((): { subnet: Subnet; what: string }[] =>
  [
    ['169.254.0.0/16', 'a link-local address (the cloud metadata service lives there)'],
    ['fe80::/10', 'a link-local address'],
    ['224.0.0.0/4', 'a multicast address'],
    ['ff00::/8', 'a multicast address'],
  ].map(([s, what]) => ({ subnet: parseSubnet(s)!, what })),
);
const NAT64 = onFirstUse(() => parseSubnet('64:ff9b::/96')!);

export interface FlowQuery {
  proto: Proto;
  addr: string;
  port: number;
}

/** 'ask': allowed once by an answer in ask mode (this flow only). */
export type FlowVia = 'audit' | 'ip-rule' | 'pin' | 'ask';

export type FlowDecision =
  | {
      verdict: 'allow';
      via: FlowVia;
      /** Canonical destination address. */
      addr: string;
      /** Allowed names pinned to the address (for 'pin': those whose rules cover this flow). */
      names: string[];
      /**
       * For 'pin': a covering rule names the port explicitly (and, for UDP, the protocol: udp:NAME:PORT),
       * so protocols other than TLS/HTTP/QUIC pass.
       */
      explicitPort: boolean;
    }
  | {
      verdict: 'deny';
      addr: string;
      names: string[];
      reason: string;
      /** Only because no rule allows it (no deny rule, not a guarded address): ask mode may ask. */
      askable?: boolean;
    };

export type NameVerdict = { allowed: true; rule: Rule | null } | { allowed: false; reason: string; askable?: boolean };

export class Policy {
  readonly audit: boolean;
  readonly maxFlows: number | undefined;
  private readonly pins: PinTable;
  private readonly hostAddrs: { has(addr: string): boolean } | undefined;
  private list: Rule[];

  constructor(rules: readonly Rule[], opts: PolicyOptions = {}) {
    this.list = [...rules];
    this.audit = opts.audit ?? false;
    this.maxFlows = opts.maxFlows;
    this.pins = new PinTable(opts.clock ?? monotonicClock, opts.pinGraceMs);
    this.hostAddrs = opts.hostAddrs;
  }

  /** The guarded range `ip` is in (see decide), or null. */
  private guarded(ip: IpAddr, addr: string): { prefix: number; what: string } | null {
    if (this.hostAddrs?.has(addr)) return { prefix: ip.family === 4 ? 32 : 128, what: "one of the host's own addresses" };
    const g = GUARDED().find((r) => subnetContains(r.subnet, ip));
    if (g) return { prefix: g.subnet.prefix, what: g.what };
    // A NAT64 address reaches the IPv4 address in its last 32 bits: guarded as that one, 96 bits deeper.
    if (subnetContains(NAT64(), ip)) {
      const v4: IpAddr = { family: 4, value: ip.value & 0xffffffffn };
      const inner = this.guarded(v4, formatIp(v4));
      return inner && { prefix: inner.prefix + 96, what: `${inner.what} (through NAT64)` };
    }
    return null;
  }

  /** The rules in force, in the order they were given (the order decides nothing: see decide). */
  get rules(): readonly Rule[] {
    return this.list;
  }

  /**
   * Changes the policy while the sandbox runs: adds `rule`, after removing the rules it contradicts
   * exactly (same target, protocol and ports, the other verdict), so that allowing what was denied, or
   * the reverse, takes effect. Returns the rules removed. Decisions made from now on see the change;
   * open flows are the caller's (LivePolicy.deny can reset those the new rule covers). The same rule
   * given twice is kept once.
   */
  change(rule: Rule): Rule[] {
    const replaced = this.list.filter((r) => r.deny !== rule.deny && sameScope(r, rule));
    this.list = [...this.list.filter((r) => !sameScope(r, rule)), rule];
    return replaced;
  }

  /** Does `rule` apply to this flow: its address, or one of the names it goes to, on its protocol and port? */
  appliesTo(rule: Rule, q: FlowQuery, names: readonly string[]): boolean {
    const ip = parseIp(q.addr);
    if (!ip || !ruleCovers(rule, q.proto, q.port)) return false;
    return ruleMatchesAddress(rule, ip) || names.some((n) => ruleMatchesName(rule, normalizeName(n)));
  }

  /** One policy from several allowlists; the smallest connection limit among them applies. */
  static fromAllowlists(lists: Allowlist[], opts: PolicyOptions = {}): Policy {
    const limits = lists.map((l) => l.maxFlows).filter((n): n is number => n !== undefined);
    if (opts.maxFlows !== undefined) limits.push(opts.maxFlows);
    return new Policy(
      lists.flatMap((l) => l.rules),
      { ...opts, maxFlows: limits.length ? Math.min(...limits) : undefined },
    );
  }

  /** May the DNS proxy resolve `name`? Only when an allow rule names it, and no port-less deny rule. */
  resolvable(name: string): NameVerdict {
    const n = normalizeName(name);
    const deny = this.list.find((r) => r.deny && !r.proto && !r.ports && ruleMatchesName(r, n));
    if (deny) return { allowed: false, reason: `denied by rule "${deny.text}" (${deny.origin})` };
    if (this.audit) return { allowed: true, rule: null };
    const allow = this.list.find((r) => !r.deny && ruleMatchesName(r, n));
    return allow ? { allowed: true, rule: allow } : { allowed: false, reason: 'not in allowlist', askable: true };
  }

  /** Does a rule allow a flow of this protocol and port to `name`? (deny rules win) */
  nameAllows(name: string, proto: Proto, port: number): NameVerdict {
    const n = normalizeName(name);
    const deny = this.denyRuleFor(n, proto, port);
    if (deny) return { allowed: false, reason: `denied by rule "${deny.text}" (${deny.origin})` };
    const allows = this.list.filter((r) => !r.deny && ruleMatchesName(r, n) && ruleCovers(r, proto, port));
    if (allows.length) return { allowed: true, rule: allows.find((r) => opensPortExplicitly(r, proto)) ?? allows[0] };
    const anyPort = this.list.some((r) => !r.deny && ruleMatchesName(r, n));
    return { allowed: false, reason: anyPort ? `${proto} port ${port} is not allowed for ${n}` : 'not in allowlist' };
  }

  private denyRuleFor(normalizedName: string, proto: Proto, port: number): Rule | undefined {
    return this.list.find((r) => r.deny && ruleMatchesName(r, normalizedName) && ruleCovers(r, proto, port));
  }

  /** Records that the DNS proxy answered `name` with `addr` (called for allowed names only). */
  pin(name: string, addr: string, ttlSeconds: number): void {
    const ip = parseIp(addr);
    if (ip) this.pins.pin(normalizeName(name), formatIp(ip), ttlSeconds);
  }

  /** The names currently pinned to `addr`. */
  pinnedNames(addr: string): string[] {
    const ip = parseIp(addr);
    return ip ? this.pins.names(formatIp(ip)) : [];
  }

  /** Is `name` (say a TLS SNI) an allowed name for this flow, pinned to its address? */
  verifyName(name: string, q: FlowQuery): boolean {
    const n = normalizeName(name);
    return this.pinnedNames(q.addr).includes(n) && this.nameAllows(n, q.proto, q.port).allowed;
  }

  decide(q: FlowQuery): FlowDecision {
    const ip = parseIp(q.addr);
    if (!ip) return { verdict: 'deny', addr: q.addr, names: [], reason: 'not an IP address' };
    const addr = formatIp(ip);
    const pinned = this.pins.names(addr);
    const covering = (deny: boolean) => this.list.find((r) => r.deny === deny && ruleMatchesAddress(r, ip) && ruleCovers(r, q.proto, q.port));

    // Deny rules first: one for the address, or for any name pinned to it (the flow may be meant for
    // that name, and which one it is cannot be told here).
    const denyRule = covering(true) ?? pinned.map((n) => this.denyRuleFor(n, q.proto, q.port)).find((r) => r !== undefined);
    if (denyRule) return { verdict: 'deny', addr, names: pinned, reason: `denied by rule "${denyRule.text}" (${denyRule.origin})` };
    const guard = this.guarded(ip, addr);
    if (guard) {
      const explicit = this.list.find(
        (r) => !r.deny && r.target.kind === 'subnet' && r.target.subnet.prefix >= guard.prefix && ruleMatchesAddress(r, ip) && ruleCovers(r, q.proto, q.port),
      );
      if (explicit) return { verdict: 'allow', via: 'ip-rule', addr, names: pinned, explicitPort: false };
      return { verdict: 'deny', addr, names: pinned, reason: `${guard.what}: only an IP rule naming it opens it (--allow ${ip.family === 6 ? `[${addr}]` : addr}:${q.port}), not audit mode, a DNS answer or a wider subnet` };
    }
    if (this.audit) return { verdict: 'allow', via: 'audit', addr, names: pinned, explicitPort: false };
    if (covering(false)) return { verdict: 'allow', via: 'ip-rule', addr, names: pinned, explicitPort: false };

    const allowedNames: string[] = [];
    let explicitPort = false;
    let reason = 'not in allowlist';
    for (const name of pinned) {
      const v = this.nameAllows(name, q.proto, q.port);
      if (v.allowed) {
        allowedNames.push(name);
        if (v.rule && opensPortExplicitly(v.rule, q.proto)) explicitPort = true;
      } else {
        reason = v.reason;
      }
    }
    if (allowedNames.length) return { verdict: 'allow', via: 'pin', addr, names: allowedNames, explicitPort };
    // Deny rules for the address and its names were checked above: what is left is only unlisted.
    return { verdict: 'deny', addr, names: pinned, reason, askable: true };
  }
}

/**
 * Does this (covering) allow rule open its port to any protocol, not only to TLS/HTTP/QUIC whose names
 * are checked? It must name the port, and for UDP the protocol too: "name:443" is about HTTPS and must
 * not open arbitrary datagrams to a CDN's port 443 (QUIC is still checked by its SNI).
 */
function opensPortExplicitly(rule: Rule, proto: Proto): boolean {
  return rule.ports !== null && (proto === 'tcp' || rule.proto === 'udp');
}

/** Same target, protocol and ports (the verdict aside). */
function sameScope(a: Rule, b: Rule): boolean {
  const t = a.target;
  const u = b.target;
  const target =
    t.kind === 'name' ? u.kind === 'name' && u.name === t.name
    : t.kind === 'wildcard' ? u.kind === 'wildcard' && u.suffix === t.suffix
    : u.kind === 'subnet' && u.subnet.family === t.subnet.family && u.subnet.network === t.subnet.network && u.subnet.prefix === t.subnet.prefix;
  return target && a.proto === b.proto && a.ports?.from === b.ports?.from && a.ports?.to === b.ports?.to;
}
