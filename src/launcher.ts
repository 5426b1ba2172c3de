// Where the native launcher lives and the plan we hand it: everything it needs is decided here, before
// it clones, and passed as arguments (see native/launcher/main.c for what each does).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TapboxError } from './errors.js';
import { SANDBOX_NET, type ResolvedOptions } from './options.js';
import { hardeningArgs } from './filesystem.js';

/** The package root: dist/src/ (compiled) or src/ (run from sources by the tests). */
export const packageRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new TapboxError('EINTERNAL', 'cannot find the tapbox package root; reinstall tapbox.');
    dir = parent;
  }
  return dir;
})();

export function launcherPath(): string {
  const path = join(packageRoot, 'build', 'Release', 'tapbox-launcher');
  if (!existsSync(path)) {
    throw new TapboxError('EINTERNAL', `the launcher is not built (${path} is missing); run \`npm install\` (or \`npm run build\`) in ${packageRoot}.`);
  }
  return path;
}

export function launcherArgs(o: ResolvedOptions, command: string[]): string[] {
  const args = ['--net', o.net, '--hostname', o.hostname, '--cwd', resolve(o.cwd)];
  if (o.uid === 'same') args.push('--same-uid');
  if (o.uid === 'nobody') args.push('--nobody');
  if (o.net === 'tap') {
    args.push('--mtu', String(o.mtu));
    args.push('--ip4', SANDBOX_NET.ip4, '--gw4', SANDBOX_NET.gateway4);
    args.push('--ip6', SANDBOX_NET.ip6, '--gw6', SANDBOX_NET.gateway6);
    args.push('--mac', SANDBOX_NET.sandboxMac);
    args.push('--resolv', SANDBOX_NET.dns4, '--resolv', SANDBOX_NET.dns6);
  }
  return [...args, ...hardeningArgs(o.hardening), '--', ...command];
}
