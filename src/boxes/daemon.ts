// A detached box's supervisor: a daemon of its own (boxes.run({ detach: true }) spawns this file in a
// new session, stdio to supervisor.log, no terminal). It runs the box as a one-shot run does, through
// a Sandbox (same policy, limits, cgroup, filesystem), with the command's stdout and stderr going to
// the capped output log, and serves the control socket that `ps`, `stop`, `kill`, `exec`, `inspect`
// talk to. When the command has exited it writes exit.json, removes its socket and exits (with --rm,
// it removes the box's state too).
//
// Protocol with the starter, on the IPC channel: it sends one DaemonSpec; we answer { ok: true } once
// the command runs (or ran), or { ok: false, code, message } when nothing ran; then we disconnect.
import { mkdirSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { TapboxError } from '../errors.js';
import { launcherArgs } from '../supervisor/launcher.js';
import { SANDBOX_NET, type SandboxOptions } from '../options/options.js';
import { Sandbox, type SandboxResult } from '../supervisor/sandbox.js';
import type { Usage } from '../supervisor/cgroup.js';
import type { EgressSummary } from '../egress/audit/summary.js';
import { serveControl, type Request } from './control.js';
import { applyPolicy, PolicyChanges } from './policy.js';
import { captureOutput } from './logs.js';
import { boxPaths, type BoxPaths } from './paths.js';
import { commandPid, descendants } from './procs.js';
import { writeJson, type BoxExit, type BoxRecord } from './record.js';

export interface DaemonSpec {
  name: string;
  command: string[];
  options: SandboxOptions;
  autoRemove: boolean;
}

export type DaemonReply = { ok: true } | { ok: false; code: TapboxError['code']; message: string };

/** What the supervisor tells about a running box. */
export interface LiveStatus {
  startedAt: string;
  launcherPid: number | null;
  commandPid: number | null;
  flows: number;
  denials: number;
  memoryBytes: number;
  /** From the box's cgroup, where it has one. */
  usage: Usage | null;
  traffic: { bytesUp: number; bytesDown: number } | null;
  addresses: { ip4: string; ip6: string; gateway4: string; gateway6: string; dns4: string; dns6: string } | null;
  published: unknown[];
  rules: string[];
  /** Per destination and in all so far, as in the --report JSON (bytes: of ended flows and, so far, of open ones); null without --net tap. */
  egress: EgressSummary | null;
}

/** What `exec` needs: the box command's host pid, the launcher's arguments, the box's environment. */
export interface ExecPlan {
  pid: number;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** The rules in force; none while the network is not up yet. */
function safeRules(sandbox: Sandbox): string[] {
  try {
    return sandbox.rules().map((r) => r.text);
  } catch {
    return [];
  }
}

function reply(message: DaemonReply): void {
  process.send?.(message);
  process.disconnect?.();
}

async function superviseBox(spec: DaemonSpec): Promise<void> {
  const paths = boxPaths(spec.name);
  const auditLog = spec.options.logFile ?? paths.audit;
  const sandbox = new Sandbox(spec.command, {
    ...spec.options,
    stdio: 'pipe',
    logFile: auditLog,
    logFormat: spec.options.logFormat ?? 'json',
  });
  let flows = 0;
  let denials = 0;
  sandbox.on('flow', (e) => {
    if (e.verdict === 'allow') flows++;
  });
  sandbox.on('deny', () => denials++);
  const changes = new PolicyChanges(sandbox);
  sandbox.on('warning', (message) => process.stderr.write(`tapbox: warning: ${message}\n`));
  captureOutput(paths.output, [sandbox.stdout!, sandbox.stderr!]);
  sandbox.stdin!.end();

  const startedAt = new Date().toISOString();
  const status = (): LiveStatus => {
    const o = sandbox.options;
    const launcher = sandbox.pid ?? null;
    return {
      startedAt,
      launcherPid: launcher,
      commandPid: launcher === null ? null : commandPid(launcher),
      flows,
      denials,
      memoryBytes: sandbox.usage()?.memoryBytes ?? (launcher === null ? 0 : descendants(launcher).reduce((sum, p) => sum + p.rssBytes, 0)),
      usage: sandbox.usage(),
      traffic: sandbox.traffic,
      addresses: o.net === 'tap' ? { ip4: SANDBOX_NET.ip4, ip6: SANDBOX_NET.ip6, gateway4: SANDBOX_NET.gateway4, gateway6: SANDBOX_NET.gateway6, dns4: SANDBOX_NET.dns4, dns6: SANDBOX_NET.dns6 } : null,
      published: o.publish,
      rules: o.net === 'tap' && sandbox.exitCode === null ? safeRules(sandbox) : [],
      egress: sandbox.egressSummary(),
    };
  };

  mkdirSync(paths.runtime, { mode: 0o700 });
  const closed = new Promise((r) => sandbox.once('close', r));
  const running = sandbox.run();
  const server = await serveControl(paths.socket, (req) => handle(req, spec.name, sandbox, status, changes, running.catch(() => null)));
  const failure = await commandStarted(sandbox, running);
  if (failure) {
    cleanUp(server, paths, true);
    reply({ ok: false, code: failure.code, message: failure.message });
    return;
  }
  const record: BoxRecord = {
    name: spec.name,
    command: spec.command,
    options: spec.options,
    cwd: process.cwd(),
    net: sandbox.options.net,
    created: startedAt,
    supervisorPid: process.pid,
    launcherPid: sandbox.pid ?? 0,
    autoRemove: spec.autoRemove,
    auditLog,
    cgroup: sandbox.cgroupPath,
  };
  writeJson(paths.record, record);
  reply({ ok: true });

  const result = await running.catch(() => null);
  // The output is in the log once 'close' came (bounded: a pty or pipe held open by a stray process).
  await Promise.race([closed, delay(2000)]);
  const exit: BoxExit = { code: result?.code ?? 125, signal: result?.signal ?? null, ended: new Date().toISOString(), flows, denials };
  writeJson(paths.exit, exit);
  cleanUp(server, paths, spec.autoRemove);
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the box's command runs (or ran: a short command), null; or with why nothing ran. */
async function commandStarted(sandbox: Sandbox, running: Promise<SandboxResult>): Promise<TapboxError | null> {
  let failure: TapboxError | null | undefined;
  running.then(
    () => (failure = null),
    (e: unknown) => (failure = e instanceof TapboxError ? e : new TapboxError('EINTERNAL', String(e))),
  );
  while (failure === undefined) {
    if (sandbox.pid !== undefined && commandPid(sandbox.pid) !== null) return null;
    await delay(20);
  }
  return failure;
}

/** Closes the socket and removes the runtime directory (and with `all`, the box's state). */
function cleanUp(server: Server, paths: BoxPaths, all: boolean): void {
  server.close();
  rmSync(paths.runtime, { recursive: true, force: true });
  if (all) rmSync(paths.state, { recursive: true, force: true });
}

async function handle(req: Request, name: string, sandbox: Sandbox, status: () => LiveStatus, changes: PolicyChanges, settled: Promise<unknown>): Promise<unknown> {
  switch (req.op) {
    case 'allow':
    case 'deny':
    case 'policy':
      return applyPolicy(req, name, sandbox, changes);
    case 'status':
      return status();
    case 'kill':
      sandbox.kill(req.signal);
      return null;
    case 'stop': {
      sandbox.kill('SIGTERM');
      const timer = setTimeout(() => sandbox.kill('SIGKILL'), Math.max(0, req.timeout) * 1000);
      await settled;
      clearTimeout(timer);
      return { code: sandbox.exitCode, signal: sandbox.signalCode };
    }
    case 'exec': {
      const pid = sandbox.pid === undefined ? null : commandPid(sandbox.pid);
      if (pid === null) throw new TapboxError('ENOBOX', 'the box has no running command to join; it is starting or stopping.');
      const o = sandbox.options;
      const args = launcherArgs(o, [], sandbox.cgroupPath);
      return { pid, args: args.slice(0, args.lastIndexOf('--')), env: o.env, cwd: o.cwd } satisfies ExecPlan;
    }
    default:
      throw new TapboxError('EUSAGE', `unknown request ${(req as { op: string }).op}.`);
  }
}

process.once('message', (spec: DaemonSpec) => {
  superviseBox(spec).catch((e: unknown) => {
    const err = e instanceof TapboxError ? e : new TapboxError('EINTERNAL', (e as Error)?.stack ?? String(e));
    process.stderr.write(`tapbox: ${err.message}\n`);
    if (process.connected) reply({ ok: false, code: err.code, message: err.message });
    process.exitCode = 1;
  });
});
