// `tapbox doctor`: checks each host requirement by trying it as tapbox will (real sandboxes of each
// kind, started through this CLI), says what works, and for what does not, why and the fix. Kernel
// versions are never consulted: what the kernel answers is the truth on every distribution.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { addonPath, packageRoot } from '../../native/addon/index.js';
import { launcherPath } from './launcher.js';
import { appArmorAdvice, appArmorRestrictsUserns } from './apparmor.js';
import { findCgroupPlace, perProcessLimits } from './cgroup.js';
import { tryScope } from './systemd-scope.js';
import { subordinateArgs, subordinateIds } from '../idmap/subids.js';

export interface Check {
  name: string;
  /** 'warn': tapbox works without it, with less (the detail says what and how to get it). */
  status: 'ok' | 'warn' | 'fail';
  /** status is not 'fail': what needs this check works. */
  ok: boolean;
  detail: string;
}

class Warning extends Error {}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function check(name: string, fn: () => string): Check {
  try {
    return { name, status: 'ok', ok: true, detail: fn() };
  } catch (e) {
    const status = e instanceof Warning ? 'warn' : 'fail';
    return { name, status, ok: status !== 'fail', detail: (e as Error).message };
  }
}

/** Runs `tapbox ARGS` (this very CLI) and returns its stdout, or throws its one-sentence error. */
function trySandbox(args: string[]): string {
  const cli = join(packageRoot, 'dist', 'src', 'cli', 'bin.cjs');
  const r = spawnSync(process.execPath, [cli, '--log-level', 'silent', ...args], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const sentence = r.stderr.split('\n').find((l) => l.startsWith('tapbox: ') && !l.startsWith('tapbox: warning'));
    throw new Error(sentence?.slice('tapbox: '.length) ?? `the sandbox exited with ${r.status ?? r.signal} (${r.stderr.trim() || 'no message'})`);
  }
  return r.stdout;
}

