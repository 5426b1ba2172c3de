// The policy's public surface (re-exported by the library).
export * as allowlist from './allowlist.js';
export { Policy } from './policy.js';
export type { FlowDecision, FlowQuery, PolicyOptions } from './policy.js';
export type { Allowlist } from './allowlist.js';
export type { Rule, Proto, PortRange } from './rule.js';
