// One allowlist rule, parsed from its text form:
//   [!][tcp:|udp:]TARGET[:PORT|:FROM-TO]
// TARGET is a name (`registry.npmjs.org`), a wildcard (`*.example.com`: subdomains, not the apex), an
// IPv4 address or subnet, or an IPv6 address or subnet (bracketed when a port follows).
import { TapboxError } from '../../errors.js';
import { parseSubnet, subnetContains, type IpAddr, type Subnet } from './address.js';
import { isPublicSuffix } from './public-suffix.js';

export type Proto = 'tcp' | 'udp';

export interface PortRange {
  from: number;
  to: number;
}

export type Target =
  | { kind: 'name'; name: string }
  | { kind: 'wildcard'; suffix: string }
  | { kind: 'subnet'; subnet: Subnet };

export interface Rule {
  deny: boolean;
  target: Target;
  /** null: both protocols. */
  proto: Proto | null;
  /** null: every port. */
  ports: PortRange | null;
  /** The rule as written and where: "file:line", "--allow", ... (for logs and errors). */
  text: string;
  origin: string;
}

/** Parses one rule; throws TapboxError EPOLICY naming `origin` and what is wrong. */
export function parseRule(input: string, origin: string): Rule {
  const text = input.trim();
  const fail = (why: string): never => {
    throw new TapboxError('EPOLICY', `${origin}: bad rule "${text}": ${why}.`);
  };
  let rest = text;
  const deny = rest.startsWith('!');
  if (deny) rest = rest.slice(1);
  let proto: Proto | null = null;
  const protoMatch = /^(tcp|udp):/i.exec(rest);
  if (protoMatch) {
    proto = protoMatch[1].toLowerCase() as Proto;
    rest = rest.slice(protoMatch[0].length);
  }
  if (rest === '') fail('nothing to match (expected a name, an address or a subnet)');

  const { host, portText } = splitHostPort(rest) ?? fail('an IPv6 address with a port must be bracketed: [2001:db8::1]:443');
  const ports = portText === undefined ? null : (parsePorts(portText) ?? fail(`"${portText}" is not a port (1-65535) or a range FROM-TO`));
  const target = parseTarget(host, deny) ?? fail(describeBadTarget(host, deny));
  return { deny, target, proto, ports, text, origin };
}

export function ruleMatchesName(rule: Rule, name: string): boolean {
  const t = rule.target;
  if (t.kind === 'name') return t.name === name;
  if (t.kind === 'wildcard') return name.endsWith(`.${t.suffix}`);
  return false;
}

export function ruleMatchesAddress(rule: Rule, ip: IpAddr): boolean {
  return rule.target.kind === 'subnet' && subnetContains(rule.target.subnet, ip);
}

/** Whether the rule's protocol and port parts cover this flow. */
export function ruleCovers(rule: Rule, proto: Proto, port: number): boolean {
  if (rule.proto && rule.proto !== proto) return false;
  return !rule.ports || (port >= rule.ports.from && port <= rule.ports.to);
}

/** Lower case, trailing dot removed: the one form names are compared in. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function splitHostPort(s: string): { host: string; portText?: string } | null {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return null;
    const after = s.slice(close + 1);
    if (after === '') return { host: s.slice(1, close) };
    if (!after.startsWith(':')) return null;
    return { host: s.slice(1, close), portText: after.slice(1) };
  }
  const colons = s.split(':').length - 1;
  if (colons === 0) return { host: s };
  if (colons === 1) return { host: s.slice(0, s.indexOf(':')), portText: s.slice(s.indexOf(':') + 1) };
  // Several colons, no brackets: a bare IPv6 address or subnet, which cannot carry a port.
  return parseSubnet(s) ? { host: s } : null;
}

function parsePorts(s: string): PortRange | null {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) return null;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || from > to) return null;
  return { from, to };
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function isValidName(name: string): boolean {
  return name.length <= 253 && name.split('.').every((l) => LABEL.test(l));
}

function parseTarget(host: string, deny: boolean): Target | null {
  if (/^[\d.]+(\/\d+)?$/.test(host) || host.includes(':')) {
    const subnet = parseSubnet(host);
    return subnet ? { kind: 'subnet', subnet } : null;
  }
  const name = normalizeName(host);
  if (name.startsWith('*.')) {
    const suffix = name.slice(2);
    if (!isValidName(suffix)) return null;
    if (!deny && isPublicSuffix(suffix)) return null;
    return { kind: 'wildcard', suffix };
  }
  return isValidName(name) ? { kind: 'name', name } : null;
}

function describeBadTarget(host: string, deny: boolean): string {
  if (/^[\d.]+(\/\d+)?$/.test(host) || host.includes(':')) return `"${host}" is not a valid IP address or subnet`;
  const name = normalizeName(host);
  if (name === '*') return 'a bare "*" would allow every name; list the names instead (or use --audit to allow all and log)';
  if (name.startsWith('*.') && !deny && isPublicSuffix(name.slice(2)) && isValidName(name.slice(2))) {
    return `"${host}" covers a whole public suffix (anyone can register under .${name.slice(2)}); name the domain, e.g. *.example.${name.slice(2)}`;
  }
  if (name.includes('*')) return `"${host}": a wildcard is allowed only as the first label, "*.example.com"`;
  return `"${host}" is not a valid host name`;
}