function userNamespaces(): string {
  if (readSysctl('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    throw new Error('disabled by kernel.unprivileged_userns_clone=0; enable with `sudo sysctl -w kernel.unprivileged_userns_clone=1`.');
  }
  if (readSysctl('/proc/sys/user/max_user_namespaces') === '0') {
    throw new Error('disabled by user.max_user_namespaces=0; enable with `sudo sysctl -w user.max_user_namespaces=15000`.');
  }
  const probe = spawnSync(launcherPath(), ['--probe'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.status !== 0) throw new Error((probe.stderr || 'the launcher could not create a user namespace').trim().replace(/^tapbox: /, ''));
  if (appArmorRestrictsUserns()) return `a user namespace can be created (AppArmor lets tapbox-launcher through)`;
  return 'a user namespace can be created';
}

/**
 * Whether this process's cgroup v2 is delegated to the user, or else a user systemd delegates a scope
 * to each sandbox (tried for real): whole-sandbox limits need one of them.
 */
function cgroupDelegation(): string {
  const place = findCgroupPlace();
  if (place.reason !== undefined) throw new Warning(perProcessLimits(place.reason));
  if (place.systemd) {
    const yours = readSysctl('/proc/self/cgroup')?.trim().slice(3);
    try {
      return `cgroup v2, ${yours} is not yours, but your user systemd delegates a scope to each sandbox (controllers: ${tryScope(place.systemd) || 'none'})`;
    } catch (e) {
      throw new Warning(`your cgroup ${yours} is not delegated to you and your user systemd did not make a scope for a trial sandbox (${(e as Error).message}), so runs with --memory, --pids, --cpus or --require-limits stop before they start; check \`systemctl --user status\`.`);
    }
  }
  const controllers = readSysctl(join(place.base, 'cgroup.controllers')) ?? '';
  return `cgroup v2, ${place.base.slice('/sys/fs/cgroup'.length) || '/'} is yours (controllers: ${controllers || 'none'})`;
}

/** Whether images keep their files' owners: a subordinate range, and newuidmap mapping it for real. */
function subordinateIdMapping(): string {
  const flattened = "until then an image's files of other owners are yours (root's in the box)";
  const lookup = subordinateIds();
  if (!lookup.ids) throw new Warning(`${lookup.missing}; ${flattened}.`);
  const probe = spawnSync(launcherPath(), ['--userns-only', ...subordinateArgs(lookup.ids), '--', 'true'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.status !== 0) throw new Warning(`${(probe.stderr || `exit status ${probe.status}`).trim().replace(/^tapbox-launcher: /, '')}; check that newuidmap and newgidmap are setuid root; ${flattened}.`);
  const { uid, gid } = lookup.ids;
  return `image uids 1-${uid.count} are your ${uid.start}-${uid.start + uid.count - 1}, gids 1-${gid.count} your ${gid.start}-${gid.start + gid.count - 1}`;
}

export function hostChecks(): Check[] {
  return [
    check('Linux on x86_64 or aarch64', () => {
      if (process.platform !== 'linux') throw new Error(`tapbox needs Linux, this is ${process.platform}.`);
      if (!['x64', 'arm64'].includes(process.arch)) throw new Error(`tapbox supports x86_64 and aarch64, this is ${process.arch}.`);
      return `${process.platform} ${process.arch}, kernel ${readSysctl('/proc/sys/kernel/osrelease') ?? 'unknown'}`;
    }),
    check('native parts built', () => {
      launcherPath();
      if (!existsSync(addonPath)) throw new Error(`${addonPath} is missing; run \`npm install\` in ${packageRoot}.`);
      return 'launcher and addon present';
    }),
    check('unprivileged user namespaces', userNamespaces),
    check('read-only mode, seccomp and no_new_privs', () => {
      const status = trySandbox(['--net', 'none', '--', 'cat', '/proc/self/status']);
      if (!/^Seccomp:\s+2$/m.test(status)) throw new Error('the sandbox ran without its seccomp filter; report this as a tapbox bug.');
      if (!/^NoNewPrivs:\s+1$/m.test(status)) throw new Error('the sandbox ran without no_new_privs; report this as a tapbox bug.');
      return 'a sandbox runs, with the seccomp filter and no_new_privs';
    }),
    check('overlayfs in a user namespace (for -x, --rootfs, -k)', () => {
      trySandbox(['-x', '--net', 'none', '--', 'true']);
      return '-x sandboxes run';
    }),
    check("subordinate ids (for images' owners)", subordinateIdMapping),
    check('/dev/net/tun usable (for --net tap)', () => {
      if (!existsSync('/dev/net/tun')) throw new Error('/dev/net/tun is missing; load the module with `sudo modprobe tun`.');
      try {
        accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
      } catch {
        throw new Error('/dev/net/tun is not readable and writable by you; run `sudo chmod 0666 /dev/net/tun` (the mode Debian and Ubuntu ship).');
      }
      trySandbox(['--net', 'tap', '--', 'true']);
      return '/dev/net/tun is read-write and a sandbox gets its TAP device';
    }),
    check('DNS resolvers for the proxy', () => {
      const conf = readSysctl('/etc/resolv.conf') ?? '';
      const servers = conf.split('\n').filter((l) => /^\s*nameserver\s+\S+/.test(l)).map((l) => l.trim().split(/\s+/)[1]);
      if (servers.length === 0) throw new Error('/etc/resolv.conf names no nameserver; add one, or give tapbox --dns-upstream ADDR.');
      return `upstream ${servers.join(', ')}`;
    }),
    check('cgroup v2 delegation (for whole-sandbox limits)', cgroupDelegation),
  ];
}

export function runDoctor(): number {
  const checks = hostChecks();
  const label = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' };
  for (const c of checks) process.stdout.write(`${label[c.status]}  ${c.name}: ${c.detail}\n`);
  const advice = appArmorAdvice();
  if (advice) process.stdout.write(`\n${advice}\n`);
  const failed = checks.filter((c) => c.status === 'fail').length;
  process.stdout.write(failed ? `\n${failed} check(s) failed; tapbox refuses what needs them (a check in parentheses is needed only there) until they are fixed.\n` : '\nAll checks passed.\n');
  return failed ? 1 : 0;
}
