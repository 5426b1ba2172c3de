// --learn: after an audit run, an allowlist of what the sandbox used, ready for `-F`. Names where the
// destination was reached through a looked-up name, addresses otherwise; one rule per destination and
// port, with a protocol prefix when only one protocol was seen, and the hit count as a comment. Names
// looked up but never connected to are listed commented out, for the user to decide.
// Names come from the sandbox: a rule is written only when its text parses back (parseRule) as exactly
// the rule it means; anything else (a name no rule can spell, a planted newline) is left out.
import { canonicalIp, formatIp } from '../policy/address.js';
import { parseRule, type Rule } from '../policy/rule.js';
import { printable } from '../dns/names.js';
import type { LearnedFlow } from './summary.js';

export function formatLearnedAllowlist(flows: LearnedFlow[], lookedUp: Map<string, number>, when = new Date()): string {
  const lines = [`# Learned by tapbox --learn on ${when.toISOString()}.`, '# Review before use: every rule below was needed by the recorded run.', ''];
  const sorted = [...flows].sort((a, b) => Number(b.isName) - Number(a.isName) || a.target.localeCompare(b.target) || a.port - b.port);
  const rules = sorted.flatMap((f) => {
    const proto = f.protos.size === 1 ? [...f.protos][0] : null;
    const host = !f.isName && f.target.includes(':') ? `[${f.target}]` : f.target;
    const rule = `${proto ? `${proto}:` : ''}${host}:${f.port}`;
    if (!means(rule, f.isName ? 'name' : 'address', f.target, proto, f.port)) return [];
    // Who needed it (attribution.ts): the sandbox's own words, escaped onto this one comment line.
    const by = f.by.size ? `; by ${printable([...f.by].join(', '))}` : '';
    return [{ rule, comment: `${f.hits} connection${f.hits === 1 ? '' : 's'}${by}` }];
  });
  const width = Math.max(0, ...rules.map((r) => r.rule.length));
  for (const r of rules) lines.push(`${r.rule.padEnd(width)}  # ${r.comment}`);

  const connected = new Set(flows.filter((f) => f.isName).map((f) => f.target));
  const unused = [...lookedUp].filter(([name]) => !connected.has(name) && means(name, 'name', name, null, null)).sort(([a], [b]) => a.localeCompare(b));
  if (unused.length) {
    lines.push('', '# Looked up, never connected to:');
    for (const [name, n] of unused) lines.push(`# ${printable(name)}  # ${n} lookup${n === 1 ? '' : 's'}`);
  }
  return lines.join('\n') + '\n';
}

/** Does `text` parse as one allow rule for exactly this name or address, protocol and port? */
function means(text: string, kind: 'name' | 'address', target: string, proto: Rule['proto'], port: number | null): boolean {
  if (/[\s#]/.test(text)) return false; // one token, nothing a comment or the next line could take
  let rule: Rule;
  try {
    rule = parseRule(text, '--learn');
  } catch {
    return false;
  }
  if (rule.deny || rule.proto !== proto) return false;
  if (port === null ? rule.ports !== null : rule.ports?.from !== port || rule.ports.to !== port) return false;
  const t = rule.target;
  if (kind === 'name') return t.kind === 'name' && t.name === target;
  return t.kind === 'subnet' && t.subnet.prefix === (t.subnet.family === 4 ? 32 : 128) && formatIp({ family: t.subnet.family, value: t.subnet.network }) === canonicalIp(target);
}
