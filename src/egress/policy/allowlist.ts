// Allowlist files. Three formats load through the same `-F`:
//  - tapbox's: one rule per line (see rule.ts), `#` comments, blank lines ignored;
//  - mini-tapbox's: names and IPv4 addresses one per line, optionally a first line holding only a
//    number, the connection limit (it becomes `maxFlows`); it is a subset of ours, so it loads as is;
//  - an srt settings file (JSON): `network.allowedDomains` and `network.deniedDomains`.
// `@name` loads the curated list allowlists/name.txt shipped with tapbox.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../../native/addon/index.js';
import { TapboxError } from '../../errors.js';
import { parseRule, type Rule } from './rule.js';

export interface Allowlist {
  rules: Rule[];
  /** The most flows open at once, when the list sets one (mini-tapbox's first line). */
  maxFlows?: number;
}

/** Parses the text of an allowlist; `source` names it in errors ("file.txt" → "file.txt:3: ..."). */
export function parse(text: string, source: string): Allowlist {
  if (text.trimStart().startsWith('{')) return parseSrtSettings(text, source);
  const rules: Rule[] = [];
  let maxFlows: number | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const hash = raw.indexOf('#');
    const line = (hash < 0 ? raw : raw.slice(0, hash)).trim();
    if (line === '') return;
    if (i === 0 && /^\d+$/.test(line)) {
      maxFlows = Number(line);
      if (maxFlows < 1) throw new TapboxError('EPOLICY', `${source}:1: the connection limit must be at least 1, not ${line}.`);
      return;
    }
    rules.push(parseRule(line, `${source}:${i + 1}`));
  });
  return { rules, maxFlows };
}

/** Reads and parses an allowlist file, or a curated list given as `@name`. */
export async function load(path: string): Promise<Allowlist> {
  const file = path.startsWith('@') ? curatedListPath(path.slice(1)) : path;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new TapboxError('EPOLICY', `cannot read allowlist ${file}: ${why}; check the path given to -F.`);
  }
  return parse(text, path.startsWith('@') ? path : file);
}

/** The names of the curated lists shipped in allowlists/. */
export const CURATED_LISTS = ['npm', 'pypi', 'github', 'debian', 'crates', 'go', 'rubygems'] as const;

function curatedListPath(name: string): string {
  if (!(CURATED_LISTS as readonly string[]).includes(name)) {
    throw new TapboxError('EPOLICY', `no curated allowlist @${name}; the shipped ones are ${CURATED_LISTS.map((n) => `@${n}`).join(', ')}.`);
  }
  const path = join(packageRoot, 'allowlists', `${name}.txt`);
  if (existsSync(path)) return path;
  throw new TapboxError('EINTERNAL', `the curated allowlist @${name} is missing from this tapbox installation; reinstall tapbox.`);
}

function parseSrtSettings(text: string, source: string): Allowlist {
  let settings: unknown;
  try {
    settings = JSON.parse(text);
  } catch (err) {
    throw new TapboxError('EPOLICY', `${source}: not valid JSON (${(err as Error).message}); an srt settings file is JSON.`);
  }
  const network = (settings as { network?: unknown }).network;
  if (typeof network !== 'object' || network === null) {
    throw new TapboxError('EPOLICY', `${source}: an srt settings file needs a "network" object with "allowedDomains".`);
  }
  const rules: Rule[] = [];
  for (const [key, deny] of [['allowedDomains', false], ['deniedDomains', true]] as const) {
    const list = (network as Record<string, unknown>)[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new TapboxError('EPOLICY', `${source}: network.${key} must be an array of strings.`);
    list.forEach((entry, i) => {
      const origin = `${source}: network.${key}[${i}]`;
      if (typeof entry !== 'string') throw new TapboxError('EPOLICY', `${origin}: must be a string.`);
      rules.push(parseRule(deny ? `!${entry}` : entry, origin));
    });
  }
  return { rules };
}
