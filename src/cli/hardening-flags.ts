// The command-line flags of the filesystem modes and hardening (mini-sandbox's short flags, with long
// names), turned into HardeningOptions. -M / -w / -k / -e keep the order they were given in across
// flags, as the launcher applies them in that order.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { Option } from 'commander';
import { TapboxError } from '../errors.js';
import { collect, integer } from './flags.js';
import type { FilesystemMode, HardeningOptions, Mount, MountType } from '../options/hardening.js';

interface OrderedMount {
  seq: number;
  type: MountType;
  spec: string;
}

export interface HardeningFlags {
  default?: boolean;
  custom?: string;
  hermetic?: string;
  rootfs?: string;
  store?: string;
  overlay?: OrderedMount[];
  bindRo?: OrderedMount[];
  bindRw?: OrderedMount[];
  tmpfs?: OrderedMount[];
  workdir?: string;
  timeout?: number;
  grace?: number;
  env?: string[];
  clearEnv?: boolean;
  exposeHome?: boolean;
  storage?: string;
  memory?: string;
  memorySwap?: string;
  cpus?: number;
  cpuset?: string;
  pids?: number;
  requireLimits?: boolean;
  seccomp?: string;
  allowSyscall?: string[];
  denySyscall?: string[];
  capAdd?: string[];
  capDrop?: string[];
}

function cpus(value: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value)) throw new TapboxError('EUSAGE', `--cpus takes a number of CPUs such as 2 or 0.5, not "${value}".`);
  return Number(value);
}

/** The options to add to the program; a fresh set (and mount counter) per program. */
export function hardeningOptions(): Option[] {
  let seq = 0;
  const mount = (type: MountType) => (spec: string, previous: OrderedMount[] | undefined) => [...(previous ?? []), { seq: seq++, type, spec }];
  return [
    new Option('-x, --default', 'default mode: system directories as throw-away overlays, $HOME empty, cwd writable'),
    new Option('-o, --custom <dir>', 'custom mode: only -k/-M/-w/-e, cwd, an empty home, /dev, /tmp; throw-away layers kept in DIR'),
    new Option('-h, --hermetic <dir>', 'hermetic mode: only -M/-w/-e, cwd, /dev, /tmp; throw-away layers kept in DIR'),
    new Option('--rootfs <dir|tarball>', 'a root of your own (a directory, or a .tar/.tar.gz unpacked once into ~/.cache/tapbox), as a throw-away overlay'),
    new Option('-d, --store <dir>', 'keep the throw-away layers in DIR (removed at exit) instead of memory'),
    new Option('-k, --overlay <path[:dest]>', 'show a host directory whose writes are thrown away (repeatable)').argParser(mount('overlay')),
    new Option('-M, --bind-ro <path[:dest]>', 'bind a host path read-only (repeatable)').argParser(mount('ro')),
    new Option('-w, --bind-rw <path[:dest]>', 'bind a host path writable (repeatable)').argParser(mount('rw')),
    new Option('-e, --tmpfs <dir>', 'an empty tmpfs at DIR inside (repeatable)').argParser(mount('tmpfs')),
    new Option('-W, --workdir <dir>', 'working directory (bound writable; default: the current directory)'),
    new Option('--expose-home', 'run even when the working directory is your home or holds it (e.g. /home): all of the home is then writable inside'),
    new Option('-T, --timeout <seconds>', 'stop the command after SECONDS (SIGTERM, then SIGKILL after the grace period)').argParser(integer('-T')),
    new Option('-t, --grace <seconds>', 'seconds between SIGTERM and SIGKILL after -T (default 10; 0: SIGKILL at once)').argParser(integer('-t')),
    new Option('--env <key=value>', 'set an environment variable for the command (repeatable)').argParser(collect),
    new Option('--clear-env', 'start the command with an empty environment (PATH only) plus --env'),
    new Option('--storage <size>', 'cap the in-memory throw-away layers (/tmp, overlays), e.g. 1G'),
    new Option('--memory <size>', 'memory of the whole sandbox (cgroup v2), e.g. 512M; per process without a delegated cgroup'),
    new Option('--memory-swap <size>', 'swap the sandbox may use besides --memory (default 0)'),
    new Option('--cpus <n>', 'CPU time as a number of CPUs, e.g. 0.5 (cgroup v2 quota)').argParser(cpus),
    new Option('--cpuset <list>', 'run on these CPUs (affinity), e.g. 0,2-3'),
    new Option('--pids <n>', 'at most N processes in the sandbox').argParser(integer('--pids')),
    new Option('--require-limits', 'refuse to run (exit 125) when the limits can\'t hold for the sandbox as a whole'),
    new Option('--seccomp <profile>', 'seccomp filter: default, off, or a FILE of syscall names to deny'),
    new Option('--allow-syscall <name>', 'let NAME through the seccomp filter (repeatable)').argParser(collect),
    new Option('--deny-syscall <name>', 'deny NAME with EPERM (repeatable)').argParser(collect),
    new Option('--cap-add <cap>', 'keep capability CAP (repeatable)').argParser(collect),
    new Option('--cap-drop <cap>', 'drop capability CAP (repeatable; ALL for all)').argParser(collect),
  ];
}

