// What ask mode asks about (README "Ask mode"): a DNS lookup of a name no rule allows, or a connection
// to an address no rule allows; never one a deny rule refuses or a guarded address.
import type { Attribution } from '../audit/attribution.js';
import { printable } from '../dns/names.js';
import { flowName } from '../policy/policy.js';
import type { Proto } from '../policy/rule.js';

export interface AskRequest {
  kind: 'dns' | 'flow';
  /** The name looked up; for a flow, the name the sandbox looked up for its address, else null. */
  name: string | null;
  /** A flow's protocol, address and port (null for a lookup). */
  proto: Proto | null;
  addr: string | null;
  port: number | null;
  /** The sandbox process asking (attribution.ts); null unknown, undefined with attribution off. */
  by?: Attribution | null;
  /** The rule "allow for this run" and "allow and save" add: NAME, or PROTO:NAME:PORT / PROTO:ADDR:PORT. */
  rule: string;
}

/** The answers: this request only, every such request of this run, that and the --ask-save file, or no. */
export type AskAnswer = 'once' | 'run' | 'save' | 'deny';

/** What a library's onRequest returns: 'allow' (for this run), 'allow-once', 'allow-save' (needs askSave), 'deny'. */
export type RequestDecision = 'allow' | 'allow-once' | 'allow-save' | 'deny';

export function dnsRequest(name: string, by: Attribution | null | undefined): AskRequest {
  return { kind: 'dns', name, proto: null, addr: null, port: null, by, rule: name };
}

export function flowRequest(proto: Proto, addr: string, port: number, names: string[], by: Attribution | null | undefined): AskRequest {
  const name = flowName(names);
  const host = name ?? (addr.includes(':') ? `[${addr}]` : addr);
  return { kind: 'flow', name, proto, addr, port, by, rule: `${proto}:${host}:${port}` };
}

/** One line for a prompt or a log: "look up evil.example", "connect to tcp evil.example:443 (203.0.113.9)". */
export function describeRequest(r: AskRequest): string {
  if (r.kind === 'dns') return `look up ${r.name}`;
  const host = r.addr!.includes(':') ? `[${r.addr}]` : r.addr!;
  return r.name ? `connect to ${r.proto} ${r.name}:${r.port} (${r.addr})` : `connect to ${r.proto} ${host}:${r.port}`;
}

/** Who asked, escaped for a terminal: "node (phonehome postinstall), pid 7, in /work/x". */
export function describeAsker(r: AskRequest): string {
  if (r.by === undefined) return '';
  if (r.by === null) return 'an unknown process (gone before it was read)';
  return printable(`${r.by.label}, pid ${r.by.pid}, in ${r.by.cwd}`);
}

/** The library's onRequest as a prompter answer: anything but a known decision is no answer (a no). */
export function answerOf(decision: unknown): AskAnswer | 'invalid' {
  const map: Record<RequestDecision, AskAnswer> = { allow: 'run', 'allow-once': 'once', 'allow-save': 'save', deny: 'deny' };
  return typeof decision === 'string' && Object.hasOwn(map, decision) ? map[decision as RequestDecision] : 'invalid';
}
