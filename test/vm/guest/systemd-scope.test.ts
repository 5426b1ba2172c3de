// Runs inside the VM lane's guests: the middle route to whole-sandbox limits. A shell sits in a cgroup
// the test user does not own, and a real `systemd --user` manager (Debian's /lib/systemd/systemd) runs
// for the user in the subtree delegated to it, as user@.service runs it: tapbox asks it for a
// delegated scope per sandbox (src/supervisor/systemd-scope.ts) and the limits hold for the whole sandbox.
//
// Two things differ from a user's machine, both because the guest has no system manager (PID 1 is
// test/vm/guest.sh): /run/systemd/system is created, the marker the user manager checks before it
// agrees to run ("the system has not been booted with systemd"); and the root-owned cgroup the shell
// sits in is inside user@.service, where the user manager may move a process itself; on a user's
// machine the shell's session scope is outside it and the user manager asks the system manager to
// move systemd-run's process (the last test shows what happens here without one).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, repoRoot, testIds, testUser, userTempDir } from '../../helpers/tapbox.js';

const node = process.execPath;
const runtimeDir = `/run/user/${testIds.uid}`;
const service = `/sys/fs/cgroup/user.slice/user-${testIds.uid}.slice/user@${testIds.uid}.service`;
/** Root's, inside the user's subtree: the test user may not write it (see the top of this file). */
const foreign = join(service, 'root-owned-shell');
const apps = join(service, 'app.slice');
const marker = '/run/systemd/system';
let manager: ChildProcess | null = null;
let madeMarker = false;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `tapbox ARGS` (or `node ARGS` with a script) as the test user from the cgroup `from` (root's), as a shell there would. */
function tapboxFrom(from: string, args: string[], program = `${node} ${cliPath}`): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `echo $$ > ${from}/cgroup.procs && exec runuser -u ${testUser} -- env XDG_RUNTIME_DIR=${runtimeDir} ${program} ${quoted}`;
  return new Promise((resolveRun) => {
    const child = spawn('sh', ['-c', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** The scopes of tapbox's sandboxes the user manager has, as units and as cgroups. */
function tapboxScopes(): { units: string; cgroups: string[] } {
  const units = spawnSync('runuser', ['-u', testUser, '--', 'env', `XDG_RUNTIME_DIR=${runtimeDir}`, 'systemctl', '--user', 'list-units', '--all', '--plain', '--no-legend', 'tapbox-*'], { encoding: 'utf8' });
  const cgroups = existsSync(apps) ? readdirSync(apps).filter((name) => name.startsWith('tapbox-')) : [];
  return { units: units.stdout.trim(), cgroups };
}

/**
 * The tapbox scopes left: the cgroups at once (tapbox waits for systemd to remove its scope's cgroup
 * before it exits), the units once systemd has collected them (asynchronously; up to 10 s).
 */
async function scopesLeft(): Promise<{ units: string; cgroups: string[] }> {
  const cgroups = tapboxScopes().cgroups;
  let left = tapboxScopes();
  for (let i = 0; i < 100 && left.units; i++) {
    await sleep(100);
    left = tapboxScopes();
  }
  return { units: left.units, cgroups };
}

async function report(args: string[], command: string[]) {
  const { dir, cleanup } = userTempDir();
  try {
    const file = join(dir, 'report.json');
    const r = await tapboxFrom(foreign, ['--net', 'tap', '--report', file, ...args, '--', ...command]);
    return { ...r, usage: JSON.parse(readFileSync(file, 'utf8')).usage as { memoryPeakBytes: number | null; cpuSeconds: number; oomKills: number } };
  } finally {
    cleanup();
  }
}

beforeAll(async () => {
  // As pam_systemd makes it: /run/user/UID, the user's, 0700.
  mkdirSync('/run/user', { recursive: true, mode: 0o755 });
  mkdirSync(runtimeDir, { mode: 0o700 });
  chownSync(runtimeDir, testIds.uid, testIds.gid);
  if (!existsSync(marker)) {
    mkdirSync(marker, { recursive: true });
    madeMarker = true;
  }
  // The manager runs in a leaf of the user's subtree, as user@.service starts it in init.scope.
  const init = join(service, 'init.scope');
  mkdirSync(init, { recursive: true });
  chownSync(init, testIds.uid, testIds.gid);
  for (const file of ['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) chownSync(join(init, file), testIds.uid, testIds.gid);
  const start = `echo $$ > ${init}/cgroup.procs && exec runuser -u ${testUser} -- env XDG_RUNTIME_DIR=${runtimeDir} SYSTEMD_LOG_TARGET=console /lib/systemd/systemd --user`;
  let log = '';
  manager = spawn('sh', ['-c', start], { stdio: ['ignore', 'pipe', 'pipe'] });
  manager.stdout!.on('data', (d) => (log += d));
  manager.stderr!.on('data', (d) => (log += d));
  for (let i = 0; i < 1200 && !existsSync(join(runtimeDir, 'systemd', 'private')) && manager.exitCode === null; i++) await sleep(100);
  if (!existsSync(join(runtimeDir, 'systemd', 'private'))) throw new Error(`systemd --user did not start:\n${log}`);
  mkdirSync(foreign);
}, 180_000);

afterAll(async () => {
  if (manager && manager.exitCode === null) {
    manager.kill('SIGTERM');
    await new Promise((r) => manager!.once('exit', r));
  }
  rmSync(runtimeDir, { recursive: true, force: true });
  if (madeMarker) rmdirSync(marker);
  if (existsSync(foreign)) rmdirSync(foreign);
}, 120_000);

describe('whole-sandbox limits through a scope of the user systemd, from a cgroup the user does not own', () => {
  it('tapbox doctor says the user systemd delegates a scope to each sandbox', async () => {
    const r = await tapboxFrom(foreign, ['doctor']);
    expect(r.stdout).toMatch(/^ok {4}cgroup v2 delegation \(for whole-sandbox limits\): cgroup v2, \/user\.slice\/.*\/root-owned-shell is not yours, but your user systemd delegates a scope to each sandbox \(controllers: .*memory.*pids.*\)$/m);
  });

  it('runs node under --memory 256M with no warning, and leaves no scope behind', async () => {
    const r = await tapboxFrom(foreign, ['--memory', '256M', '--', node, '-e', 'console.log("node runs")']);
    expect(r.stderr).not.toMatch(/warning/);
    expect(r.stdout).toBe('node runs\n');
    expect(r.code).toBe(0);
    expect(await scopesLeft()).toEqual({ units: '', cgroups: [] });
  });

  it('lets one process of 150 MB live under --memory 256M, not two together: the OOM killer kills one, not the whole sandbox', async () => {
    const hold = `const b = Buffer.alloc(150 * 2 ** 20, 1); setTimeout(() => console.log("alive", b.length), 3000)`;
    const one = await report(['--memory', '256M'], [node, '-e', hold]);
    expect(one.stderr).not.toMatch(/warning/);
    expect(one.stdout).toBe(`alive ${150 * 2 ** 20}\n`);
    expect(one.usage.oomKills).toBe(0);
    expect(one.usage.memoryPeakBytes).toBeGreaterThan(150 * 2 ** 20);
    const two = await report(['--memory', '256M'], ['sh', '-c', `${node} -e '${hold}' & ${node} -e '${hold}' & wait; echo the sandbox lived on`]);
    expect(two.stdout.split('\n').filter((l) => l.startsWith('alive')).length).toBeLessThan(2);
    expect(two.stdout).toContain('the sandbox lived on\n');
    expect(two.usage.oomKills).toBeGreaterThanOrEqual(1);
    expect(await scopesLeft()).toEqual({ units: '', cgroups: [] });
  });

  it('stops a fork loop at --pids, and --require-limits runs', async () => {
    // sh gives up at the first fork the limit refuses; under a higher limit all 40 start.
    const script = 'for i in $(seq 40); do sleep 5 & done; echo all 40 started';
    const limited = await tapboxFrom(foreign, ['--require-limits', '--pids', '10', '--', 'sh', '-c', script]);
    expect(limited.stdout).toBe('');
    expect(limited.stderr).toMatch(/Cannot fork/);
    expect(limited.stderr).not.toMatch(/warning/);
    const roomy = await tapboxFrom(foreign, ['--require-limits', '--pids', '100', '--', 'sh', '-c', script]);
    expect(roomy.stdout).toBe('all 40 started\n');
    expect(roomy.code).toBe(0);
  });

  it('puts the sandbox in a cgroup of its own inside the scope, and nothing is left after SIGKILL of the supervisor', async () => {
    const run = tapboxFrom(foreign, ['--memory', '64M', '--', 'sleep', '600']);
    let sandbox: string | undefined;
    for (let i = 0; i < 1200 && !sandbox; i++) {
      await sleep(100);
      const scope = tapboxScopes().cgroups[0];
      if (scope) sandbox = readdirSync(join(apps, scope)).find((n) => /^tapbox-\d+-[0-9a-f]+$/.test(n)) && join(apps, scope);
    }
    expect(sandbox).toBeDefined();
    const [cgroup] = readdirSync(sandbox!).filter((n) => /^tapbox-\d+-[0-9a-f]+$/.test(n));
    // Wait for the launcher to have joined it (sleep then runs in it).
    for (let i = 0; i < 1200 && !readFileSync(join(sandbox!, cgroup!, 'cgroup.procs'), 'utf8').trim(); i++) await sleep(100);
    expect(readFileSync(join(sandbox!, cgroup!, 'memory.max'), 'utf8').trim()).toBe(String(64 * 2 ** 20));
    expect(readFileSync(join(sandbox!, cgroup!, 'memory.swap.max'), 'utf8').trim()).toBe('0');
    process.kill(Number(/^tapbox-(\d+)-/.exec(cgroup!)![1]), 'SIGKILL');
    await run;
    // The keeper sees the supervisor go, the sandbox dies with it: systemd removes the empty scope.
    for (let i = 0; i < 600 && tapboxScopes().cgroups.length; i++) await sleep(100);
    expect(await scopesLeft()).toEqual({ units: '', cgroups: [] });
  });

  it('does the same for the library: live usage while it runs, the final usage on the result, no warning', async () => {
    const script = `
      import { Sandbox } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'index.js'))};
      const sandbox = new Sandbox(['sh', '-c', 'read line; echo got $line'], { net: 'none', stdio: 'pipe', limits: { memory: '64M', pids: 20 } });
      const warnings = [];
      sandbox.on('warning', (w) => warnings.push(w));
      let out = '';
      sandbox.stdout.on('data', (d) => (out += d));
      const done = sandbox.run();
      let live = null;
      // The cgroup exists (usage() answers) just before the launcher joins it: wait for the sandbox in it.
      while (!(live = sandbox.usage())?.memoryBytes) await new Promise((r) => setTimeout(r, 50));
      sandbox.stdin.end('x\\n');
      const result = await done;
      console.log(JSON.stringify({ live, usage: result.usage, code: result.code, out, warnings }));`;
    const r = await tapboxFrom(foreign, ['--input-type=module', '-e', script], node);
    expect(r.stderr).toBe('');
    const seen = JSON.parse(r.stdout);
    expect(seen).toMatchObject({ code: 0, out: 'got x\n', warnings: [] });
    expect(seen.live.memoryBytes).toBeGreaterThan(0);
    expect(seen.usage.memoryPeakBytes).toBeGreaterThan(0);
    expect(seen.usage.oomKills).toBe(0);
    expect(await scopesLeft()).toEqual({ units: '', cgroups: [] });
  });

  it('refuses to run, rather than run unlimited, when the user systemd can\'t make the scope', async () => {
    // Outside the user's subtree the user manager may not move systemd-run's process (on a user's
    // machine it asks the system manager, which this guest has not).
    const outside = '/sys/fs/cgroup/not-delegated-scope';
    mkdirSync(outside);
    try {
      const r = await tapboxFrom(outside, ['--memory', '256M', '--', 'sh', '-c', 'echo ran']);
      expect(r.code).toBe(125);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^tapbox: your user systemd did not start a scope for the sandbox \(its log says why: `journalctl --user -e`\), so the limits can't hold; /);
      expect(await scopesLeft()).toEqual({ units: '', cgroups: [] });
    } finally {
      rmdirSync(outside);
    }
  });
});
