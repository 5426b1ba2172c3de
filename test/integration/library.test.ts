// The library as a program uses it: run() and spawn() from dist/src/index.js, driven as the
// unprivileged user through test/helpers/library-spawn.mjs (one JSON line per event it sees). Then the
// CLI's terminal experience built on the same events: --progress and the summary table on a terminal.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { asTestUser, cliPath, repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';
import { wholeSandboxLimits } from '../helpers/limits.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const driver = join(repoRoot, 'test', 'helpers', 'library-spawn.mjs');
const stderrTty = join(repoRoot, 'test', 'helpers', 'stderr-tty.py');

type Line = Record<string, unknown> & { event: string };

interface Spec {
  api: 'run' | 'spawn';
  command: string;
  args?: string[];
  options?: Record<string, unknown>;
  input?: string;
  killOnOutput?: string;
  killAtOnce?: string;
  unreadStderr?: boolean;
}

/** Runs the driver as the test user; `wrap` puts a command around it (argv of `sh -c`, "$@" is the driver). */
function drive(spec: Spec, wrap?: string): Promise<{ code: number | null; lines: Line[]; stderr: string }> {
  const node = [process.execPath, driver, JSON.stringify(spec)];
  const argv = asTestUser(wrap ? ['unshare', '--user', '--map-root-user', 'sh', '-c', wrap, 'sh', ...node] : node);
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: repoRoot });
    let out = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const parse = (l: string): Line => (l.startsWith('{') ? (JSON.parse(l) as Line) : { event: 'text', text: l });
    child.on('close', (code, signal) => resolve({ code, lines: out.trim().split('\n').filter(Boolean).map(parse), stderr: `${stderr}(driver exit ${code ?? signal})` }));
  });
}

const only = (lines: Line[], event: string) => lines.filter((l) => l.event === event);

describe('the package entry point', () => {
  it('exports allowlist.parse / load and Policy for programs that build rules', async () => {
    const { allowlist, Policy, TapboxError } = await import('../../src/index.js');
    const list = allowlist.parse('# mine\n198.18.0.0/15:80\n!198.18.9.0/24\nregistry.npmjs.org:443\n', 'mine.txt');
    expect(list.rules.map((r) => r.text)).toEqual(['198.18.0.0/15:80', '!198.18.9.0/24', 'registry.npmjs.org:443']);
    const policy = Policy.fromAllowlists([list, await allowlist.load('@npm')]);
    expect(policy.decide({ proto: 'tcp', addr: '198.18.1.2', port: 80 })).toMatchObject({ verdict: 'allow', via: 'ip-rule' });
    expect(policy.decide({ proto: 'tcp', addr: '198.18.9.2', port: 80 }).verdict).toBe('deny');
    expect(policy.decide({ proto: 'tcp', addr: '198.18.1.2', port: 443 }).verdict).toBe('deny');
    expect(() => allowlist.parse('ok.example\nnot a rule\n', 'bad.txt')).toThrow(TapboxError);
    expect(() => allowlist.parse('ok.example\nnot a rule\n', 'bad.txt')).toThrow(/^bad\.txt:2: bad rule "not a rule"/);
  });
});

