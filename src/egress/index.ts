// The egress firewall, as the supervisor sees it: load the rules (a bad one stops everything before the
// sandbox starts), build the DNS proxy and the forwarder the stack calls, and at the end write the
// report and the learned allowlist, returning the summary. Events: 'dns', 'flow', 'deny', 'flowEnd', 'limit'.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { open, realpath, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Forwarder } from '../../netstack/index.js';
import { Attributor, type AttributionMode } from './audit/attribution.js';
import { Auditor } from './audit/auditor.js';
import { formatLearnedAllowlist } from './audit/learn.js';
import { createLogger, type AuditLog } from './audit/logger.js';
import { EgressStats, type EgressSummary } from './audit/summary.js';
import { DnsProxy } from './dns/proxy.js';
import { liveHostAddresses } from './dns/rebinding.js';
import { hostResolvers, parseUpstream, Upstream } from './dns/upstream.js';
import { TapboxError } from '../errors.js';
import { createForwarder, type SandboxAddresses } from './forwarder/index.js';
import type { ProxySpec } from './forwarder/dialer.js';
import type { HostLoopbackPort } from './forwarder/host-loopback.js';
import type { InboundFlows } from './forwarder/inbound.js';
import { load } from './policy/allowlist.js';
import { Policy } from './policy/policy.js';
import { parseRule } from './policy/rule.js';
import { LivePolicy } from './live-policy.js';
import { Asker, type Prompter } from './ask/asker.js';

export type { EgressSummary } from './audit/summary.js';
export type { DnsEvent, FlowEndEvent, FlowEvent } from './audit/events.js';

export interface EgressOptions {
  allowFiles: string[];
  allow: string[];
  dnsUpstream: string[];
  sniCheck: boolean;
  httpAllowGetBody?: boolean;
  /** The launcher's pid once it runs: set, the process behind flows and DNS queries is named (attribution.ts). */
  launcherPid?: () => number | undefined;
  /** Which flows and queries are attributed ('all' unless told). */
  attribution?: Exclude<AttributionMode, 'off'>;
  audit: boolean;
  /** Ask mode: who answers, how long to wait, where "allow and save" appends (ask/asker.ts). */
  ask?: { prompt: Prompter; timeoutMs: number; saveFile?: string };
  learn?: string;
  report?: string;
  logLevel: string;
  logFormat: 'json' | 'pretty';
  logFile?: string;
  sandbox: SandboxAddresses;
  /** --host-loopback ports and --upstream-proxy (see forwarder/host-loopback.ts, forwarder/dialer.ts). */
  hostLoopback?: HostLoopbackPort[];
  upstreamProxy?: ProxySpec;
  /** The open-flow limit (with the allowlists', the smaller applies) and the DNS proxy's in-flight limit (options/network-limits.ts). */
  caps?: { flows?: number; dnsInFlight?: number };
}

/** What the supervisor adds to the --report JSON: the sandbox's usage from its cgroup (null without one). */
export interface ReportExtras {
  usage: object | null;
}

export interface Egress extends EventEmitter {
  forwarder: Forwarder;
  /** Published connections (-p) take flow slots and are audited through this (forwarder/inbound.ts). */
  inbound: InboundFlows;
  logger: AuditLog;
  policy: Policy;
  /** Logs flows and cap hits: the stack's caps report to `auditor.limitHit` (rate-limited 'limit' events). */
  auditor: Auditor;
  /** Changes the policy while the sandbox runs (emits 'policy' events). */
  live: LivePolicy;
  /** The report's figures so far (bytes of the flows that ended, and of those still open so far). */
  summary(): EgressSummary;
  /** Stops every flow and DNS query, writes the report (with the supervisor's `extras`) and the learned allowlist. */
  close(extras?: ReportExtras): Promise<EgressSummary>;
}

