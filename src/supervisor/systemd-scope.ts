// The middle route to whole-sandbox limits (see ./cgroup.ts for the first one): the cgroup we run in is
// not ours (a login shell sits in a session scope root owns), but a user systemd runs. It makes each
// sandbox a transient scope delegated to us, as `systemd-run --user --scope -p Delegate=yes` does for
// podman, and from there on the scope is used exactly as a cgroup of ours.
//
// Only systemd can put a process into a cgroup we may write: the kernel lets a process be moved only by
// someone who may write the cgroup.procs of the cgroup the old and new place share, here a root-owned
// one (the user manager asks the system manager to move it). So the launcher itself is started through
// `systemd-run --user --scope -p Delegate=yes`, which puts its own process in the new scope S before it
// execs; nothing of the sandbox exists yet. systemd-run execs a small sh shim (builtins only) that
//   1. writes S on fd 4 (a socket to us) and waits: we treat S as an owned cgroup (SandboxCgroup.create
//      moves the shim into S/tapbox-processes, enables the controllers, makes S/tapbox-<pid>-<id> with
//      the limits) and answer with that cgroup's path;
//   2. leaves a keeper in S/tapbox-processes that lives until we close fd 4 or die: systemd removes a
//      scope as soon as no process is left in it, and we read the sandbox's final usage (memory peak,
//      CPU, OOM kills) after the launcher has exited;
//   3. execs the launcher with `--cgroup` that path: it joins it before it clones the sandbox (the
//      common ancestor is S, ours), so no process of the sandbox ever runs outside its limits.
// The sandbox cgroup is emptied and removed at exit as any other; then the keeper ends, S is empty and
// systemd removes it. If we are SIGKILLed, the keeper reads EOF, the launcher and sandbox die with us
// (PR_SET_PDEATHSIG), and systemd removes the scope: nothing is left for a later start to sweep.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { delimiter, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { TapboxError } from '../errors.js';
import { SandboxCgroup, type CgroupLimits } from './cgroup.js';

const MOUNT = '/sys/fs/cgroup';

/** A user systemd we can ask for scopes: systemd-run, and the runtime directory its socket is in. */
export interface UserSystemd {
  systemdRun: string;
  runtimeDir: string;
}

function executable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * The user's systemd manager, where one runs (its private socket, which systemd-run --user talks to
 * with or without a D-Bus session bus) and systemd-run is installed; else why not, as the end of a
 * sentence. Reads only.
 */
export function findUserSystemd(): UserSystemd | string {
  const runtimeDir = process.env.XDG_RUNTIME_DIR || `/run/user/${process.getuid?.() ?? 0}`;
  const socket = join(runtimeDir, 'systemd', 'private');
  let running = false;
  try {
    running = statSync(socket).isSocket();
  } catch {
    // No manager.
  }
  if (!running) return `no user systemd runs for you (${socket} is missing)`;
  const systemdRun = executable('systemd-run');
  if (!systemdRun) return 'systemd-run is not on your PATH';
  return { systemdRun, runtimeDir };
}

/** The shim systemd-run execs in the scope (see the top of this file): $1 $2 say how to leave XDG_RUNTIME_DIR, $3.. the launcher. */
const SHIM = [
  `IFS= read -r tapbox_self </proc/self/cgroup && printf '%s\\n' "\${tapbox_self#0::}" >&4 && IFS= read -r tapbox_cgroup <&4 || exit 125`,
  '(while read -r tapbox_self; do :; done) <&4 >/dev/null 2>&1 3>&- &',
  'if [ "$1" = unset ]; then unset XDG_RUNTIME_DIR; else XDG_RUNTIME_DIR=$2; fi',
  'tapbox_launcher=$3',
  'shift 3',
  'exec "$tapbox_launcher" --cgroup "$tapbox_cgroup" "$@" 4>&-',
].join('\n');

/** systemd-run's options for a sandbox's scope. */
function scopeOptions(unit: string): string[] {
  return [
    '--user',
    '--scope',
    '--quiet',
    // Removed once it ended, even if it failed.
    '--collect',
    `--unit=${unit}`,
    '-p',
    'Delegate=yes',
    // An OOM kill in the sandbox kills its biggest process, as in a cgroup of ours; systemd must not
    // stop the whole scope for it.
    '-p',
    'OOMPolicy=continue',
  ];
}

