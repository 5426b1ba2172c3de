// The options of one sandbox run: what the library takes and what the CLI fills in. Every field has a
// safe default; `resolveOptions` fills them and checks what can be checked before anything starts.
import { closeSync, openSync } from 'node:fs';
import { TapboxError } from '../errors.js';
import type { FaultyEndpointOptions } from '../../netstack/index.js';
import { resolveEnv, resolveHardening, type HardeningOptions, type ResolvedHardening } from './hardening.js';
import { parseProxyUrl, type ProxySpec } from '../egress/forwarder/dialer.js';
import { parseHostLoopback, type HostLoopbackPort } from '../egress/forwarder/host-loopback.js';
import { parsePublishList, type PublishSpec } from '../egress/publish.js';
import { hasNetworkLimits, resolveNetworkLimits, type NetworkLimitsOptions, type ResolvedNetworkLimits } from './network-limits.js';
import { parseRule } from '../egress/policy/rule.js';
import type { AskRequest, RequestDecision } from '../egress/ask/request.js';
import type { AttributionMode } from '../egress/audit/attribution.js';

export type NetMode = 'tap' | 'none' | 'host';
export type UidMode = 'root' | 'same' | 'nobody';
export type StdioMode = 'inherit' | 'pipe';

/** Filesystem mode, mounts, limits, seccomp, capabilities, timeout: see ./hardening.ts. */
export interface SandboxOptions extends HardeningOptions {
  /** Network: the TAP and our stack, only `lo`, or the host's network (no isolation). */
  net?: NetMode;
  mtu?: number;
  uid?: UidMode;
  /** Working directory inside; it is bound writable. Defaults to the caller's cwd. */
  cwd?: string;
  hostname?: string;
  /** Allowlist files (`-F`), rules (`--allow`); either one turns `net` to 'tap' unless given. */
  allowFiles?: string[];
  allow?: string[];
  dnsUpstream?: string[];
  /** Published ports, `[ADDR:]HOSTPORT:SANDBOXPORT[/udp]` (`-p`); any of these three turns `net` to 'tap'. */
  publish?: string[];
  /** Host loopback ports the sandbox may reach through the gateway, `PORT[/udp]` (`--host-loopback`). */
  hostLoopback?: (number | string)[];
  /** Allowed TCP flows leave through this proxy: http://HOST:PORT or socks5://HOST:PORT (`--upstream-proxy`). */
  upstreamProxy?: string;
  sniCheck?: boolean;
  /** Let plain-HTTP GET and HEAD requests on checked flows carry a body (`--http-allow-get-body`); off: such requests reset the flow. */
  httpAllowGetBody?: boolean;
  /**
   * Name the sandbox process (and the package whose script it runs) behind flows and DNS queries in the
   * audit events, the summary and --learn (`--attribution MODE`): 'all' (the default with audit, learn
   * or ask), 'denied' (the default otherwise: only denials pay the lookup), 'off' (`--no-attribution`;
   * false too). For the audit only: the sandboxed code controls its own argv and files.
   */
  attribution?: AttributionMode | boolean;
  /** Resource caps (`--max-flows`, `--max-pending-dials`, `--max-udp-sessions`, `--max-dns-in-flight`, `--max-buffer`): see ./network-limits.ts. */
  caps?: NetworkLimitsOptions;
  audit?: boolean;
  /**
   * Ask mode (`--ask`): a lookup of a name no rule allows, or a connection to an address no rule allows,
   * is held and asked about on the user's terminal: allow once, for this run, and add to `askSave`, or
   * deny; no answer within `askTimeout` seconds (default 20, at most 25) is a no.
   */
  ask?: boolean;
  /** The allowlist file "allow and add" appends to (`--ask-save FILE`). */
  askSave?: string;
  askTimeout?: number;
  /** Ask mode answered by the program instead of a terminal: 'allow' (for this run), 'allow-once', 'allow-save', 'deny'. */
  onRequest?: (request: AskRequest) => RequestDecision | Promise<RequestDecision>;
  learn?: string;
  report?: string;
  pcap?: string;
  /** For tests of the stack: drop, duplicate, reorder or corrupt a share of the frames on tap0. */
  linkFaults?: FaultyEndpointOptions;
  logLevel?: string;
  logFormat?: 'json' | 'pretty';
  logFile?: string;
  /** Print the egress summary table on stderr at exit. */
  summary?: boolean;
  /** stdio of the command: the caller's own (a pseudo-terminal of its own in place of each that is a terminal), or pipes. */
  stdio?: StdioMode;
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedOptions extends Required<Omit<SandboxOptions, 'attribution' | 'askSave' | 'onRequest' | 'learn' | 'report' | 'pcap' | 'linkFaults' | 'logFile' | 'publish' | 'hostLoopback' | 'upstreamProxy' | 'caps' | keyof HardeningOptions>> {
  hardening: ResolvedHardening;
  caps: ResolvedNetworkLimits;
  attribution: AttributionMode;
  publish: PublishSpec[];
  hostLoopback: HostLoopbackPort[];
  upstreamProxy?: ProxySpec;
  askSave?: string;
  onRequest?: SandboxOptions['onRequest'];
  linkFaults?: FaultyEndpointOptions;
  learn?: string;
  report?: string;
  pcap?: string;
  logFile?: string;
}

/** The sandbox's side of the TAP link (the addresses slirp4netns users know). */
export const SANDBOX_NET = {
  ip4: '10.0.2.100/24',
  gateway4: '10.0.2.2',
  dns4: '10.0.2.3',
  ip6: 'fd00::100/64',
  gateway6: 'fd00::2',
  dns6: 'fd00::3',
  sandboxMac: '02:00:00:00:01:00',
} as const;

export const DEFAULT_MTU = 65520;

export function resolveOptions(o: SandboxOptions): ResolvedOptions {
  const ask = Boolean(o.ask || o.onRequest);
  const wantsEgress = Boolean(o.allowFiles?.length || o.allow?.length || o.audit || o.learn || ask);
  const wantsPorts = Boolean(o.publish?.length || o.hostLoopback?.length || o.upstreamProxy);
  const net = o.net ?? (wantsEgress || wantsPorts ? 'tap' : 'none');
  if (wantsPorts && net !== 'tap') throw new TapboxError('EUSAGE', `-p, --host-loopback and --upstream-proxy need --net tap, not --net ${net}; drop one of them.`);
  if (wantsEgress && net !== 'tap') {
    throw new TapboxError('EUSAGE', `allow rules, --audit and --learn need --net tap, not --net ${net}; drop one of them.`);
  }
  checkAsk(o, ask);
  const caps = resolveNetworkLimits(o.caps);
  if (hasNetworkLimits(o.caps) && net !== 'tap') throw new TapboxError('EUSAGE', `the --max-* caps apply to --net tap only, not --net ${net}; add --net tap (or allow rules), or drop them.`);
  if (o.pcap && net !== 'tap') throw new TapboxError('EUSAGE', '--pcap needs --net tap (there is no TAP to capture otherwise).');
  const mtu = o.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65520) {
    throw new TapboxError('EUSAGE', `--mtu ${o.mtu} is out of range; give a whole number from 1280 (IPv6's minimum) to 65520.`);
  }
  return {
    net,
    mtu,
    uid: o.uid ?? 'root',
    cwd: o.cwd ?? process.cwd(),
    hardening: resolveHardening(o, o.cwd ?? process.cwd()),
    hostname: o.hostname ?? 'tapbox',
    allowFiles: o.allowFiles ?? [],
    // Checked here too, so that a bad rule throws at once (spawn() included), before anything starts.
    allow: (o.allow ?? []).map((rule) => (parseRule(rule, '--allow'), rule)),
    dnsUpstream: o.dnsUpstream ?? [],
    publish: parsePublishList(o.publish ?? []),
    hostLoopback: parseHostLoopback(o.hostLoopback ?? []),
    upstreamProxy: o.upstreamProxy ? parseProxyUrl(o.upstreamProxy) : undefined,
    sniCheck: o.sniCheck ?? true,
    httpAllowGetBody: o.httpAllowGetBody ?? false,
    attribution: resolveAttribution(o.attribution, Boolean(o.audit || o.learn || ask)),
    caps,
    audit: Boolean(o.audit || o.learn),
    ask,
    askSave: o.askSave,
    askTimeout: o.askTimeout ?? DEFAULT_ASK_TIMEOUT,
    onRequest: o.onRequest,
    learn: o.learn,
    report: o.report,
    pcap: o.pcap,
    linkFaults: o.linkFaults,
    logLevel: o.logLevel ?? 'info',
    logFormat: o.logFormat ?? 'pretty',
    logFile: o.logFile,
    summary: o.summary ?? false,
    stdio: o.stdio ?? 'inherit',
    env: resolveEnv(o.env, o.clearEnv),
  };
}

