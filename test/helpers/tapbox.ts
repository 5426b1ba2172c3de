// Runs the tapbox CLI the way a user does: as an unprivileged user. When the tests run as root (CI),
// the CLI runs as TAPBOX_TEST_USER (default `tapboxtest`, created by .ci/run) through runuser.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, chownSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The checkout's root (found from here whether this file runs from test/ or from dist/test/). */
export const repoRoot = (() => {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
})();
export const cliPath = join(repoRoot, 'dist', 'src', 'cli', 'bin.cjs');
export const testUser = process.env.TAPBOX_TEST_USER ?? 'tapboxtest';
export const isRoot = process.getuid?.() === 0;

function ids(): { uid: number; gid: number } {
  if (!isRoot) return { uid: process.getuid!(), gid: process.getgid!() };
  const uid = Number(spawnSync('id', ['-u', testUser], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', testUser], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || uid === 0) throw new Error(`test user ${testUser} is missing: create it (useradd -m ${testUser}) or run the tests as a normal user`);
  return { uid, gid };
}

export const testIds = ids();

/**
 * In the VM lane's guests (test/vm/guest.sh), the cgroup v2 subtree delegated to the test user, as
 * systemd's user@.service has it: each command of the test user starts in a leaf of its own there,
 * owned by the user, as a login session's processes do.
 */
const userCgroup = process.env.TAPBOX_TEST_CGROUP;

/** argv that runs `args` as the unprivileged test user. */
export function asTestUser(argv: string[]): string[] {
  if (!isRoot) return argv;
  const asUser = ['runuser', '-u', testUser, '--', ...argv];
  if (!userCgroup) return asUser;
  const joinLeaf = 'leaf="$0/session-$$" && mkdir "$leaf" && chown -R "$1" "$leaf" && echo $$ > "$leaf/cgroup.procs" && shift && exec "$@"';
  return ['sh', '-c', joinLeaf, userCgroup, testUser, ...asUser];
}

/** A scratch directory the test user owns; removed by the returned cleanup. */
export function userTempDir(prefix = 'tapbox-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (isRoot) chownSync(dir, testIds.uid, testIds.gid);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `tapbox ARGS` as the test user, collecting its output. */
export function tapbox(args: string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const argv = asTestUser([process.execPath, cliPath, ...args]);
  return new Promise((resolveRun, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdin!.end(opts.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}
