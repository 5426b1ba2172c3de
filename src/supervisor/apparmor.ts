// AppArmor's restriction of unprivileged user namespaces (Ubuntu 23.10+, GitHub's runners): what
// `tapbox doctor` explains and what `tapbox setup apparmor` installs. The restriction is lifted either
// for every program (a sysctl) or for one program by a profile that grants it `userns`; tapbox's
// profile names only its launcher, so every other program stays restricted.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { TapboxError } from '../errors.js';
import { launcherPath } from './launcher.js';

const RESTRICT_SYSCTL = '/proc/sys/kernel/apparmor_restrict_unprivileged_userns';
export const PROFILE_NAME = 'tapbox-launcher';
export const PROFILE_PATH = `/etc/apparmor.d/${PROFILE_NAME}`;

export function appArmorRestrictsUserns(): boolean {
  try {
    return readFileSync(RESTRICT_SYSCTL, 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

/** The profile for the launcher at `launcher` (an absolute, resolved path). */
export function launcherProfile(launcher: string): string {
  return [
    `# Written by \`tapbox setup apparmor\`: lets tapbox's launcher (and only it) create user`,
    `# namespaces where AppArmor restricts them. The launcher stays otherwise unconfined, as it is`,
    `# where AppArmor does not restrict user namespaces.`,
    'abi <abi/4.0>,',
    'include <tunables/global>',
    '',
    `profile ${PROFILE_NAME} ${launcher} flags=(unconfined) {`,
    '  userns,',
    '',
    `  include if exists <local/${PROFILE_NAME}>`,
    '}',
    '',
  ].join('\n');
}

/**
 * Why a profile for `path` would lift the restriction for more than tapbox, or null: a profile is
 * attached by path, so whoever can replace the file (or rename a directory above it) could put any
 * program there and get user namespaces. Root must own the file and every directory above it, and
 * nobody else may write them.
 */
export function unsafeProfileTarget(path: string): string | null {
  for (let p = path; ; p = dirname(p)) {
    const st = lstatSync(p);
    if (st.uid !== 0) return `${p} is owned by uid ${st.uid}, not root`;
    // A sticky directory (/tmp) still lets others create names in it, and its owner rename ours.
    if ((st.mode & 0o022) !== 0) return `${p} is writable by others than root`;
    if (p === '/') return null;
  }
}

/** What doctor prints when the restriction is on (null when it is off). */
export function appArmorAdvice(): string | null {
  if (!appArmorRestrictsUserns()) return null;
  return [
    'AppArmor restricts unprivileged user namespaces on this host (kernel.apparmor_restrict_unprivileged_userns=1,',
    "as on Ubuntu 23.10+ and GitHub's runners). tapbox needs one; there are two ways to give it:",
    "  - a profile for tapbox's launcher only (recommended: every other program stays restricted):",
    '      sudo "$(command -v tapbox)" setup apparmor',
    '  - lift the restriction for every program (wider: any local program can then reach the kernel',
    '    interfaces user namespaces open):',
    '      sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
    "      (and a file in /etc/sysctl.d to keep it after a reboot)",
  ].join('\n');
}

/**
 * `tapbox setup apparmor`: as root, installs and loads the profile; otherwise prints it with the
 * commands that install it. Refuses (EUSAGE) a launcher that others than root could replace.
 */
export function setupAppArmor(out: (text: string) => void): void {
  const launcher = realpathSync(launcherPath());
  const unsafe = unsafeProfileTarget(launcher);
  if (unsafe) {
    throw new TapboxError('EUSAGE', `a profile for ${launcher} would let any program put there create user namespaces, because ${unsafe}; install tapbox where only root can write (e.g. sudo npm install -g tapbox) and run this again from there.`);
  }
  const profile = launcherProfile(launcher);
  if (process.getuid?.() !== 0) {
    out(`${profile}\n# To install this profile, run tapbox setup apparmor as root:\n#   sudo "$(command -v tapbox)" setup apparmor\n# or write it to ${PROFILE_PATH} and load it with: sudo apparmor_parser -r ${PROFILE_PATH}\n`);
    return;
  }
  const parser = ['/sbin/apparmor_parser', '/usr/sbin/apparmor_parser'].find((p) => existsSync(p));
  if (!parser) throw new TapboxError('EUSAGE', 'apparmor_parser is missing, so the profile could not be loaded; install the apparmor package and run this again.');
  writeFileSync(PROFILE_PATH, profile, { mode: 0o644 });
  try {
    execFileSync(parser, ['-r', PROFILE_PATH], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    unlinkSync(PROFILE_PATH);
    const stderr = ((e as { stderr?: Buffer }).stderr?.toString() ?? '').trim();
    throw new TapboxError('EUSAGE', `apparmor_parser refused the profile (${stderr || (e as Error).message}); AppArmor 4 (Ubuntu 24.04 and later) is needed for its userns rule, and where AppArmor is older it does not restrict user namespaces either.`);
  }
  out(`Installed and loaded ${PROFILE_PATH} for ${launcher}.\n`);
}
