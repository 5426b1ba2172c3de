// Boxes: named, long-lived sandboxes, each run by a supervisor daemon of its own (daemon.ts), driven
// through its control socket (control.ts). The library face of `tapbox run -d`, `ps`, `exec`, `logs`,
// `stop`, `kill`, `rm`, `inspect`, `policy`; the CLI (cli.ts) is a thin layer over it.
//
//   const box = await boxes.run(['sleep', 'infinity'], { name: 'web', allow: ['example.com:443'] });
//   await box.exec(['sh', '-c', 'ps']);  box.logs();  await box.stop({ timeout: 5 });  await box.remove();
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { sweepStale } from '../supervisor/cgroup.js';
import { launcherError, TapboxError } from '../errors.js';
import { launcherPath, sweepStore } from '../supervisor/launcher.js';
import { closeFd, recvMessage, sendMessage, socketpair, type ControlMessage } from '../supervisor/control.js';
import type { NetMode, SandboxOptions } from '../options/options.js';
import { request } from './control.js';
import type { DaemonReply, DaemonSpec, ExecPlan, LiveStatus } from './daemon.js';
import { followLog, readLog } from './logs.js';
import { boxesDir, boxPaths, checkName, type BoxPaths } from './paths.js';
import type { BoxPolicy, PolicyChange } from './policy.js';
import { readJson, type BoxExit, type BoxRecord } from './record.js';

export type { BoxRecord, BoxExit, LiveStatus, ExecPlan, BoxPolicy, PolicyChange };

export interface BoxRunOptions extends Omit<SandboxOptions, 'stdio' | 'onRequest' | 'ask' | 'askSave' | 'askTimeout'> {
  /** Return once the command runs (default); false: wait for the box to end. */
  detach?: boolean;
  /** The box's name (default: generated). */
  name?: string;
  /** Remove everything of the box once it exits (podman's --rm). */
  remove?: boolean;
}

/**
 * running: its supervisor answers. exited: the command ended (`exit` tells how). dead: its supervisor
 * is gone without a word (killed); `remove()` cleans up. starting: the name is taken, nothing runs yet.
 */
export type BoxState = 'running' | 'exited' | 'dead' | 'starting';

export interface BoxInfo {
  name: string;
  state: BoxState;
  command: string[];
  net: NetMode | null;
  created: string | null;
  record: BoxRecord | null;
  exit: BoxExit | null;
  live: LiveStatus | null;
}

export interface ExecOptions {
  /** The helper's stdio (default 'pipe'); the CLI passes its own choice per fd. */
  stdio?: StdioOptions;
  /**
   * Which of the command's stdin, stdout, stderr are a terminal: a pty of the box's own (in its
   * /dev/pts, as one opened inside), whose master the result's `terminal` holds. Their `stdio` entries
   * are not used.
   */
  tty?: readonly [boolean, boolean, boolean];
  /** With `tty`: called with the master before the command starts (e.g. to set its window size). */
  onTerminal?: (master: number) => void;
}

export interface ExecProcess extends ChildProcess {
  /** With `tty`: the master of the command's pty (yours to read, write and close); else null. */
  terminal: number | null;
}

const daemonPath = fileURLToPath(new URL('./daemon.js', import.meta.url));

/** The master of an exec's pty, from the helper's "PTY" message; its "ERR" sentence if it failed first. */
async function receiveTerminal(fd: number): Promise<number> {
  for (;;) {
    const message = await new Promise<ControlMessage | undefined>((resolve, reject) => recvMessage(fd, (err, m) => (err ? reject(err) : resolve(m))));
    const text = message?.data.toString('utf8') ?? '';
    if (text === 'PTY' && message?.fd !== undefined) return message.fd;
    if (message?.fd !== undefined) closeFd(message.fd);
    if (text.startsWith('ERR ')) throw launcherError(text);
    if (!text) throw new TapboxError('EINTERNAL', 'the exec helper ended before it opened the box\'s terminal; run exec without -t to see why.');
  }
}

/** Whether the box's supervisor process is still there (the pid still a tapbox box daemon). */
function supervisorAlive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(daemonPath);
  } catch {
    return false;
  }
}

export class Box {
  readonly paths: BoxPaths;

  constructor(readonly name: string) {
    this.paths = boxPaths(name);
  }

