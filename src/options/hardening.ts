// Filesystem modes and process hardening: the options (mode, mounts, limits, seccomp, capabilities,
// timeout), their checks before anything starts, and the launcher flags they become. The launcher
// (native/launcher/plan.c, filesystem.c) checks them again and does the work; a mistake found here
// is one sentence and exit 2, with nothing started.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, userInfo } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { TapboxError } from '../errors.js';
import { parseSize, type Size } from '../units.js';

/**
 * How the sandbox's root is built (filesystem.c explains each):
 * - `read-only` (no mode flag): the host's root, read-only all the way down; cwd writable; private /tmp.
 * - `default` (`-x`): system directories as throw-away overlays, $HOME empty, cwd writable.
 * - `custom` (`-o DIR`): only the mounts asked for, the cwd, an empty home, /dev and /tmp.
 * - `hermetic` (`-h DIR`): only the mounts asked for, the cwd, /dev and /tmp.
 */
export type FilesystemMode = 'read-only' | 'default' | 'custom' | 'hermetic';

/** `ro` (-M), `rw` (-w), `overlay` (-k: writes thrown away), `tmpfs` (-e: an empty tmpfs at `target`). */
export type MountType = 'ro' | 'rw' | 'overlay' | 'tmpfs';

export interface Mount {
  type: MountType;
  /** Host path (not for tmpfs). */
  source?: string;
  /** Path inside the sandbox; defaults to `source`. */
  target?: string;
}


/**
 * Resource limits. Where this process's cgroup v2 is delegated to the user, or a user systemd delegates
 * a scope to the sandbox, they hold for the sandbox as a whole (src/supervisor/cgroup.ts, src/supervisor/systemd-scope.ts);
 * elsewhere per process (a warning says so; `requireLimits` refuses instead).
 */
export interface Limits {
  /** Memory of the whole sandbox (memory.max); per process its data segment (RLIMIT_DATA) without a cgroup. */
  memory?: Size;
  /** Swap the sandbox may use besides `memory` (memory.swap.max; default 0). Needs a cgroup. */
  memorySwap?: Size;
  /** Processes of the sandbox (pids.max; RLIMIT_NPROC in its own user namespace without a cgroup). */
  pids?: number;
  /** CPU time as a number of CPUs, fractions allowed: 0.5 is half of one (cpu.max); without a cgroup, affinity to that many CPUs, rounded up. */
  cpus?: number;
  /** CPUs the command may run on (affinity), e.g. "0,2-3". */
  cpuset?: string;
  /** Size of the in-memory store of throw-away layers (/tmp, overlays, the empty home). */
  storage?: Size;
}

export interface HardeningOptions {
  /** Filesystem mode; `read-only` by default. */
  mode?: FilesystemMode;
  /** A root of your own: a directory, or a .tar / .tar.gz unpacked once into ~/.cache/tapbox/rootfs. */
  rootfs?: string;
  /** Directory for the throw-away layers (-o DIR, -h DIR, -d DIR); default: a tmpfs in memory. */
  store?: string;
  /** The caller's home (empty or hidden inside, as the mode says); default $HOME; null: none. */
  home?: string | null;
  /** Extra mounts, applied in order after the mode's own. */
  mounts?: Mount[];
  limits?: Limits;
  /** Refuse to run (ELIMIT) when the limits can't hold for the sandbox as a whole (no delegated cgroup v2, no user systemd). */
  requireLimits?: boolean;
  /** Seconds before the command is stopped (SIGTERM, then SIGKILL after `grace`). */
  timeout?: number;
  /** Seconds between SIGTERM and SIGKILL once `timeout` has passed (default 10; 0: SIGKILL at once). */
  grace?: number;
  /** `default` (a deny-list like Docker's), `off`, or a file with one syscall name per line to deny. */
  seccomp?: string;
  allowSyscalls?: string[];
  denySyscalls?: string[];
  /** Capabilities kept (added to / dropped from podman's rootless default set), names as in capabilities(7). */
  capAdd?: string[];
  capDrop?: string[];
  /** Start the command with an empty environment (PATH only) unless `env` gives one. */
  clearEnv?: boolean;
  /**
   * Run even when the working directory is your home or holds it (e.g. /home): the cwd is bound
   * writable, so all of the home is, and a dotfile written there runs outside the sandbox at your next
   * login. Without it that is refused (`--expose-home`).
   */
  exposeHome?: boolean;
}