describe('run()', () => {
  it('resolves with the exit code, stdout and stderr; input goes to stdin', async () => {
    const { lines } = await drive({ api: 'run', command: 'sh', args: ['-c', 'read x; echo "out $x"; echo "err $x" >&2; exit 3'], input: 'hello\n' });
    // usage: what the sandbox's cgroup measured, where it has one (a delegated cgroup v2).
    const usage = wholeSandboxLimits ? expect.objectContaining({ cpuSeconds: expect.any(Number), oomKills: 0 }) : null;
    expect(lines).toEqual([{ event: 'result', code: 3, signal: null, stdout: 'out hello\n', stderr: 'err hello\n', report: null, usage }]);
  });

  it('reads a status of 128+N as signal N', async () => {
    const { lines, stderr } = await drive({ api: 'run', command: 'sh', args: ['-c', 'kill -TERM $$'] });
    expect(lines[0], stderr).toMatchObject({ event: 'result', code: 143, signal: 'SIGTERM' });
  });

  it('rejects with a TapboxError when the sandbox cannot be set up, and runs nothing', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      const r = await drive({ api: 'run', command: 'touch', args: [join(dir, 'ran')], options: { allow: ['not a rule'], cwd: dir } });
      expect(r.lines).toEqual([expect.objectContaining({ event: 'error', name: 'TapboxError', code: 'EPOLICY', isTapboxError: true })]);
      expect(r.lines[0]!.message).toMatch(/--allow: bad rule "not a rule"/);
      const missing = await drive({ api: 'run', command: 'no-such-command-here' });
      expect(missing.lines[0]).toMatchObject({ event: 'error', code: 'ENOENT', isTapboxError: true });
      const usage = await drive({ api: 'run', command: 'true', options: { mtu: 100 } });
      expect(usage.lines[0]).toMatchObject({ event: 'error', code: 'EUSAGE', isTapboxError: true });
      const mode = await drive({ api: 'run', command: 'true', options: { net: 'none', allow: ['example.com'] } });
      expect(mode.lines[0]).toMatchObject({ event: 'error', code: 'EUSAGE', isTapboxError: true });
      const report = await drive({ api: 'run', command: 'touch', args: [join(dir, 'ran')], options: { cwd: dir, allow: ['example.com'], report: '/no-such-dir/report.json' } });
      expect(report.lines[0]).toMatchObject({ event: 'error', code: 'EUSAGE', isTapboxError: true });
      expect(report.lines[0]!.message).toBe('--report /no-such-dir/report.json: the directory /no-such-dir does not exist; give a path in a writable directory.');
      const mount = await drive({ api: 'run', command: 'touch', args: [join(dir, 'ran')], options: { cwd: dir, mounts: [{ type: 'ro', source: '/etc/hostname', target: '/no-such-dir/hostname' }] } });
      expect(mount.lines[0]).toMatchObject({ event: 'error', code: 'EMOUNT', isTapboxError: true });
      expect(mount.lines[0]!.message).toMatch(/\/no-such-dir\/hostname/);
      // User namespaces turned off (here: a user namespace whose limit on nested ones is 0).
      const userns = await drive({ api: 'run', command: 'touch', args: [join(dir, 'ran')], options: { cwd: dir } }, 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"');
      expect(userns.lines[0]).toMatchObject({ event: 'error', code: 'EUSERNS', isTapboxError: true });
      expect(userns.lines[0]!.message).toMatch(/user namespace.*(sysctl|AppArmor)/);
      expect(spawnSync('ls', [dir], { encoding: 'utf8' }).stdout).not.toContain('ran');
    } finally {
      cleanup();
    }
  });
});