/** Seconds ask mode waits for an answer by default; at most MAX_ASK_TIMEOUT (a held SYN waits 30 s). */
export const DEFAULT_ASK_TIMEOUT = 20;
const MAX_ASK_TIMEOUT = 25;

function checkAsk(o: SandboxOptions, ask: boolean): void {
  if (o.askSave !== undefined && !ask) throw new TapboxError('EUSAGE', '--ask-save only works in ask mode; add --ask.');
  if (!ask) return;
  if (o.audit || o.learn) throw new TapboxError('EUSAGE', `--ask and ${o.learn ? '--learn' : '--audit'} contradict each other (audit mode allows everything, so nothing would be asked); give one.`);
  const t = o.askTimeout;
  if (t !== undefined && (!Number.isInteger(t) || t < 1 || t > MAX_ASK_TIMEOUT)) {
    throw new TapboxError('EUSAGE', `--ask-timeout ${t} is out of range; give a whole number of seconds from 1 to ${MAX_ASK_TIMEOUT} (a held connection waits 30 s at most).`);
  }
  if (!o.onRequest && !hasTerminal()) {
    throw new TapboxError('EUSAGE', '--ask asks on your terminal, and tapbox has none here; run it from a terminal (or, in the library, answer with onRequest).');
  }
}

function resolveAttribution(mode: SandboxOptions['attribution'], auditing: boolean): AttributionMode {
  if (mode === undefined) return auditing ? 'all' : 'denied';
  if (typeof mode === 'boolean') return mode ? 'all' : 'off';
  if (mode === 'all' || mode === 'denied' || mode === 'off') return mode;
  throw new TapboxError('EUSAGE', `attribution "${String(mode)}" is not a mode; give all, denied or off.`);
}

/** Can tapbox ask on a terminal? (Its controlling terminal, /dev/tty, opens.) */
function hasTerminal(): boolean {
  try {
    closeSync(openSync('/dev/tty', 'r+'));
    return true;
  } catch {
    return false;
  }
}