export class SystemdScope {
  private channel: Duplex | null = null;
  private scopePath: string | null = null;

  constructor(
    private readonly systemd: UserSystemd,
    private readonly limits: CgroupLimits,
  ) {}

  /**
   * What to spawn instead of the launcher: systemd-run, the shim, then the launcher with `args`, the
   * arguments for a sandbox with a cgroup: their `--cgroup DIR` is left out, the shim gives the
   * launcher the real one. `env` is the sandbox's; the shim puts its XDG_RUNTIME_DIR back as it was.
   * The spawn needs a 'pipe' as fd 4, for open().
   */
  command(launcher: string, launcherArgs: string[], env: NodeJS.ProcessEnv): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
    const at = launcherArgs.indexOf('--cgroup');
    if (at < 0) throw new TapboxError('EINTERNAL', 'the launcher was to be started in a scope without a cgroup; report this as a tapbox bug.');
    const args = [...launcherArgs.slice(0, at), ...launcherArgs.slice(at + 2)];
    const unit = `tapbox-${process.pid}-${randomBytes(4).toString('hex')}.scope`;
    const runtime = env.XDG_RUNTIME_DIR === undefined ? ['unset', ''] : ['set', env.XDG_RUNTIME_DIR];
    return {
      file: this.systemd.systemdRun,
      args: [...scopeOptions(unit), '--', '/bin/sh', '-c', SHIM, 'tapbox-scope', ...runtime, launcher, ...args],
      env: { ...env, XDG_RUNTIME_DIR: this.systemd.runtimeDir },
    };
  }

  /**
   * Talks to the shim on `channel` (the spawned process's fd 4): makes the sandbox's cgroup in the
   * scope systemd made, and hands its path over. Rejects with ELIMIT when there is no scope (systemd-run
   * failed: with --quiet it says nothing, the manager logs why) or the scope can't hold the limits.
   */
  async open(channel: Duplex): Promise<SandboxCgroup> {
    this.channel = channel;
    channel.on('error', () => undefined);
    const reader = createInterface({ input: channel });
    const first = await reader[Symbol.asyncIterator]().next();
    reader.close();
    const scope = first.done ? undefined : first.value;
    if (scope === undefined || !scope.startsWith('/')) {
      throw new TapboxError('ELIMIT', `your user systemd did not start a scope for the sandbox (its log says why: \`journalctl --user -e\`), so the limits can't hold; check \`tapbox doctor\`, or run where your cgroup v2 is delegated to you.`);
    }
    this.scopePath = join(MOUNT, scope);
    const cgroup = await SandboxCgroup.create(this.scopePath, this.limits);
    if (!(cgroup instanceof SandboxCgroup)) {
      throw new TapboxError('ELIMIT', `the scope your user systemd made for the sandbox can't hold its limits: ${cgroup}; check what \`systemctl --user show -p DelegateControllers\` allows, or run where your cgroup v2 is delegated to you.`);
    }
    channel.write(`${cgroup.path}\n`);
    return cgroup;
  }

  /**
   * Lets the keeper go (after the sandbox's cgroup was closed), and waits a little for systemd to
   * remove the scope, now empty, so that nothing of the sandbox is left when we return.
   */
  async close(): Promise<void> {
    this.channel?.destroy();
    for (let tries = 0; tries < 200 && this.scopePath && existsSync(this.scopePath); tries++) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 10));
    }
  }
}

/**
 * doctor's trial: asks the user systemd for a delegated scope as a sandbox does, and returns the
 * controllers the scope gets; throws with systemd-run's own words when it refuses.
 */
export function tryScope(systemd: UserSystemd): string {
  const script = `IFS= read -r self </proc/self/cgroup && IFS= read -r c <"${MOUNT}\${self#0::}/cgroup.controllers" && echo "$c"`;
  const unit = `tapbox-doctor-${randomBytes(4).toString('hex')}.scope`;
  const r = spawnSync(systemd.systemdRun, [...scopeOptions(unit), '--', '/bin/sh', '-c', script], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, XDG_RUNTIME_DIR: systemd.runtimeDir },
  });
  if (r.status !== 0) throw new Error((r.stderr || r.error?.message || `systemd-run exited ${r.status}; its log says why: \`journalctl --user -e\``).trim());
  return r.stdout.trim();
}
