// The sandbox's cgroup (v2): its whole-sandbox limits, its meter (memory, CPU, OOM kills) and its
// clean-up. Rootless, as podman and nsjail do it: in the cgroup subtree the host delegated to the user
// (systemd's user@.service has Delegate=), the one this process already runs in.
//
//   B  the user's delegated cgroup we run in (owned by us)
//   ├─ tapbox-processes   every process that was in B (us included) moves here first: cgroup v2
//   │                     enables controllers for children only of a cgroup without processes
//   └─ tapbox-<pid>-<id>  one sandbox: memory.max, memory.swap.max, pids.max, cpu.max; the launcher
//                         joins it before it clones the sandbox (native/launcher/limits.c)
//
// A run of tapbox from a shell already moved into tapbox-processes uses B again, so nothing nests.
// Where the cgroup we run in is not ours but a user systemd runs, B is a scope it delegates to us for
// each sandbox (./systemd-scope.ts).
// At exit the sandbox's cgroup is emptied (cgroup.kill, Linux 5.14+; else SIGKILL to each process)
// and removed; a cgroup whose supervisor was SIGKILLed is removed by the next start in the same B.
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TapboxError } from '../errors.js';
import { findUserSystemd, type UserSystemd } from './systemd-scope.js';

const MOUNT = '/sys/fs/cgroup';
const PROCESSES = 'tapbox-processes';
const SANDBOX = /^tapbox-(\d+)-[0-9a-f]+$/;
/** cpu.max's period: --cpus 0.5 is a quota of 50 ms per 100 ms. */
const CPU_PERIOD_USEC = 100_000;

export interface CgroupLimits {
  memory?: number;
  /** Swap the sandbox may use besides `memory` (default 0: none). */
  memorySwap?: number;
  pids?: number;
  /** CPUs' worth of time, fractions allowed (cpu.max). */
  cpus?: number;
}

/** What the sandbox used, from its cgroup. */
export interface Usage {
  /** Memory in use now (memory.current), bytes. */
  memoryBytes: number;
  /** The most it used at once (memory.peak, Linux 5.19+); null where the kernel does not keep it. */
  memoryPeakBytes: number | null;
  /** CPU time of all its processes, user and system. */
  cpuSeconds: number;
  /** Processes the kernel's OOM killer killed in it (the biggest one each time, not the whole sandbox). */
  oomKills: number;
}

/** One line on what the sandbox used, from its cgroup. */
export function formatUsage(u: Usage): string {
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const memory = u.memoryPeakBytes === null ? `memory ${mib(u.memoryBytes)} at exit` : `memory peak ${mib(u.memoryPeakBytes)}`;
  const oom = u.oomKills === 0 ? 'no OOM kill' : `${u.oomKills} process${u.oomKills > 1 ? 'es' : ''} killed by the OOM killer (the biggest each time)`;
  return `tapbox: used ${memory}, CPU ${u.cpuSeconds.toFixed(2)} s, ${oom}`;
}

/** The one warning where limits can't be whole-sandbox ones: `reason` says why, this the fix. */
export function perProcessLimits(reason: string): string {
  return `${reason}, so --memory, --pids and --cpus hold per process, not for the sandbox as a whole; for whole-sandbox limits run tapbox on a cgroup v2 host in a cgroup delegated to you or with a user systemd running (tapbox asks it for a delegated scope), or pass --require-limits to refuse to run without them.`;
}

/** Where a sandbox's cgroup can be made: in `base`, or in a scope `systemd` makes for it; or why it can't. */
export type CgroupPlace =
  | { base: string; systemd?: undefined; reason?: undefined }
  | { base?: undefined; systemd: UserSystemd; reason?: undefined }
  | { base?: undefined; systemd?: undefined; reason: string };

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function ours(path: string): boolean {
  try {
    const uid = process.getuid?.() ?? 0;
    return uid === 0 || statSync(path).uid === uid;
  } catch {
    return false;
  }
}

/**
 * The delegated cgroup this process may make sandboxes in, else the user systemd that can delegate one
 * to each sandbox, or why there is neither (the reason names the fix). Reads only; nothing is changed.
 */
export function findCgroupPlace(): CgroupPlace {
  const lines = (read('/proc/self/cgroup') ?? '').trim().split('\n');
  const unified = lines.length === 1 && lines[0]!.startsWith('0::') ? lines[0]!.slice(3) : undefined;
  if (unified === undefined || !existsSync(join(MOUNT, 'cgroup.controllers'))) {
    return { reason: 'this host does not run cgroup v2 alone (its controllers are on cgroup v1)' };
  }
  let base = join(MOUNT, unified);
  if (basename(base) === PROCESSES && ours(dirname(base))) base = dirname(base);
  if (!ours(base) || !writable(join(base, 'cgroup.procs')) || !writable(join(base, 'cgroup.subtree_control'))) {
    const systemd = findUserSystemd();
    return typeof systemd === 'string' ? { reason: `your cgroup ${unified} is not delegated to you and ${systemd}` } : { systemd };
  }
  return { base };
}

/** Controllers each limit needs. */
function neededControllers(limits: CgroupLimits): string[] {
  return ['memory', 'pids', 'cpu'].filter((c) => c !== 'cpu' || limits.cpus !== undefined);
}

