// `tapbox doctor`: checks each host requirement, says what passes, and for what fails, the fix.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { launcherPath, packageRoot } from './launcher.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function check(name: string, fn: () => string): Check {
  try {
    return { name, ok: true, detail: fn() };
  } catch (e) {
    return { name, ok: false, detail: (e as Error).message };
  }
}

export function hostChecks(): Check[] {
  return [
    check('Linux on x86_64 or aarch64', () => {
      if (process.platform !== 'linux') throw new Error(`tapbox needs Linux, this is ${process.platform}.`);
      if (!['x64', 'arm64'].includes(process.arch)) throw new Error(`tapbox supports x86_64 and aarch64, this is ${process.arch}.`);
      return `${process.platform} ${process.arch}`;
    }),
    check('native parts built', () => {
      launcherPath();
      const addon = join(packageRoot, 'build', 'Release', 'tapbox_native.node');
      if (!existsSync(addon)) throw new Error(`${addon} is missing; run \`npm install\` in ${packageRoot}.`);
      return 'launcher and addon present';
    }),
    check('unprivileged user namespaces', () => {
      if (readSysctl('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
        throw new Error('disabled by kernel.unprivileged_userns_clone=0; enable with `sudo sysctl -w kernel.unprivileged_userns_clone=1`.');
      }
      if (readSysctl('/proc/sys/user/max_user_namespaces') === '0') {
        throw new Error('disabled by user.max_user_namespaces=0; enable with `sudo sysctl -w user.max_user_namespaces=15000`.');
      }
      if (readSysctl('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') {
        throw new Error('restricted by AppArmor (Ubuntu 23.10+); allow with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for tapbox-launcher.');
      }
      const probe = spawnSync(launcherPath(), ['--probe'], { encoding: 'utf8', timeout: 10_000 });
      if (probe.status !== 0) throw new Error((probe.stderr || 'the launcher could not create a user namespace').trim());
      return 'a user namespace can be created';
    }),
    check('/dev/net/tun usable (for --net tap)', () => {
      if (!existsSync('/dev/net/tun')) throw new Error('/dev/net/tun is missing; load the module with `sudo modprobe tun`.');
      try {
        accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
      } catch {
        throw new Error('/dev/net/tun is not readable and writable by you; run `sudo chmod 0666 /dev/net/tun` (the mode Debian and Ubuntu ship).');
      }
      return '/dev/net/tun is read-write';
    }),
    check('DNS resolvers for the proxy', () => {
      const conf = readSysctl('/etc/resolv.conf') ?? '';
      const servers = conf.split('\n').filter((l) => /^\s*nameserver\s+\S+/.test(l)).map((l) => l.trim().split(/\s+/)[1]);
      if (servers.length === 0) throw new Error('/etc/resolv.conf names no nameserver; add one, or give tapbox --dns-upstream ADDR.');
      return `upstream ${servers.join(', ')}`;
    }),
  ];
}

export function runDoctor(): number {
  const checks = hostChecks();
  for (const c of checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}\n`);
  const failed = checks.filter((c) => !c.ok).length;
  process.stdout.write(failed ? `\n${failed} check(s) failed; tapbox refuses what needs them (a check in parentheses is needed only there) until they are fixed.\n` : '\nAll checks passed.\n');
  return failed ? 1 : 0;
}
