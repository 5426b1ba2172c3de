// `tapbox setup apparmor` and doctor's advice where AppArmor restricts user namespaces (Ubuntu
// 23.10+). Loading a profile needs AppArmor 4 in the kernel and the parser; what is checked here is
// what the user is shown and what is refused.
import { spawnSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { launcherProfile, PROFILE_PATH, unsafeProfileTarget } from '../../src/supervisor/apparmor.js';
import { cliPath, isRoot, tapbox, userTempDir } from '../helpers/tapbox.js';

describe('the launcher profile', () => {
  it('grants userns to the launcher\'s path alone, unconfined otherwise, with a local include', () => {
    const profile = launcherProfile('/usr/lib/node_modules/tapbox/build/Release/tapbox-launcher');
    expect(profile).toContain('abi <abi/4.0>,');
    expect(profile).toMatch(/^profile tapbox-launcher \/usr\/lib\/node_modules\/tapbox\/build\/Release\/tapbox-launcher flags=\(unconfined\) \{\n {2}userns,\n\n {2}include if exists <local\/tapbox-launcher>\n\}\n$/m);
  });

  it('is refused for a launcher that someone other than root could replace', () => {
    const { dir, cleanup } = userTempDir();
    try {
      const launcher = join(dir, 'tapbox-launcher');
      // A user's install (tests run as root: the temp dir belongs to the test user).
      expect(unsafeProfileTarget(dir)).toMatch(/is owned by uid \d+, not root|writable by others/);
      // A sticky, world-writable directory above it (/tmp) is refused whoever owns the file.
      expect(unsafeProfileTarget('/tmp')).toBe('/tmp is writable by others than root');
      symlinkSync('/usr/bin/true', launcher);
      expect(unsafeProfileTarget(launcher)).not.toBeNull();
    } finally {
      cleanup();
    }
  });

  it('accepts a root-owned launcher in root-owned directories', () => {
    expect(unsafeProfileTarget('/usr/bin/env')).toBeNull();
  });
});

describe('tapbox setup', () => {
  it.runIf(isRoot)('as the user, prints the profile and how to install it, writing nothing', async () => {
    const r = await tapbox(['setup', 'apparmor']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^profile tapbox-launcher \/\S+\/build\/Release\/tapbox-launcher flags=\(unconfined\) \{$/m);
    expect(r.stdout).toContain('sudo "$(command -v tapbox)" setup apparmor');
    expect(existsSync(PROFILE_PATH)).toBe(false);
  });

  it('names the one thing it sets up when asked for another, exit 2', async () => {
    const r = await tapbox(['setup', 'selinux']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('tapbox: there is nothing called "selinux" to set up; the one thing is apparmor: tapbox setup apparmor.\n');
  });

  const hasParser = ['/sbin/apparmor_parser', '/usr/sbin/apparmor_parser'].some((p) => existsSync(p));
  it.runIf(isRoot && !hasParser)('as root without apparmor_parser, says what to install and leaves no profile behind', () => {
    const r = spawnSync(process.execPath, [cliPath, 'setup', 'apparmor'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('tapbox: apparmor_parser is missing, so the profile could not be loaded; install the apparmor package and run this again.\n');
    expect(existsSync(PROFILE_PATH)).toBe(false);
  });
});