function splitMount({ type, spec }: OrderedMount): Mount {
  if (type === 'tmpfs') return { type, target: spec };
  const colon = spec.indexOf(':');
  return colon < 0 ? { type, source: spec } : { type, source: spec.slice(0, colon), target: spec.slice(colon + 1) };
}

/** HardeningOptions (and cwd / env when given) from the parsed flags; conflicts are one sentence, exit 2. */
export function hardeningFromFlags(f: HardeningFlags): HardeningOptions & { cwd?: string; env?: NodeJS.ProcessEnv } {
  const modes = [f.default && '-x', f.custom !== undefined && '-o', f.hermetic !== undefined && '-h', f.rootfs !== undefined && '--rootfs'].filter(Boolean);
  if (modes.length > 1) throw new TapboxError('EUSAGE', `${modes.join(' and ')} each choose the filesystem mode; give one.`);
  const mode: FilesystemMode | undefined = f.default ? 'default' : f.custom !== undefined ? 'custom' : f.hermetic !== undefined ? 'hermetic' : undefined;
  for (const [flag, dir] of [['-o', f.custom], ['-h', f.hermetic]] as const) {
    if (dir === undefined) continue;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TapboxError('EUSAGE', `${flag} ${dir}: no such directory; pass an existing directory for the throw-away layers.`);
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch {
      throw new TapboxError('EUSAGE', `${flag} ${dir} is not writable by you; pass a directory you own (tapbox keeps its throw-away layers there).`);
    }
  }
  const mounts = [...(f.overlay ?? []), ...(f.bindRo ?? []), ...(f.bindRw ?? []), ...(f.tmpfs ?? [])].sort((a, b) => a.seq - b.seq).map(splitMount);
  let env: NodeJS.ProcessEnv | undefined;
  if (f.env?.length || f.clearEnv) {
    env = f.clearEnv ? {} : { ...process.env };
    for (const pair of f.env ?? []) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new TapboxError('EUSAGE', `--env ${pair}: give KEY=VALUE, e.g. --env CI=1.`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return {
    mode,
    rootfs: f.rootfs,
    // -d names the store; otherwise -o DIR / -h DIR is where the throw-away layers live.
    store: f.store ?? f.custom ?? f.hermetic,
    mounts,
    limits: { memory: f.memory, memorySwap: f.memorySwap, pids: f.pids, cpus: f.cpus, cpuset: f.cpuset, storage: f.storage },
    requireLimits: f.requireLimits,
    timeout: f.timeout,
    grace: f.grace,
    seccomp: f.seccomp,
    allowSyscalls: f.allowSyscall,
    denySyscalls: f.denySyscall,
    capAdd: f.capAdd,
    capDrop: f.capDrop,
    clearEnv: f.clearEnv,
    exposeHome: f.exposeHome,
    ...(f.workdir !== undefined ? { cwd: f.workdir } : {}),
    ...(env ? { env } : {}),
  };
}