/**
 * Makes `base` able to hold sandbox cgroups with `controllers`: moves its processes into
 * tapbox-processes and enables the controllers for its children. Returns the reason when it can't.
 */
function prepareBase(base: string, controllers: string[]): string | undefined {
  const available = (read(join(base, 'cgroup.controllers')) ?? '').trim().split(/\s+/);
  const missing = controllers.filter((c) => !available.includes(c));
  if (missing.length) return `the ${missing.join(' and ')} controller${missing.length > 1 ? 's are' : ' is'} not delegated to your cgroup`;
  const enabled = (read(join(base, 'cgroup.subtree_control')) ?? '').trim().split(/\s+/);
  const toEnable = controllers.filter((c) => !enabled.includes(c));
  if (toEnable.length === 0) return undefined;
  try {
    const leaf = join(base, PROCESSES);
    mkdirSync(leaf, { recursive: true });
    // Processes may come and go while we move them: move until none is left (bounded).
    for (let round = 0; round < 10; round++) {
      const pids = (read(join(base, 'cgroup.procs')) ?? '').split('\n').filter(Boolean);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          writeFileSync(join(leaf, 'cgroup.procs'), pid);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
        }
      }
    }
    writeFileSync(join(base, 'cgroup.subtree_control'), toEnable.map((c) => `+${c}`).join(' '));
    return undefined;
  } catch (e) {
    return `enabling the ${toEnable.join(', ')} controllers in ${base} failed (${(e as Error).message})`;
  }
}

export class SandboxCgroup {
  private constructor(readonly path: string) {}

  /**
   * Makes a sandbox's cgroup under `base` with `limits` written, or returns the reason it can't.
   * Stale cgroups of supervisors that died are removed first.
   */
  static async create(base: string, limits: CgroupLimits): Promise<SandboxCgroup | string> {
    await sweepStale(base);
    const reason = prepareBase(base, neededControllers(limits));
    if (reason) return reason;
    const path = join(base, `tapbox-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      mkdirSync(path);
    } catch (e) {
      return `creating the sandbox's cgroup in ${base} failed (${(e as Error).message})`;
    }
    const cgroup = new SandboxCgroup(path);
    try {
      if (limits.memory !== undefined) {
        writeFileSync(join(path, 'memory.max'), String(limits.memory));
        // Without swap accounting (a kernel built or booted without it) there is no swap to limit.
        if (existsSync(join(path, 'memory.swap.max'))) writeFileSync(join(path, 'memory.swap.max'), String(limits.memorySwap ?? 0));
      }
      if (limits.pids !== undefined) writeFileSync(join(path, 'pids.max'), String(limits.pids));
      if (limits.cpus !== undefined) writeFileSync(join(path, 'cpu.max'), `${Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_USEC))} ${CPU_PERIOD_USEC}`);
    } catch (e) {
      cgroup.removeEmpty();
      throw new TapboxError('ELIMIT', `writing the sandbox's limits to ${path} failed (${(e as Error).message}); run tapbox doctor.`);
    }
    return cgroup;
  }

  usage(): Usage {
    const stat = read(join(this.path, 'cpu.stat')) ?? '';
    const events = read(join(this.path, 'memory.events')) ?? '';
    const peak = read(join(this.path, 'memory.peak'));
    return {
      memoryBytes: Number(read(join(this.path, 'memory.current')) ?? 0),
      memoryPeakBytes: peak === undefined ? null : Number(peak),
      cpuSeconds: Number(/^usage_usec (\d+)$/m.exec(stat)?.[1] ?? 0) / 1e6,
      oomKills: Number(/^oom_kill (\d+)$/m.exec(events)?.[1] ?? 0),
    };
  }

  /** Kills every process left in the cgroup, waits until it is empty, and removes it. Returns the final usage. */
  async close(): Promise<Usage> {
    const usage = this.usage();
    await killAll(this.path);
    this.removeEmpty();
    return usage;
  }

  private removeEmpty(): void {
    try {
      rmdirSync(this.path);
    } catch {
      // Not empty yet or gone already: the next start's sweep removes what is left.
    }
  }
}

function populated(path: string): boolean {
  return /^populated 1$/m.test(read(join(path, 'cgroup.events')) ?? '');
}

async function killAll(path: string): Promise<void> {
  if (!populated(path)) return;
  if (existsSync(join(path, 'cgroup.kill'))) writeFileSync(join(path, 'cgroup.kill'), '1');
  for (let tries = 0; tries < 100 && populated(path); tries++) {
    // Before Linux 5.14 (no cgroup.kill): SIGKILL each process, again while new ones appear.
    for (const pid of (read(join(path, 'cgroup.procs')) ?? '').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Exited meanwhile.
      }
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 10));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the sandbox cgroups in `base` whose supervisor is gone (it was SIGKILLed). */
export async function sweepStale(base: string): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const owner = SANDBOX.exec(name)?.[1];
    if (owner === undefined || alive(Number(owner))) continue;
    const path = join(base, name);
    await killAll(path);
    try {
      rmdirSync(path);
    } catch {
      // Still emptying: a later start removes it.
    }
  }
}
