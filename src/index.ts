// tapbox as a library: the CLI is a thin layer over these.
export { spawn, run, type SpawnOptions, type RunOptions, type RunResult } from './supervisor/library.js';
export { Sandbox, type SandboxResult, type SandboxEvents } from './supervisor/sandbox.js';
export { TapboxError, type TapboxErrorCode } from './errors.js';
export { type SandboxOptions, type NetMode, type UidMode, type StdioMode, SANDBOX_NET, DEFAULT_MTU } from './options/options.js';
// Filesystem modes, mounts, limits, seccomp, capabilities, timeout (the options SandboxOptions extends).
// The resource caps (SandboxOptions.caps: flows, pendingDials, udpSessions, dnsInFlight, bufferBytes).
// `caps` in SandboxOptions (and its type's old name CapsOptions) are the egress path's resource limits.
export type { NetworkLimitsOptions, NetworkLimitsOptions as CapsOptions } from './options/network-limits.js';
export { type FilesystemMode, type Mount, type MountType, type Limits, type HardeningOptions } from './options/hardening.js';
export { parseSize, type Size } from './units.js';
// Rules, for programs that build or check allowlists: allowlist.parse(text, source), allowlist.load(path).
export { allowlist, Policy, type Allowlist, type Rule, type Proto, type PortRange, type FlowDecision, type FlowQuery, type PolicyOptions } from './egress/policy/index.js';
// The live events (same fields as the audit log) and the report.
export { formatSummary, type EgressSummary, type DestinationSummary } from './egress/audit/summary.js';
export { describeFlow, type DnsEvent, type FlowEvent, type FlowEndEvent, type LimitEvent, type Attribution } from './egress/audit/events.js';
export type { PackageContext } from './egress/audit/package-context.js';
// Changing the policy while it runs (sandbox.allow / deny / rules) and its audit event.
export type { PolicyChangeEvent, DenyOptions } from './egress/live-policy.js';
// Ask mode's questions, the library's answers (onRequest) and the 'ask' event.
export type { AskRequest, RequestDecision, AskAnswer } from './egress/ask/request.js';
export type { AskEvent } from './egress/ask/asker.js';
export { formatUsage, type Usage } from './supervisor/cgroup.js';
export { hostChecks, type Check } from './supervisor/doctor.js';
// Images: import rootfs tarballs, OCI layouts and docker save archives, pull from registries (src/images/).
export { images, type ImageRecord, type Credentials, type ImageStoreOptions, type PullOptions } from './images/index.js';
// Boxes: named, detached sandboxes driven like podman's containers (src/boxes/).
export { boxes, Box, type BoxInfo, type BoxRunOptions, type BoxState, type ExecOptions, type BoxPolicy, type PolicyChange } from './boxes/index.js';