  /** Its state, how it was started, how it ended, and (running) the supervisor's live figures. */
  async inspect(): Promise<BoxInfo> {
    const record = readJson<BoxRecord>(this.paths.record);
    const exit = readJson<BoxExit>(this.paths.exit);
    let live: LiveStatus | null = null;
    let state: BoxState;
    if (exit) state = 'exited';
    else if (!record) state = 'starting';
    else {
      try {
        live = await request<LiveStatus>(this.paths.socket, { op: 'status' }, this.name);
        state = 'running';
      } catch (e) {
        if (supervisorAlive(record.supervisorPid)) throw e;
        state = 'dead';
      }
    }
    return { name: this.name, state, command: record?.command ?? [], net: record?.net ?? null, created: record?.created ?? null, record, exit, live };
  }

  /**
   * Starts COMMAND inside the running box: its namespaces, root, cgroup, limits, seccomp filter,
   * capabilities and no_new_privs, under its PID 1, its traffic through its policy. Resolves with the
   * helper process (its exit status is the command's).
   */
  async exec(command: readonly string[], options: ExecOptions = {}): Promise<ExecProcess> {
    if (command.length === 0 || !command[0]) throw new TapboxError('EUSAGE', 'no command given to exec; put it after --, e.g. `tapbox exec NAME -- sh`.');
    const plan = await request<ExecPlan>(this.paths.socket, { op: 'exec' }, this.name);
    const ttyFds = [0, 1, 2].filter((fd) => options.tty?.[fd]);
    const args = [...plan.args, '--join', String(plan.pid), ...(ttyFds.length ? ['--join-tty', ttyFds.join(',')] : []), '--', ...command];
    if (ttyFds.length === 0) return Object.assign(spawn(launcherPath(), args, { stdio: options.stdio ?? 'pipe', env: plan.env, cwd: plan.cwd }), { terminal: null });
    // The helper hands the pty's master over a control socket on its fd 3 (native/launcher/join.c).
    const given = options.stdio ?? 'pipe';
    const stdio = [0, 1, 2].map((fd) => (ttyFds.includes(fd) ? 'ignore' : typeof given === 'string' ? given : given[fd]));
    const [ours, theirs] = socketpair();
    let child: ChildProcess;
    try {
      child = spawn(launcherPath(), args, { stdio: [...stdio, theirs] as StdioOptions, env: plan.env, cwd: plan.cwd });
    } finally {
      closeFd(theirs);
    }
    try {
      const terminal = await receiveTerminal(ours);
      options.onTerminal?.(terminal);
      sendMessage(ours, Buffer.from('GO'));
      return Object.assign(child, { terminal });
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    } finally {
      closeFd(ours);
    }
  }

  /** The command's output so far (its last `tail` lines), or with `audit`, its egress log. */
  logs(options: { tail?: number; audit?: boolean } = {}): string {
    return readLog(this.logPath(options.audit), options.tail);
  }

