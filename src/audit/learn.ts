// --learn: after an audit run, an allowlist of what the sandbox used, ready for `-F`. Names where the
// destination was reached through a looked-up name, addresses otherwise; one rule per destination and
// port, with a protocol prefix when only one protocol was seen, and the hit count as a comment. Names
// looked up but never connected to are listed commented out, for the user to decide.
import type { LearnedFlow } from './summary.js';

export function formatLearnedAllowlist(flows: LearnedFlow[], lookedUp: Map<string, number>, when = new Date()): string {
  const lines = [`# Learned by tapbox --learn on ${when.toISOString()}.`, '# Review before use: every rule below was needed by the recorded run.', ''];
  const sorted = [...flows].sort((a, b) => Number(b.isName) - Number(a.isName) || a.target.localeCompare(b.target) || a.port - b.port);
  const rules = sorted.map((f) => {
    const proto = f.protos.size === 1 ? `${[...f.protos][0]}:` : '';
    const host = !f.isName && f.target.includes(':') ? `[${f.target}]` : f.target;
    return { rule: `${proto}${host}:${f.port}`, comment: `${f.hits} connection${f.hits === 1 ? '' : 's'}` };
  });
  const width = Math.max(0, ...rules.map((r) => r.rule.length));
  for (const r of rules) lines.push(`${r.rule.padEnd(width)}  # ${r.comment}`);

  const connected = new Set(flows.filter((f) => f.isName).map((f) => f.target));
  const unused = [...lookedUp].filter(([name]) => !connected.has(name)).sort(([a], [b]) => a.localeCompare(b));
  if (unused.length) {
    lines.push('', '# Looked up, never connected to:');
    for (const [name, n] of unused) lines.push(`# ${name}  # ${n} lookup${n === 1 ? '' : 's'}`);
  }
  return lines.join('\n') + '\n';
}