export interface ResolvedHardening {
  mode: FilesystemMode | 'rootfs';
  rootfs?: string;
  store?: string;
  home?: string;
  /** The home the working directory is or holds, writable inside: only with `exposeHome`. */
  exposedHome?: string;
  mounts: Mount[];
  limits: { memory?: number; memorySwap?: number; pids?: number; cpus?: number; cpuset?: number[]; storage?: number };
  requireLimits: boolean;
  timeout?: number;
  grace?: number;
  seccomp: string;
  allowSyscalls: string[];
  denySyscalls: string[];
  capAdd: string[];
  capDrop: string[];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MODES: FilesystemMode[] = ['read-only', 'default', 'custom', 'hermetic'];
const FLAG_OF: Record<MountType, string> = { ro: '-M', rw: '-w', overlay: '-k', tmpfs: '-e' };

function usage(message: string): never {
  throw new TapboxError('EUSAGE', message);
}


/** An option that must be a whole number of at least `min`; `hint`, when given, ends the error sentence. */
export function wholeNumber(value: unknown, flag: string, min: number, hint?: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    usage(`${flag} takes a whole number of at least ${min}, not "${String(value)}"${hint ? `; ${hint}` : ''}.`);
  }
  return value;
}

/** --cpus: CPUs' worth of time, fractions allowed, at most the CPUs this process may use. */
function cpuCount(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const available = availableParallelism();
  if (!Number.isFinite(value) || value < 0.01) usage(`--cpus takes a number of CPUs of at least 0.01 (0.5 is half a CPU), not "${value}".`);
  if (value > available) usage(`--cpus ${value} can't be enforced: only ${available} CPUs are available to you; ask for at most ${available}.`);
  return value;
}