describe('spawn()', () => {
  it('pipes stdin to the command and its output back, then emits spawn, exit and close', async () => {
    const { lines } = await drive({ api: 'spawn', command: 'sh', args: ['-c', 'tr a-z A-Z; echo done >&2; exit 5'], input: 'piped through\n' });
    expect(lines.map((l) => l.event)).toEqual(['spawn', 'exit', 'close']);
    expect(lines[0]).toEqual({ event: 'spawn', pid: true, pipes: true });
    expect(lines[1]).toEqual({ event: 'exit', code: 5, signal: null });
    expect(lines[2]).toEqual({ event: 'close', code: 5, signal: null, stdout: 'PIPED THROUGH\n', stderr: 'done\n', report: null });
  });

  it("emits 'close' even when the caller never reads stderr, as a ChildProcess does", async () => {
    const { lines } = await drive({ api: 'spawn', command: 'sh', args: ['-c', 'echo out; echo err >&2'], unreadStderr: true });
    expect(lines.map((l) => l.event)).toEqual(['spawn', 'exit', 'close']);
    expect(lines[2]).toMatchObject({ event: 'close', code: 0, stdout: 'out\n' });
  });

  it("with stdio 'inherit', the command writes to the caller's own stdout and there are no pipes", async () => {
    const { lines } = await drive({ api: 'spawn', command: 'sh', args: ['-c', 'echo straight through'], options: { stdio: 'inherit' } });
    expect(lines).toEqual([
      { event: 'spawn', pid: true, pipes: false },
      { event: 'text', text: 'straight through' },
      { event: 'exit', code: 0, signal: null },
      { event: 'close', code: 0, signal: null, stdout: '', stderr: '', report: null },
    ]);
  });

  it('kill() ends the command with the signal', async () => {
    const { lines } = await drive({ api: 'spawn', command: 'sh', args: ['-c', 'echo ready; exec sleep 600'], killOnOutput: 'SIGTERM' });
    expect(lines.map((l) => l.event)).toEqual(['spawn', 'kill', 'exit', 'close']);
    expect(lines[1]).toEqual({ event: 'kill', sent: true });
    expect(lines[2]).toEqual({ event: 'exit', code: 143, signal: 'SIGTERM' });
    expect(lines[3]).toMatchObject({ code: 143, signal: 'SIGTERM', stdout: 'ready\n' });
  });

  it('kill() before the sandbox is up means the command never starts', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      const { lines } = await drive({ api: 'spawn', command: 'touch', args: [join(dir, 'ran')], options: { cwd: dir, allow: ['198.18.0.0/15'] }, killAtOnce: 'SIGINT' });
      expect(lines.map((l) => l.event)).toEqual(['kill', 'exit', 'close']);
      expect(lines[1]).toEqual({ event: 'exit', code: 130, signal: 'SIGINT' });
      expect(spawnSync('ls', [dir], { encoding: 'utf8' }).stdout).not.toContain('ran');
    } finally {
      cleanup();
    }
  });

  it("emits 'error' with a TapboxError when the sandbox cannot be set up, and throws EUSAGE at once for a bad option", async () => {
    const failed = await drive({ api: 'spawn', command: 'true', options: { allowFiles: ['/nonexistent/list.txt'] } });
    expect(failed.lines.map((l) => l.event)).toEqual(['error']);
    expect(failed.lines[0]).toMatchObject({ code: 'EPOLICY', isTapboxError: true });
    expect(failed.lines[0]).not.toHaveProperty('thrown');
    expect(failed.lines[0]!.message).toMatch(/cannot read allowlist \/nonexistent\/list\.txt/);
    const usage = await drive({ api: 'spawn', command: 'true', options: { mtu: 70000 } });
    expect(usage.lines).toEqual([expect.objectContaining({ event: 'error', code: 'EUSAGE', thrown: true })]);
    const rule = await drive({ api: 'spawn', command: 'true', options: { allow: ['*.com'] } });
    expect(rule.lines).toEqual([expect.objectContaining({ event: 'error', code: 'EPOLICY', thrown: true })]);
  });
});

describe('--progress under a pseudo-terminal', () => {
  it("steps aside for the command's output: cleared before each line, drawn again after it", () => {
    const script = 'for i in 1 2 3; do echo "line $i"; sleep 0.5; done';
    const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'pty-run.py'), process.execPath, cliPath, '--allow', '198.18.0.0/15', '--progress', '--', 'sh', '-c', script]);
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: repoRoot, timeout: 60_000 });
    const { code, output } = JSON.parse(r.stdout) as { code: number; output: string };
    expect(code).toBe(0);
    expect(output).toMatch(/\rtapbox: 0 open \/ 0 flows, ↑ [\d.]+ (B|KiB) ↓ [\d.]+ (B|KiB), 0 denied\x1b\[K/);
    // (Each line went through two pseudo-terminals, the sandbox's and the test's: it ends in \r\r\n.)
    for (const i of [1, 2, 3]) expect(output).toMatch(new RegExp(`(^|\\n|\\r\\x1b\\[K)line ${i}\\r+\\n`));
    // A status line is never left in front of the command's output, and the last one is cleared.
    expect(output).not.toMatch(/denied(\x1b\[K)?line/);
    expect(output).toMatch(/\r\x1b\[K$/);
  });
});