/** Throws TapboxError EPOLICY on a bad rule or allowlist file. */
export async function createEgress(opts: EgressOptions): Promise<Egress> {
  const logger = createLogger(opts);
  const audit = opts.audit || opts.learn !== undefined;
  const lists = await Promise.all(opts.allowFiles.map((f) => load(f)));
  lists.push({ rules: opts.allow.map((r) => parseRule(r, '--allow')) });
  // Where the report and the learned allowlist go, as the directories are now, before the sandbox runs
  // (it may swap a directory of the path for a symlink; writeOutput then refuses).
  const outputDirs = { report: await outputDir(opts.report, '--report'), learn: await outputDir(opts.learn, '--learn') };
  const hostAddrs = liveHostAddresses();
  const policy = Policy.fromAllowlists(lists, { audit, maxFlows: opts.caps?.flows, hostAddrs });
  const upstream = new Upstream({ servers: opts.dnsUpstream.length ? opts.dnsUpstream.map(parseUpstream) : hostResolvers() });

  const emitter = new EventEmitter();
  const stats = new EgressStats();
  const auditor = new Auditor(logger, emitter, stats, audit);
  // Ask mode's questions (made once the live policy exists, which needs the forwarder).
  let asker: Asker | undefined;
  const ask = opts.ask ? (...args: Parameters<Asker['ask']>) => asker!.ask(...args) : undefined;
  const dns = new DnsProxy({ policy, upstream, hostAddrs, maxInFlight: opts.caps?.dnsInFlight, onEvent: (e) => auditor.dns(e), onLimit: auditor.limitHit, ask });
  const attributor = opts.launcherPid ? new Attributor(opts.launcherPid) : undefined;
  const forwarder = createForwarder({ policy, dns, auditor, attributor, attribution: opts.attribution, ask, sandbox: opts.sandbox, sniCheck: opts.sniCheck, httpAllowGetBody: opts.httpAllowGetBody, hostLoopback: opts.hostLoopback, upstreamProxy: opts.upstreamProxy });
  logger.debug({ rules: policy.rules.length, audit, maxFlows: policy.maxFlows }, `egress policy loaded: ${policy.rules.length} rules${audit ? ', audit mode' : ''}`);

  const live = new LivePolicy(policy, forwarder, auditor);
  if (opts.ask) asker = new Asker({ ...opts.ask, live, auditor });

  let closing: Promise<EgressSummary> | undefined;
  const close = async (extras: ReportExtras): Promise<EgressSummary> => {
    asker?.close();
    forwarder.close();
    dns.close();
    upstream.close();
    auditor.close();
    attributor?.close();
    if (attributor) logger.debug({ attribution: attributor.stats }, `attribution: ${attributor.stats.lookups} lookups, ${attributor.stats.totalMs.toFixed(1)} ms in all`);
    // Closed sockets report their last bytes on their 'close' events, which libuv runs in the close
    // phase, after this turn's setImmediate callbacks: wait two turns so that every flowEnd is in.
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    const summary = stats.summary();
    await writeOutput(opts.report, `${JSON.stringify({ mode: audit ? 'audit' : 'enforce', ...summary, ...extras }, null, 2)}\n`, 'report', outputDirs.report);
    await writeOutput(opts.learn, formatLearnedAllowlist(stats.learnedFlows(), stats.lookedUp), 'learned allowlist', outputDirs.learn);
    return summary;
  };
  return Object.assign(emitter, {
    forwarder,
    inbound: forwarder.inbound,
    logger,
    policy,
    auditor,
    live,
    summary: () => stats.summary(forwarder.relayedFlows().map(({ flow, bytes }) => ({ ...flow, bytesUp: bytes().up, bytesDown: bytes().down }))),
    close: (extras: ReportExtras = { usage: null }) => (closing ??= close(extras)),
  });
}

/** The real path of the directory an output file goes to; throws EUSAGE when it does not exist. */
async function outputDir(path: string | undefined, flag: string): Promise<string | undefined> {
  if (path === undefined) return undefined;
  const dir = await realDir(path);
  if (dir === undefined) throw new TapboxError('EUSAGE', `${flag} ${path}: no such directory ${dirname(path)}; create it first (the file is written there at exit).`);
  return dir;
}

/** The real path of the directory `path` is in; undefined without a path or when it does not exist. */
async function realDir(path: string | undefined): Promise<string | undefined> {
  return path === undefined ? undefined : realpath(dirname(path)).catch(() => undefined);
}

/**
 * Writes `text` to `path` as a new file: the sandbox may have planted a symlink (or a hard link) there
 * in a writable directory, and writing through it would overwrite a host file of its choosing. So the
 * text goes to a fresh file (O_EXCL, random name, same directory) that is renamed over `path`: rename
 * replaces a symlink itself, never its target. The temporary file is removed on failure. `expectedDir`:
 * the real path of the file's directory before the run; if it resolves elsewhere now (a directory of
 * the path became a symlink), nothing is written.
 */
export async function writeOutput(path: string | undefined, text: string, what: string, expectedDir?: string): Promise<void> {
  if (!path) return;
  if (expectedDir !== undefined && (await realDir(path)) !== expectedDir) {
    throw new TapboxError('EINTERNAL', `cannot write the ${what} to ${path}: its directory is no longer ${expectedDir} (replaced by a symlink during the run?); nothing was written.`);
  }
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  try {
    const file = await open(temp, 'wx', 0o644);
    created = true;
    try {
      await file.writeFile(text);
    } finally {
      await file.close();
    }
    await rename(temp, path);
    created = false;
  } catch (err) {
    if (created) await unlink(temp).catch(() => {});
    throw new TapboxError('EINTERNAL', `cannot write the ${what} to ${path}: ${(err as Error).message}; check that its directory exists and is writable.`);
  }
}