/** --cpuset "0,2-3" → [0, 2, 3], each a CPU this process may use. */
function cpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    const [first, last] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [NaN, NaN];
    if (!m || last < first || last >= 4096) usage(`--cpuset takes CPU numbers and ranges such as 0,2-3, not "${text}".`);
    for (let cpu = first; cpu <= last; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

function existing(path: string, flag: string, cwd: string): string {
  const absolute = resolve(cwd, path);
  if (!existsSync(absolute)) usage(`${flag} ${path}: no such file or directory; pass an existing path.`);
  return absolute;
}

function directory(path: string, flag: string, cwd: string): string {
  const absolute = existing(path, flag, cwd);
  if (!statSync(absolute).isDirectory()) usage(`${flag} ${path} is not a directory; pass a directory.`);
  return absolute;
}

function writableDirectory(path: string, flag: string, cwd: string): string {
  const absolute = directory(path, flag, cwd);
  try {
    accessSync(absolute, constants.W_OK | constants.X_OK);
  } catch {
    usage(`${flag} ${path} is not writable by you; pass a directory you own (tapbox keeps its throw-away layers there).`);
  }
  return absolute;
}

/** Checks everything that can be checked before the launcher runs, and resolves paths against cwd. */
export function resolveHardening(o: HardeningOptions, cwd: string): ResolvedHardening {
  if (o.mode !== undefined && !MODES.includes(o.mode)) usage(`mode "${o.mode}" is unknown; use read-only, default, custom or hermetic.`);
  if (o.rootfs !== undefined && o.mode !== undefined && o.mode !== 'read-only') {
    usage(`--rootfs and the ${o.mode} mode each choose the sandbox's root; give one.`);
  }
  if (!existsSync(cwd) || !statSync(cwd).isDirectory()) usage(`-W ${cwd}: no such directory; pass an existing working directory.`);
  if (resolve(cwd) === '/') usage('the working directory is /, which would make the whole filesystem writable; cd to a project directory or pass -W DIR.');
  const exposedHome = homeHeldBy(cwd, o.home);
  if (exposedHome && !o.exposeHome) {
    const where = realpathSync(cwd) === realpathSync(exposedHome) ? 'is your home' : `holds your home ${exposedHome}`;
    usage(`the working directory ${resolve(cwd)} ${where}, which the sandbox could then write (dotfiles that run outside it at your next login included); cd into a project directory, or pass --expose-home if you mean it.`);
  }
  const store = o.store === undefined ? undefined : writableDirectory(o.store, '-d', cwd);
  const mounts: Mount[] = (o.mounts ?? []).map((m) => {
    const flag = FLAG_OF[m.type];
    if (!flag) usage(`mount type "${m.type}" is unknown; use ro, rw, overlay or tmpfs.`);
    if (m.target !== undefined && !isAbsolute(m.target)) usage(`${flag} ${m.target}: the path inside the sandbox must be absolute.`);
    if (m.type === 'tmpfs') {
      const target = m.target ?? m.source;
      if (!target || !isAbsolute(target)) usage(`-e ${target ?? ''}: give an absolute directory inside the sandbox, e.g. -e /scratch.`);
      return { type: 'tmpfs', target };
    }
    if (!m.source) usage(`${flag} needs a host path.`);
    const source = existing(m.source, flag, cwd);
    if (m.type === 'overlay' && !statSync(source).isDirectory()) usage(`-k ${m.source} is not a directory; an overlay needs one (bind a file with -M or -w).`);
    return { type: m.type, source, target: m.target };
  });
  const readOnly = new Set(mounts.filter((m) => m.type === 'ro').map((m) => realpathSync(m.source!)));
  for (const m of mounts) {
    if (m.type === 'rw' && readOnly.has(realpathSync(m.source!))) {
      usage(`${m.source} is given both read-only (-M) and writable (-w); give it once.`);
    }
  }
  const limits = o.limits ?? {};
  const storage = limits.storage === undefined ? undefined : parseSize(limits.storage, '--storage');
  if (storage !== undefined && store) usage('--storage caps the in-memory store of throw-away layers, but -o/-h/-d put them on disk; drop one.');
  const cpus = cpuCount(limits.cpus);
  const memory = limits.memory === undefined ? undefined : parseSize(limits.memory, '--memory');
  const memorySwap = limits.memorySwap === undefined ? undefined : parseSize(limits.memorySwap, '--memory-swap');
  if (memorySwap !== undefined && memory === undefined) usage('--memory-swap is the swap allowed besides --memory; give --memory too.');
  const seccomp = o.seccomp ?? 'default';
  const seccompFile = seccomp === 'default' || seccomp === 'off' ? seccomp : existing(seccomp, '--seccomp', cwd);
  const allowSyscalls = o.allowSyscalls ?? [];
  const denySyscalls = o.denySyscalls ?? [];
  if (seccomp === 'off' && (allowSyscalls.length || denySyscalls.length)) {
    usage('--allow-syscall and --deny-syscall adjust the seccomp filter, which --seccomp off turns off; drop one.');
  }
  const timeout = wholeNumber(o.timeout, '-T', 1);
  const grace = wholeNumber(o.grace, '-t', 0);
  const homeDir = o.home === undefined ? process.env.HOME : (o.home ?? undefined);
  const home = homeDir && isAbsolute(homeDir) && existsSync(homeDir) && statSync(homeDir).isDirectory() ? homeDir : undefined;
  return {
    mode: o.rootfs !== undefined ? 'rootfs' : (o.mode ?? 'read-only'),
    rootfs: o.rootfs === undefined ? undefined : rootfsDirectory(existing(o.rootfs, '--rootfs', cwd), home),
    store,
    home,
    exposedHome,
    mounts,
    limits: {
      memory,
      memorySwap,
      pids: wholeNumber(limits.pids, '--pids', 1),
      cpus,
      cpuset: limits.cpuset === undefined ? undefined : cpuList(limits.cpuset),
      storage,
    },
    requireLimits: o.requireLimits ?? false,
    timeout,
    grace,
    seccomp: seccompFile,
    allowSyscalls,
    denySyscalls,
    capAdd: o.capAdd ?? [],
    capDrop: o.capDrop ?? [],
  };
}

/**
 * The caller's home that the working directory is or holds (the cwd is bound writable in every mode,
 * so all of that home would be): $HOME (or the `home` option) and the home of the caller's passwd
 * entry, compared without symlinks.
 */
function homeHeldBy(cwd: string, home: string | null | undefined): string | undefined {
  const real = (path: string) => {
    try {
      return realpathSync(path);
    } catch {
      return undefined;
    }
  };
  let passwdHome: string | undefined;
  try {
    passwdHome = userInfo().homedir;
  } catch {
    // No passwd entry for this uid: $HOME is all there is.
  }
  const dir = real(cwd);
  for (const candidate of [home === undefined ? process.env.HOME : home, passwdHome]) {
    const h = candidate && isAbsolute(candidate) ? real(candidate) : undefined;
    if (dir && h && isWithin(h, dir)) return candidate!;
  }
  return undefined;
}

/** Whether path is dir or inside it (both absolute, without symlinks). */
function isWithin(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** The command's environment: `env`, else the caller's, else (clearEnv) PATH only. */
export function resolveEnv(env: NodeJS.ProcessEnv | undefined, clearEnv: boolean | undefined): NodeJS.ProcessEnv {
  if (env) return clearEnv && env.PATH === undefined ? { PATH: DEFAULT_PATH, ...env } : env;
  return clearEnv ? { PATH: DEFAULT_PATH } : process.env;
}

/**
 * The launcher flags for h (see native/launcher/plan.c). With `cgroup` (the sandbox's cgroup, its
 * limits written) the launcher joins it; without, it applies the limits per process.
 */
export function hardeningArgs(h: ResolvedHardening, cgroup: string | null): string[] {
  const args: string[] = h.mode === 'rootfs' ? ['--rootfs', h.rootfs!] : ['--fs', h.mode];
  if (h.home) args.push('--home', h.home);
  if (h.store) args.push('--store', h.store);
  for (const m of h.mounts) {
    if (m.type === 'tmpfs') args.push('--tmpfs', m.target!);
    else args.push(`--${{ ro: 'bind-ro', rw: 'bind-rw', overlay: 'overlay' }[m.type]}`, m.target ? `${m.source}:${m.target}` : m.source!);
  }
  const { memory, pids, cpus, cpuset, storage } = h.limits;
  if (storage !== undefined) args.push('--storage', String(storage));
  if (cgroup) {
    args.push('--cgroup', cgroup);
  } else {
    if (memory !== undefined) args.push('--memory', String(memory));
    if (pids !== undefined) args.push('--pids', String(pids));
    if (cpus !== undefined) args.push('--cpus', String(Math.ceil(cpus)));
  }
  if (cpuset !== undefined) args.push('--cpuset', cpuset.join(','));
  if (h.timeout !== undefined) args.push('--timeout', String(h.timeout));
  if (h.grace !== undefined) args.push('--grace', String(h.grace));
  args.push('--seccomp', h.seccomp);
  for (const name of h.allowSyscalls) args.push('--allow-syscall', name);
  for (const name of h.denySyscalls) args.push('--deny-syscall', name);
  for (const cap of h.capAdd) args.push('--cap-add', cap);
  for (const cap of h.capDrop) args.push('--cap-drop', cap);
  return args;
}

/**
 * --rootfs: a directory as it is; a tarball (.tar, .tar.gz, .tgz, .tar.xz, ...) unpacked once into
 * $XDG_CACHE_HOME/tapbox/rootfs/<sha256 of the tarball> (default ~/.cache), by `tar` into a fresh
 * directory (GNU tar strips leading "/" and refuses ".." members, and creates symlinks only after
 * every file, so no member is written through one), then renamed into place.
 */
export function rootfsDirectory(path: string, home: string | undefined): string {
  if (statSync(path).isDirectory()) return path;
  if (!/\.(tar|tar\.gz|tgz|tar\.xz|txz|tar\.zst|tar\.bz2)$/.test(path)) {
    usage(`--rootfs ${path} is neither a directory nor a .tar / .tar.gz file; pass one of those.`);
  }
  const cacheRoot = process.env.XDG_CACHE_HOME || (home ? join(home, '.cache') : undefined);
  if (!cacheRoot) usage('--rootfs with a tarball needs a cache directory to unpack it into; set $HOME or $XDG_CACHE_HOME.');
  const target = join(cacheRoot, 'tapbox', 'rootfs', sha256File(path));
  if (existsSync(target)) return target;
  mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
  const partial = mkdtempSync(`${target}.partial-`);
  const r = spawnSync('tar', ['-x', '-f', path, '-C', partial, '--no-same-owner', '--no-overwrite-dir', '--exclude=./dev/*', '--exclude=dev/*'], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(partial, { recursive: true, force: true });
    const reason = (r.stderr || r.error?.message || '').trim().split('\n')[0];
    throw new TapboxError('EUSAGE', `unpacking --rootfs ${path} failed (${reason}); pass a readable .tar or .tar.gz of a root filesystem.`);
  }
  try {
    renameSync(partial, target);
  } catch {
    rmSync(partial, { recursive: true, force: true }); // another tapbox unpacked the same tarball first
  }
  return target;
}

function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  const buffer = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0; ) hash.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}