describe.runIf(canMakeTestHost)('egress events and the report against a test host', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  let options: Record<string, unknown>;

  beforeAll(async () => {
    scratch = userTempDir();
    host = new TestHost();
    const zoneFile = join(scratch.dir, 'zone.json');
    writeFileSync(zoneFile, JSON.stringify({ 'lib.tapbox.test': { A: [host.ip4] }, 'blocked.tapbox.test': { A: [host.ip4] } }));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--http', '8080', '--tcp-echo', '7']);
    options = { allow: ['lib.tapbox.test:8080'], dnsUpstream: [host.ip4] };
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  it('streams dns → flow → flowEnd for an allowed connection, with the audit fields', async () => {
    const { lines } = await drive({ api: 'spawn', command: 'curl', args: ['-sS', '-m', '10', 'http://lib.tapbox.test:8080/lib'], options });
    const close = only(lines, 'close')[0]!;
    expect(close).toMatchObject({ code: 0, stdout: 'hello from the test host: /lib' });
    const egress = lines.filter((l) => ['dns', 'flow', 'flowEnd', 'deny'].includes(l.event));
    const lookup = egress.findIndex((l) => l.event === 'dns' && l.name === 'lib.tapbox.test' && l.type === 'A');
    const flow = egress.findIndex((l) => l.event === 'flow');
    const end = egress.findIndex((l) => l.event === 'flowEnd');
    expect(lookup).toBeGreaterThanOrEqual(0);
    expect(lookup).toBeLessThan(flow);
    expect(flow).toBeLessThan(end);
    expect(egress[lookup]).toMatchObject({ verdict: 'allow', answers: [`A ${host.ip4}`] });
    expect(egress[flow]).toMatchObject({ proto: 'tcp', dst: host.ip4, port: 8080, name: 'lib.tapbox.test', verdict: 'allow', via: 'pin' });
    expect(egress[end]).toMatchObject({ flowId: egress[flow]!.flowId, dst: host.ip4, port: 8080, name: 'lib.tapbox.test' });
    expect(egress[end]!.bytesDown).toBeGreaterThan(0);
    expect(only(lines, 'deny')).toEqual([]);
    // 'close' comes last, with the report of what happened.
    expect(lines[lines.length - 1]!.event).toBe('close');
    expect((close.report as { totals: unknown }).totals).toMatchObject({ connections: 1, denied: 0 });
  });

  it("streams 'deny' for a refused connection and a refused lookup", async () => {
    const script = `getent hosts blocked.tapbox.test; curl -sS -m 10 http://${host.ip4}:8080/`;
    const { lines } = await drive({ api: 'spawn', command: 'sh', args: ['-c', script], options });
    expect(only(lines, 'close')[0]).toMatchObject({ code: 7 }); // curl: connection refused
    const denied = only(lines, 'deny');
    expect(denied).toContainEqual(expect.objectContaining({ name: 'blocked.tapbox.test', verdict: 'deny' }));
    const deniedFlow = denied.find((l) => 'flowId' in l);
    expect(deniedFlow).toMatchObject({ proto: 'tcp', dst: host.ip4, port: 8080, name: null, verdict: 'deny' });
    // The same denial also came as a 'flow' event, and no flow ended: none was opened.
    expect(only(lines, 'flow')).toEqual([expect.objectContaining({ flowId: deniedFlow!.flowId, verdict: 'deny' })]);
    expect(only(lines, 'flowEnd')).toEqual([]);
  });

  it("streams 'limit' when a cap refuses a flow", async () => {
    // A list whose first line caps the flows open at once to 1: a second connection while one is open is refused.
    const list = join(scratch.dir, 'one-flow.txt');
    writeFileSync(list, `1\n${host.ip4}\n`);
    const script = `exec 3<>/dev/tcp/${host.ip4}/7; curl -sS -m 10 http://${host.ip4}:8080/; echo "curl $?"; exec 3>&-`;
    const { lines } = await drive({ api: 'spawn', command: 'bash', args: ['-c', script], options: { allowFiles: [list] } });
    expect(only(lines, 'close')[0]!.stdout).toMatch(/curl [1-9]\d*\n$/);
    expect(only(lines, 'limit')).toEqual([{ event: 'limit', limit: 'flows', value: 1, count: 1, detail: expect.any(String) }]);
    expect(only(lines, 'flow').filter((l) => l.verdict === 'allow')).toHaveLength(1);
  });

  it('run() resolves with the report', async () => {
    // The second connection goes to the address lib.tapbox.test was pinned to, on a port its rule does not cover.
    const script = `curl -sS -m 10 http://lib.tapbox.test:8080/a; curl -sS -m 10 http://${host.ip4}:9090/b`;
    const { lines } = await drive({ api: 'run', command: 'sh', args: ['-c', script], options });
    const result = lines[0]!;
    expect(result).toMatchObject({ event: 'result', code: 7, stdout: 'hello from the test host: /a' });
    const report = result.report as { destinations: { destination: string }[]; totals: Record<string, number> };
    // Both connections went to lib.tapbox.test's address, which carries its name: one destination, 'mixed'.
    expect(report.destinations).toEqual([
      expect.objectContaining({ destination: 'lib.tapbox.test', verdict: 'mixed', connections: 1, denied: 1, lookups: 2 }),
    ]);
    expect(report.totals).toMatchObject({ connections: 1, denied: 1, lookups: 2, deniedLookups: 0 });
    expect(report.totals.bytesDown).toBeGreaterThan('hello from the test host: /a'.length);
  });

  describe('on a terminal', () => {
    // The denied connection first, the allowed one a second later: each shows on the status line.
    const script = () => `curl -sS -m 10 http://${host.ip4}:8080/; sleep 1; curl -sS -m 10 http://lib.tapbox.test:8080/tty; sleep 1`;
    const flags = () => ['--allow', 'lib.tapbox.test:8080', '--dns-upstream', host.ip4, '--progress', '--', 'sh', '-c', script()];

    it('--progress draws a status line on stderr, clears it before the summary table, and keeps stdout clean', async () => {
      const argv = asTestUser(['python3', stderrTty, process.execPath, cliPath, ...flags()]);
      const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], cwd: repoRoot });
        let out = '';
        child.stdout!.on('data', (d) => (out += d));
        child.on('close', () => resolve(JSON.parse(out) as { code: number; stdout: string; stderr: string }));
      });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('hello from the test host: /tty');
      expect(r.stderr).toMatch(/\rtapbox: 0 open \/ 0 flows, ↑ [\d.]+ (B|KiB) ↓ [\d.]+ (B|KiB), 1 denied\x1b\[K/);
      expect(r.stderr).toMatch(/\rtapbox: [01] open \/ 1 flows, ↑ [\d.]+ (B|KiB) ↓ [\d.]+ (B|KiB), 1 denied\x1b\[K/);
      // Cleared, then the table (box-drawn on a terminal).
      const table = r.stderr.indexOf('tapbox egress summary');
      expect(table).toBeGreaterThan(0);
      expect(r.stderr.slice(0, table)).toMatch(/\r\x1b\[K\n?$/);
      expect(r.stderr.slice(table)).not.toMatch(/open \//);
      expect(r.stderr.slice(table)).toMatch(/┌─+┬/);
      expect(r.stderr.slice(table)).toMatch(/│ lib\.tapbox\.test +│ allowed │/);
      // No status line is ever wider than the terminal (100 columns in stderr-tty.py).
      for (const status of r.stderr.match(/tapbox: \d+ open[^\r\x1b]*/g) ?? []) expect(status.length).toBeLessThan(100);
    });

    it('without a terminal, --progress prints nothing and the summary is plain text', async () => {
      const r = await tapbox(flags(), { cwd: repoRoot });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('hello from the test host: /tty');
      expect(r.stderr).not.toMatch(/open \/|\r|\x1b/);
      const table = r.stderr.slice(r.stderr.indexOf('tapbox egress summary'));
      // The "by" column names the process behind the denial (attribution of denied flows, the default).
      expect(table).toMatch(/^tapbox egress summary\ndestination +verdict +conns +denied +lookups +up +down +by\n/);
      expect(table).toMatch(/\nlib\.tapbox\.test +allowed +1 +0 +\d+ /);
      expect(table).not.toMatch(/[│┌─]/);
    });
  });
});
