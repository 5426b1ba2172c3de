// Where the native launcher lives, and its bare user-namespace mode (native/launcher/idmap.c): files of
// the user's subordinate ids can only be given their owners, or removed, by a process in a user
// namespace that maps those ids; the launcher makes one (no other namespace) and runs itself there.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../native/addon/index.js';
import { TapboxError } from '../errors.js';
import { subordinateArgs, subordinateIds, type SubordinateIds } from './subids.js';

export function launcherPath(): string {
  const path = join(packageRoot, 'build', 'Release', 'tapbox-launcher');
  if (!existsSync(path)) {
    throw new TapboxError('EINTERNAL', `the launcher is not built (${path} is missing); run \`npm install\` (or \`npm run build\`) in ${packageRoot}.`);
  }
  return path;
}

/** Exit status of the bare mode when the namespace could not be had (newuidmap refused): nothing ran. */
const REFUSED = 125;

/** The launcher's own sentence from a failed run ("tapbox-launcher: SENTENCE" on stderr), else its status. */
function complaint(result: ReturnType<typeof spawnSync>): string {
  if (result.error) return result.error.message;
  const said = String(result.stderr).trim().split('\n').at(-1)?.replace(/^tapbox-launcher: /, '');
  return said || `exit status ${result.status ?? result.signal}`;
}

/** How a run in the bare mode went: done, refused (the namespace could not be had: nothing was done), or failed. */
type Outcome = { done: true } | { done: false; refused: boolean; why: string };

/** Runs the launcher in MODE as root of a user namespace mapped with ids. */
function asSubordinateRoot(ids: SubordinateIds, mode: string[], input?: Buffer): Outcome {
  const launcher = launcherPath();
  const argv = ['--userns-only', ...subordinateArgs(ids), '--', launcher, ...mode];
  const result = spawnSync(launcher, argv, { input, stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'], cwd: '/' });
  if (result.status === 0) return { done: true };
  return { done: false, refused: result.status === REFUSED || result.error !== undefined, why: complaint(result) };
}

/** An owner to give: the path under the root, and the ids as the image has them (0..count). */
export type Owner = [path: string, uid: number, gid: number];

/**
 * Gives each path under root its owner, in a namespace mapped with ids. Returns null, or why the
 * namespace was refused (then no owner was given); throws if giving one failed.
 */
export function applyOwners(root: string, ids: SubordinateIds, owners: Owner[]): string | null {
  if (owners.length === 0) return null;
  const records = Buffer.from(owners.map(([path, uid, gid]) => `${uid} ${gid} ${path}\0`).join(''));
  const outcome = asSubordinateRoot(ids, ['--apply-owners', root], records);
  if (outcome.done) return null;
  if (outcome.refused) return outcome.why;
  throw new TapboxError('EINTERNAL', `${outcome.why}; this is a bug of tapbox's image store, so please report it.`);
}

/**
 * Removes path and all below it. Files an image gave to other owners are the user's subordinate ids,
 * which the user can't remove: what rmSync leaves is removed in the mapped namespace.
 */
export function removeTree(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  const lookup = subordinateIds();
  const outcome: Outcome = lookup.ids ? asSubordinateRoot(lookup.ids, ['--remove-tree', path]) : { done: false, refused: true, why: lookup.missing };
  if (!outcome.done) throw new TapboxError('EACCES', `${path} holds files of your subordinate ids that tapbox could not remove (${outcome.why}); fix that and run the command again, or remove it as root (sudo rm -rf ${path}).`);
}
