// Runs inside the VM lane's guests (cgroup v2, a subtree delegated to the test user as systemd does):
// --memory, --pids and --cpus hold for the sandbox as a whole, its usage is reported, and nothing of
// its cgroup is left behind. test/integration/filesystem.test.ts covers the per-process fallback.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { asTestUser, cliPath, repoRoot, tapbox, testUser, userTempDir } from '../../helpers/tapbox.js';

const userCgroup = process.env.TAPBOX_TEST_CGROUP!;
const node = process.execPath;

/** Every cgroup below the user's subtree, as paths relative to it. */
function cgroupTree(dir = userCgroup, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => [`${prefix}${e.name}`, ...cgroupTree(join(dir, e.name), `${prefix}${e.name}/`)]);
}
const sandboxCgroups = () => cgroupTree().filter((p) => /(^|\/)tapbox-\d+-[0-9a-f]+$/.test(p));

async function report(args: string[], command: string[]) {
  const { dir, cleanup } = userTempDir();
  try {
    const file = join(dir, 'report.json');
    const r = await tapbox(['--net', 'tap', '--report', file, ...args, '--', ...command], { timeoutMs: 240_000 });
    return { ...r, usage: JSON.parse(readFileSync(file, 'utf8')).usage as { memoryPeakBytes: number | null; cpuSeconds: number; oomKills: number } };
  } finally {
    cleanup();
  }
}

describe('whole-sandbox limits on cgroup v2', () => {
  it('runs node under --memory 256M, without a warning', async () => {
    const r = await tapbox(['--memory', '256M', '--', node, '-e', 'console.log("node runs")']);
    expect(r.stdout).toBe('node runs\n');
    expect(r.stderr).not.toMatch(/warning/);
    expect(r.code).toBe(0);
  });

  it('lets one process of 150 MB live under --memory 256M, not two together, and reports the OOM kill', async () => {
    const hold = `const b = Buffer.alloc(150 * 2 ** 20, 1); setTimeout(() => console.log("alive", b.length), 3000)`;
    const one = await report(['--memory', '256M'], [node, '-e', hold]);
    expect(one.stdout).toBe(`alive ${150 * 2 ** 20}\n`);
    expect(one.usage.oomKills).toBe(0);
    expect(one.usage.memoryPeakBytes).toBeGreaterThan(150 * 2 ** 20);
    const two = await report(['--memory', '256M'], ['sh', '-c', `${node} -e '${hold}' & ${node} -e '${hold}' & wait`]);
    expect(two.stdout.split('\n').filter((l) => l.startsWith('alive')).length).toBeLessThan(2);
    expect(two.usage.oomKills).toBeGreaterThanOrEqual(1);
  });

  it('stops a fork loop at --pids', async () => {
    // sh gives up at the first fork the limit refuses (so it prints nothing); under a higher limit all 40 start.
    const script = 'for i in $(seq 40); do sleep 5 & done; echo all 40 started';
    const limited = await tapbox(['--pids', '10', '--', 'sh', '-c', script], { timeoutMs: 240_000 });
    expect(limited.stdout).toBe('');
    expect(limited.stderr).toMatch(/Cannot fork/);
    const roomy = await tapbox(['--pids', '100', '--', 'sh', '-c', script], { timeoutMs: 240_000 });
    expect(roomy.stdout).toBe('all 40 started\n');
  });

  it('gives a busy loop at most about half a CPU under --cpus 0.5, and reports CPU time', async () => {
    const started = Date.now();
    const r = await report(['--cpus', '0.5'], ['timeout', '6', 'sh', '-c', 'while :; do :; done']);
    const wall = (Date.now() - started) / 1000;
    expect(r.code).toBe(124);
    expect(r.usage.cpuSeconds).toBeGreaterThan(0.5);
    // Quota: 50 ms per 100 ms, so at most half of the time the run took (with room for start-up).
    expect(r.usage.cpuSeconds).toBeLessThan(0.5 * wall + 1);
  });

  it('leaves no cgroup behind after a normal exit, and the next start removes what a SIGKILLed supervisor left', async () => {
    const before = sandboxCgroups();
    await tapbox(['--memory', '64M', '--', 'true']);
    expect(sandboxCgroups()).toEqual(before);

    const argv = asTestUser([node, cliPath, '--memory', '64M', '--', 'sleep', '600']);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: repoRoot, stdio: 'ignore' });
    let left: string[] = [];
    for (let i = 0; i < 600 && left.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = sandboxCgroups().filter((p) => !before.includes(p));
    }
    expect(left).toHaveLength(1);
    const supervisor = Number(/tapbox-(\d+)-/.exec(left[0]!)![1]);
    process.kill(supervisor, 'SIGKILL');
    await new Promise((r) => child.on('exit', r));
    // The sandbox died with its supervisor (PR_SET_PDEATHSIG); its cgroup is still there, empty,
    // until the next start from the same session (the same delegated cgroup) removes it.
    expect(sandboxCgroups()).toContain(left[0]);
    const session = join(userCgroup, dirname(left[0]!), 'tapbox-processes');
    const next = spawnSync('sh', ['-c', `echo $$ > ${session}/cgroup.procs && exec runuser -u ${testUser} -- ${node} ${cliPath} --memory 64M -- true`], { encoding: 'utf8', cwd: repoRoot });
    expect(next.status).toBe(0);
    expect(sandboxCgroups()).toEqual(before);
  });

  it('refuses to run with --require-limits where the cgroup is not the user\'s, and warns once without it', () => {
    const foreign = '/sys/fs/cgroup/not-delegated-limits';
    mkdirSync(foreign);
    try {
      const run = (flags: string) =>
        spawnSync('sh', ['-c', `echo $$ > ${foreign}/cgroup.procs && exec runuser -u ${testUser} -- ${node} ${cliPath} ${flags} -- ${node} -e 'console.log("ran")'`], { encoding: 'utf8', cwd: repoRoot });
      const refused = run('--require-limits --memory 256M');
      expect(refused.status).toBe(125);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/^tapbox: --require-limits: your cgroup \/not-delegated-limits is not delegated to you and no user systemd runs for you \(\/run\/user\/\d+\/systemd\/private is missing\), so the limits can't hold for the sandbox as a whole; /);
      const warned = run('--memory 256M');
      expect(warned.stdout).toBe('ran\n'); // RLIMIT_DATA: node starts under it
      expect(warned.stderr.match(/warning/g)).toHaveLength(1);
      expect(warned.stderr).toMatch(/^tapbox: warning: your cgroup \/not-delegated-limits is not delegated to you and no user systemd runs for you \(\/run\/user\/\d+\/systemd\/private is missing\), so --memory, --pids and --cpus hold per process/);
    } finally {
      rmdirSync(foreign);
    }
  });
});