  /** Writes what the log gets from now on until the box ends (or `signal` aborts). */
  async followLogs(write: (chunk: Buffer) => void, options: { audit?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const path = this.logPath(options.audit);
    const from = existsSync(path) ? statSync(path).size : 0;
    const supervisor = readJson<BoxRecord>(this.paths.record)?.supervisorPid;
    const ended = () => !existsSync(this.paths.socket) || supervisor === undefined || !supervisorAlive(supervisor);
    await followLog(path, from, write, ended, options.signal);
  }

  private logPath(audit = false): string {
    if (!audit) return this.paths.output;
    return readJson<BoxRecord>(this.paths.record)?.auditLog ?? this.paths.audit;
  }

  /** SIGTERM to the command, SIGKILL `timeout` seconds later (default 10); resolves once it ended. */
  async stop(options: { timeout?: number } = {}): Promise<BoxExit | null> {
    await request(this.paths.socket, { op: 'stop', timeout: options.timeout ?? 10 }, this.name);
    await this.supervisorGone();
    return readJson<BoxExit>(this.paths.exit);
  }

  /**
   * Allows RULES (allowlist syntax) in the running box from now on, as sandbox.allow() does; resolves
   * with the changes made. A bad rule rejects (TapboxError EPOLICY) and changes nothing.
   */
  allow(rules: string | readonly string[]): Promise<PolicyChange[]> {
    return request(this.paths.socket, { op: 'allow', rules: [rules].flat() }, this.name);
  }

  /** Denies RULES ("!" optional) from now on; with `cut`, the open flows they cover are cut too. */
  deny(rules: string | readonly string[], options: { cut?: boolean } = {}): Promise<PolicyChange[]> {
    return request(this.paths.socket, { op: 'deny', rules: [rules].flat(), cut: options.cut === true }, this.name);
  }

  /** The rules in force in the running box, and the changes made since it started. */
  policy(): Promise<BoxPolicy> {
    return request(this.paths.socket, { op: 'policy' }, this.name);
  }

  /** Sends `signal` to the box's command (through its launcher and PID 1). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await request(this.paths.socket, { op: 'kill', signal }, this.name);
  }

  /** Removes the box: its socket, logs and records. A running box needs `force` (it is killed first). */
  async remove(options: { force?: boolean } = {}): Promise<void> {
    const info = await this.inspect();
    if (info.state === 'running') {
      if (!options.force) throw new TapboxError('ENOBOX', `box ${this.name} is running; stop it first (tapbox stop ${this.name}) or remove it by force (tapbox rm -f ${this.name}).`);
      await request(this.paths.socket, { op: 'stop', timeout: 0 }, this.name).catch(() => undefined);
      await this.supervisorGone();
    }
    // A dead box's launcher died with its supervisor (PR_SET_PDEATHSIG), and its sandbox with it; its
    // cgroup is left (only a supervisor that exits removes its own): removed with the other stale ones.
    const cgroup = info.record?.cgroup;
    if (info.state === 'dead' && cgroup) await sweepStale(dirname(cgroup));
    // So is its run directory in a --store: swept with the other stale ones there.
    const store = info.record?.options.store;
    if (info.state === 'dead' && store) await sweepStore(resolve(info.record!.cwd, store));
    rmSync(this.paths.runtime, { recursive: true, force: true });
    rmSync(this.paths.state, { recursive: true, force: true });
  }

  private async supervisorGone(): Promise<void> {
    const pid = readJson<BoxRecord>(this.paths.record)?.supervisorPid;
    for (let i = 0; pid !== undefined && supervisorAlive(pid) && i < 300; i++) await new Promise((r) => setTimeout(r, 50));
  }
}

/** The box named NAME; throws ENOBOX when there is none. */
export function get(name: string): Box {
  const box = new Box(checkName(name));
  if (!existsSync(box.paths.state)) throw new TapboxError('ENOBOX', `there is no box named ${name}; \`tapbox ps -a\` lists them.`);
  return box;
}

/** Every box of this user, running or not (none, and nothing made, before the first box). */
export async function list(): Promise<BoxInfo[]> {
  const dir = boxesDir();
  const names = dir === null ? [] : readdirSync(dir).sort();
  return Promise.all(names.map((n) => new Box(n).inspect()));
}

/** Starts COMMAND in a new box, run by a supervisor daemon; resolves once it runs (see `detach`). */
export async function run(command: readonly string[], options: BoxRunOptions = {}): Promise<Box> {
  const { detach = true, name: given, remove = false, ...sandboxOptions } = options;
  if (command.length === 0 || !command[0]) throw new TapboxError('EUSAGE', 'no command given; put the command after the options, e.g. `tapbox run -d -- sleep infinity`.');
  const name = given === undefined ? `box-${randomBytes(3).toString('hex')}` : checkName(given);
  const paths = boxPaths(name);
  try {
    mkdirSync(paths.state, { mode: 0o700 }); // takes the name, or fails: never two boxes of one name
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new TapboxError('EUSAGE', `a box named ${name} exists; remove it (tapbox rm ${name}) or choose another --name.`);
    throw e;
  }
  const spec: DaemonSpec = { name, command: [...command], options: sandboxOptions, autoRemove: remove };
  let reply: DaemonReply;
  try {
    reply = await startDaemon(spec, paths, sandboxOptions);
  } catch (e) {
    rmSync(paths.state, { recursive: true, force: true });
    throw e;
  }
  if (!reply.ok) {
    rmSync(paths.state, { recursive: true, force: true });
    throw new TapboxError(reply.code, reply.message);
  }
  const box = new Box(name);
  if (!detach) await box.followLogs(() => undefined);
  return box;
}

/** Spawns the daemon in our cwd (relative paths in the options mean what they mean to us). */
function startDaemon(spec: DaemonSpec, paths: BoxPaths, options: SandboxOptions): Promise<DaemonReply> {
  const log = openSync(paths.supervisor, 'a', 0o600);
  let child: ChildProcess;
  try {
    // detached: a session of its own, no terminal; it outlives us.
    child = spawn(process.execPath, [daemonPath], { detached: true, stdio: ['ignore', log, log, 'ipc'], cwd: process.cwd(), env: options.env ?? process.env });
  } finally {
    closeSync(log);
  }
  return new Promise((resolve, reject) => {
    child.once('message', (m: DaemonReply) => {
      child.disconnect();
      child.unref();
      resolve(m);
    });
    child.once('error', (e) => reject(new TapboxError('EINTERNAL', `cannot start the box's supervisor: ${e.message}.`)));
    child.once('exit', (code) => reject(new TapboxError('EINTERNAL', `the box's supervisor exited (${code}) before the box ran; see ${paths.supervisor}.`)));
    child.send(spec);
  });
}

export const boxes = { run, list, get };
