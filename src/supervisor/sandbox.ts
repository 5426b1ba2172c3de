// The supervisor's side of one sandbox (docs/architecture.md, "Processes"):
//
//   Sandbox ──spawn──▶ launcher (host namespaces) ──clone──▶ PID 1 of the sandbox ──fork/exec──▶ command
//      ▲ control socket (SOCK_SEQPACKET on the launcher's fd 3):
//      │   launcher → "TAP" + the TAP fd (SCM_RIGHTS), or "ERR <CODE> <sentence>"; "WARN <sentence>" (a fallback)
//      │   supervisor → "GO" once the stack runs on the TAP: the command starts only then
//
// The supervisor keeps the TAP's only reader, so no frame leaves the sandbox except through our stack
// and the egress policy. It fails closed: the launcher and PID 1 have PR_SET_PDEATHSIG, so if this
// process dies, the sandbox dies with it.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, closeSync, constants } from 'node:fs';
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import { dirname, resolve } from 'node:path';
import { PassThrough, type Duplex, type Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { launcherError, TapboxError } from '../errors.js';
import type { DnsEvent, FlowEndEvent, FlowEvent, LimitEvent } from '../egress/audit/events.js';
import { formatSummary, type EgressSummary } from '../egress/audit/summary.js';
import { findCgroupPlace, perProcessLimits, SandboxCgroup, type Usage } from './cgroup.js';
import { SystemdScope } from './systemd-scope.js';
import type { DenyOptions, LivePolicy, PolicyChangeEvent } from '../egress/live-policy.js';
import type { AskEvent } from '../egress/ask/asker.js';
import type { Rule } from '../egress/policy/rule.js';
import { launcherArgs, launcherPath } from './launcher.js';
import { leaseRoot } from './root-lease.js';
import { resolveOptions, type ResolvedOptions, type SandboxOptions } from '../options/options.js';
import { closeFd, recvMessage, sendMessage, socketpair } from './control.js';
import type { Network } from './network.js';
import { closePtySlave, openPty, relayTerminal, terminalFds, type Pty, type Terminals } from './terminal.js';

export interface SandboxResult {
  /** The command's exit code; 128+N when a signal N ended it. */
  code: number;
  /**
   * The signal that ended the command, else null. The sandbox's PID 1 reports a command killed by
   * signal N as exit status 128+N (as a shell does), so such a status reads as that signal.
   */
  signal: NodeJS.Signals | null;
  /** The egress summary (what the command talked to) under --net tap; null for the other modes. */
  report: EgressSummary | null;
  /** What the sandbox used (memory, CPU, OOM kills), from its cgroup; null where it had none. */
  usage: Usage | null;
}

/** The events of a Sandbox. The egress ones carry the same fields as the audit log's lines. */
export interface SandboxEvents {
  /** The launcher started (the command starts once the sandbox is set up). */
  spawn: [];
  /** The command exited. */
  exit: [code: number, signal: NodeJS.Signals | null];
  /** The command exited, the network is closed (`report` is set) and stdout/stderr ended. */
  close: [code: number, signal: NodeJS.Signals | null];
  /** Setting the sandbox up failed (only from `start()`; `run()` rejects instead). Nothing ran. */
  error: [error: TapboxError];
  /** A DNS query the proxy answered (or refused). */
  dns: [event: DnsEvent];
  /** A new flow, allowed or denied. */
  flow: [event: FlowEvent];
  /** A denied flow or DNS query (also reported as 'flow' / 'dns'). */
  deny: [event: FlowEvent | DnsEvent];
  /** An allowed flow ended, with its byte counts. */
  flowEnd: [event: FlowEndEvent];
  /** A resource cap refused something (rate-limited: `count` hits per event). */
  limit: [event: LimitEvent];
  /** Something the caller should know before the command runs (e.g. limits that hold per process only). */
  warning: [message: string];
  /** The policy changed while the command runs (allow(), deny(), an ask answer). */
  policy: [event: PolicyChangeEvent];
  /** Ask mode answered a question (onRequest's or the terminal's answer, or no answer in time). */
  ask: [event: AskEvent];
}

/** Signals the supervisor passes on to the command. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** Exit status of the launcher when it could not set the sandbox up (as docker/podman use 125). */
const SETUP_FAILED = 125;

export class Sandbox extends EventEmitter<SandboxEvents> {
  readonly options: ResolvedOptions;
  /** With `stdio: 'pipe'`, the command's stdin, stdout and stderr (usable at once); else null. */
  readonly stdin: Writable | null = null;
  readonly stdout: Readable | null = null;
  readonly stderr: Readable | null = null;
  /** Set when the command exited: its exit code and the signal that ended it (see SandboxResult). */
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** The egress summary, set before 'close' (under --net tap). */
  report: EgressSummary | null = null;
  private child: ChildProcess | null = null;
  private network: Network | null = null;
  private cgroup: SandboxCgroup | null = null;
  /** The scope a user systemd makes for the sandbox's cgroup, where ours is not delegated to us. */
  private scope: SystemdScope | null = null;
  private setupError: TapboxError | null = null;
  private started = false;
  private pendingSignal: NodeJS.Signals | null = null;
  private attachFailed = false;
  private scopeFailed = false;

  constructor(
    readonly command: string[],
    options: SandboxOptions = {},
  ) {
    super();
    if (command.length === 0 || !command[0]) {
      throw new TapboxError('EUSAGE', 'no command given; put the command after the options, e.g. `tapbox -- bash`.');
    }
    try {
      this.options = resolveOptions(options);
    } catch (e) {
      throw asSetupError(e);
    }
    if (this.options.stdio === 'pipe') {
      this.stdin = new PassThrough();
      this.stdout = new PassThrough();
      this.stderr = new PassThrough();
    }
  }

  /** Starts the command and returns at once, like child_process.spawn: watch 'exit', 'close', 'error'. */
  start(): this {
    // On the next tick, so that listeners attached right after start() see 'spawn' and every event.
    process.nextTick(() =>
      this.run().catch((e: unknown) => {
        this.emit('error', e instanceof TapboxError ? e : new TapboxError('EINTERNAL', String((e as Error)?.message ?? e)));
      }),
    );
    return this;
  }

  /** Bytes on tap0 so far, up (from the sandbox) and down; null unless --net tap. */
  get traffic(): { bytesUp: number; bytesDown: number } | null {
    return this.network?.traffic() ?? null;
  }

  /** What the sandbox uses now, from its cgroup; null without one (or before it started). */
  usage(): Usage | null {
    return this.cgroup?.usage() ?? null;
  }

  /**
   * Allows RULE (allowlist syntax) from now on, while the command runs: lookups and new flows see it at
   * once; a deny rule of the same scope is replaced. An audit event ('policy'). Throws TapboxError:
   * EPOLICY for a bad rule, EUSAGE before the network is up ('spawn') or without --net tap. `origin`
   * names who changed it in the audit event.
   */
  allow(rule: string, origin = 'sandbox.allow'): Rule {
    return this.livePolicy('allow').allow(rule, origin);
  }

  /**
   * Denies RULE ("!" optional) from now on; with `resetFlows`, the open flows it covers are reset (TCP)
   * or refused (UDP) too. An allow rule of the same scope is replaced. An audit event ('policy').
   */
  deny(rule: string, options: DenyOptions = {}, origin = 'sandbox.deny'): Rule {
    return this.livePolicy('deny').deny(rule, options, origin);
  }

  /** Per destination and in all, what the sandbox talked to so far (the report's shape); null without --net tap or before the network is up. */
  egressSummary(): EgressSummary | null {
    return this.network?.egress.summary() ?? null;
  }

  /** The egress rules in force now (from -F, --allow, and changes made while it runs). */
  rules(): readonly Rule[] {
    return this.livePolicy('rules').rules();
  }

  private livePolicy(method: string): LivePolicy {
    if (this.options.net !== 'tap') throw new TapboxError('EUSAGE', `${method}(): this sandbox has no egress policy (--net ${this.options.net}); give it allow rules or net: 'tap'.`);
    if (!this.network) throw new TapboxError('EUSAGE', `${method}(): the sandbox's network is not up yet; call it once the sandbox emitted 'spawn'.`);
    return this.network.egress.live;
  }

  /** The sandbox's cgroup directory, where it has one (a box's `exec` joins it). */
  get cgroupPath(): string | null {
    return this.cgroup?.path ?? null;
  }

  /** The launcher's pid (host PID namespace), once started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Runs the command to its end. Setup failures reject with a TapboxError (and nothing ran); the
   * command's own failure does not: it is in `code`.
   */
  async run(): Promise<SandboxResult> {
    if (this.started) throw new TapboxError('EUSAGE', 'this sandbox was already started; make a new Sandbox for each run.');
    this.started = true;
    const o = this.options;
    let network: Network | null = null;
    let lease: number | null = null;
    let result: SandboxResult;
    try {
      try {
        checkOutputPaths(o);
        if (o.net === 'tap') checkTunDevice();
        if (o.hardening.rootfs !== undefined) lease = leaseRoot(o.hardening.rootfs);
        await this.openCgroup();
        // The stack and the egress side are loaded only when this run needs them (start-up time).
        network = o.net === 'tap' ? await (await import('./network.js')).startNetwork(o, this, () => this.pid) : null;
      } catch (e) {
        throw asSetupError(e);
      }
      this.network = network;
      const { code, signal } = this.pendingSignal ? { code: 128 + signalNumber(this.pendingSignal), signal: this.pendingSignal } : await this.launch(network);
      [this.exitCode, this.signalCode] = [code, signal];
      this.emit('exit', code, signal);
      result = { code, signal, report: null, usage: (await this.cgroup?.close()) ?? null };
      await this.scope?.close();
    } catch (e) {
      this.endStreams();
      await this.cgroup?.close();
      await this.scope?.close();
      await network?.close().catch(() => undefined);
      throw asSetupError(e);
    } finally {
      if (lease !== null) closeSync(lease); // the launcher has exited: nothing runs on the root any more
    }
    result.report = this.report = (await network?.close(result.usage)) ?? null;
    // A run that never touched the network has nothing to summarize: stay quiet.
    if (this.options.summary && result.report && result.report.destinations.length > 0) {
      process.stderr.write(formatSummary(result.report, process.stderr.isTTY === true));
    }
    void this.closeWhenDrained(result);
    return result;
  }

  /**
   * The sandbox's cgroup, with its limits, where this user has a delegated cgroup v2, or a user systemd
   * to delegate a scope (made as the launcher starts, and only when limits are asked for: it costs a
   * systemd-run); else the limits hold per process: a warning says so, or, with requireLimits, nothing runs.
   */
  private async openCgroup(): Promise<void> {
    const { limits, requireLimits } = this.options.hardening;
    const place = findCgroupPlace();
    if (place.systemd) {
      if (limits.memory !== undefined || limits.pids !== undefined || limits.cpus !== undefined || requireLimits) this.scope = new SystemdScope(place.systemd, limits);
      return;
    }
    const created = place.base === undefined ? place.reason : await SandboxCgroup.create(place.base, limits);
    if (created instanceof SandboxCgroup) {
      this.cgroup = created;
      return;
    }
    if (limits.memory === undefined && limits.pids === undefined && limits.cpus === undefined && !requireLimits) return;
    if (requireLimits) {
      throw new TapboxError('ELIMIT', `--require-limits: ${created}, so the limits can't hold for the sandbox as a whole; run where a cgroup v2 is delegated to you or a user systemd runs (tapbox doctor tells), or drop --require-limits.`);
    }
    this.emit('warning', perProcessLimits(created));
  }

  /** Spawns the launcher and waits for the command's end. */
  private async launch(network: Network | null): Promise<{ code: number; signal: NodeJS.Signals | null }> {
    const o = this.options;
    const [ours, theirs] = socketpair();
    let pty: Pty | null = null;
    let terminals: Terminals = [false, false, false];
    let child: ChildProcess;
    try {
      // Each of the caller's stdin, stdout, stderr that is a terminal is replaced by a pty of our own.
      terminals = o.stdio === 'inherit' ? terminalFds() : [false, false, false];
      const slave = terminals.some(Boolean) ? (pty = openPty(terminals)).slave : null;
      const stdio: StdioOptions =
        o.stdio === 'pipe' ? ['pipe', 'pipe', 'pipe', theirs] : [...terminals.map((isTerminal) => (isTerminal ? slave! : 'inherit')), theirs];
      // Through the user systemd's scope, the launcher's --cgroup is filled in by the scope's shim.
      const args = launcherArgs(o, this.command, this.cgroup?.path ?? (this.scope ? 'from-scope' : null));
      const run = this.scope ? this.scope.command(launcherPath(), args, o.env) : { file: launcherPath(), args, env: o.env };
      // detached: the launcher gets its own process group, so a Ctrl-C on the caller's terminal reaches
      // only us, and we forward it once.
      child = spawn(run.file, run.args, { stdio: this.scope ? [...(stdio as unknown[]), 'pipe'] as StdioOptions : stdio, detached: true, env: run.env, cwd: o.cwd });
    } catch (e) {
      closeFd(ours);
      throw asSetupError(e);
    } finally {
      closeFd(theirs);
      if (pty) closePtySlave(pty);
    }
    this.child = child;
    // The scope's shim waits on fd 4 for the sandbox's cgroup before it execs the launcher.
    const scopeOpened = this.scope?.open(child.stdio[4] as Duplex).then(
      (cgroup) => void (this.cgroup = cgroup),
      (e: unknown) => {
        this.setupError = asSetupError(e);
        this.scopeFailed = true;
        this.kill('SIGKILL');
      },
    );
    if (o.stdio === 'pipe') this.connectStreams(child);
    const relay = pty ? relayTerminal(pty, terminals) : null;
    const exited = new Promise<{ code: number; signal: NodeJS.Signals | null }>((resolveExit) => {
      child.on('exit', (code, signal) => {
        if (signal) resolveExit({ code: 128 + signalNumber(signal), signal });
        else resolveExit({ code: code ?? 0, signal: signalOfStatus(code ?? 0) });
      });
    });
    const spawnFailed = new Promise<never>((_, reject) => child.on('error', (e) => reject(new TapboxError('EINTERNAL', `cannot start the launcher: ${e.message}; run \`npm install\` in the tapbox package again.`))));
    this.emit('spawn');

    const control = this.serveControl(ours, network);
    try {
      const status = await Promise.race([exited, spawnFailed]);
      await control;
      await scopeOpened;
      // All the command's output is relayed before we return, unless the pty stays open and silent.
      if (relay) await relay.settled(200);
      // The command never started when the stack could not attach (we killed the launcher before GO).
      if (this.setupError && (this.attachFailed || this.scopeFailed || status.code === SETUP_FAILED || status.code === 126 || status.code === 127)) throw this.setupError;
      return status;
    } finally {
      relay?.restore();
      closeFd(ours);
    }
  }

  /** With stdio 'pipe': the launcher's pipes feed the streams the caller already holds. */
  private connectStreams(child: ChildProcess): void {
    child.stdout!.pipe(this.stdout as PassThrough);
    child.stderr!.pipe(this.stderr as PassThrough);
    // The command may exit without reading its input: that is not an error of ours.
    child.stdin!.on('error', () => undefined);
    (this.stdin as PassThrough).pipe(child.stdin!);
    child.on('exit', () => (this.stdin as PassThrough).unpipe(child.stdin!));
  }

  /** Ends stdout and stderr when no command ran (a setup failure). */
  private endStreams(): void {
    if (this.child) return;
    (this.stdout as PassThrough | null)?.end();
    (this.stderr as PassThrough | null)?.end();
  }

  /**
   * 'close' comes once the command's stdout and stderr have been handed over in full, as with a
   * ChildProcess: whether the caller reads them or not (a stream nobody reads holds its last bytes).
   */
  private async closeWhenDrained(result: SandboxResult): Promise<void> {
    if (this.child) {
      const child = this.child;
      if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    }
    this.endStreams();
    await Promise.all([this.stdout, this.stderr].map((s) => (s ? finished(s, { readable: false }).catch(() => undefined) : undefined)));
    this.emit('close', result.code, result.signal);
  }

  /** Sends a signal to the command (through the launcher and PID 1). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.child) return this.child.kill(signal);
    // Not launched yet: the command will not start, and the run ends as if the signal had ended it.
    if (this.exitCode !== null) return false;
    this.pendingSignal ??= signal;
    return true;
  }

  /** Reads the launcher's control messages until it closes its end (at exec, or on exit). */
  private serveControl(fd: number, network: Network | null): Promise<void> {
    if (!network) sendGo(fd);
    return new Promise((resolveDone) => {
      const next = () =>
        recvMessage(fd, (err, msg) => {
          // ECONNRESET can come before a queued ERR when the launcher exits right after sending it:
          // keep reading until the end of the stream.
          if (err && (err as NodeJS.ErrnoException).code === 'ECONNRESET') return next();
          if (err || !msg || (msg.data.length === 0 && msg.fd === undefined)) return resolveDone();
          const text = msg.data.toString('utf8');
          if (text === 'TAP' && msg.fd !== undefined && network) {
            try {
              network.attach(msg.fd);
              sendGo(fd);
            } catch (e) {
              this.setupError = e instanceof TapboxError ? e : new TapboxError('ENETCFG', `cannot start the network stack: ${(e as Error).message}.`);
              this.attachFailed = true;
              this.kill('SIGKILL');
            }
          } else if (text.startsWith('WARN ')) {
            this.emit('warning', text.slice(5));
          } else if (text.startsWith('ERR ')) {
            this.setupError = launcherError(text);
          } else if (msg.fd !== undefined) {
            closeFd(msg.fd);
          }
          next();
        });
      next();
    });
  }
}

/** Lets the launcher start the command. EPIPE means it already exited: its exit status tells why. */
function sendGo(fd: number): void {
  try {
    sendMessage(fd, Buffer.from('GO'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
}

/** The files tapbox writes (--report, --learn, --log-file, --pcap) must be writable before anything runs. */
function checkOutputPaths(o: ResolvedOptions): void {
  const outputs: [string | undefined, string][] = [[o.report, '--report'], [o.learn, '--learn'], [o.logFile, '--log-file'], [o.pcap, '--pcap'], [o.askSave, '--ask-save']];
  for (const [path, flag] of outputs) {
    if (path === undefined) continue;
    const dir = dirname(resolve(path));
    try {
      accessSync(dir, constants.W_OK);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'is not writable by you';
      throw new TapboxError('EUSAGE', `${flag} ${path}: the directory ${dir} ${why}; give a path in a writable directory.`);
    }
  }
}

function checkTunDevice(): void {
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new TapboxError(
      'ETUN',
      missing
        ? '/dev/net/tun does not exist, so the sandbox network cannot be created; load the module with `sudo modprobe tun` (or use --net none).'
        : '/dev/net/tun is not readable and writable by you, so the sandbox network cannot be created; run `sudo chmod 0666 /dev/net/tun` (the mode Debian and Ubuntu ship), or use --net none.',
    );
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? osConstants.signals[signal] : 0;
}

/** The signal an exit status of 128+N stands for, else null. */
function signalOfStatus(code: number): NodeJS.Signals | null {
  if (code <= 128) return null;
  const entry = Object.entries(osConstants.signals).find(([, n]) => n === code - 128);
  return entry ? (entry[0] as NodeJS.Signals) : null;
}

/** Any failure before the command started, as a TapboxError (the user-caused ones already are). */
function asSetupError(e: unknown): TapboxError {
  if (e instanceof TapboxError) return e;
  const err = e as NodeJS.ErrnoException;
  return new TapboxError('EINTERNAL', `setting up the sandbox failed: ${err?.message ?? String(e)}; run \`tapbox doctor\` to check this host.`);
}
