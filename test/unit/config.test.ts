// Config files (src/config/): keys, validation, precedence, zbox's keys, the shipped schema, and a
// run driven by a config file as the unprivileged test user.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';

const { dir, cleanup } = userTempDir('tapbox-config-');
afterAll(cleanup);
/** Boxes started here keep their state in the scratch directory. */
const boxEnv = { ...process.env, XDG_STATE_HOME: join(dir, 'state'), XDG_RUNTIME_DIR: join(dir, 'run') };

let n = 0;
/** Writes `content` (JSON unless a string) to a new file the test user can read; returns its path. */
function configFile(content: unknown): string {
  const file = join(dir, `config-${n++}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content), { mode: 0o644 });
  return file;
}

async function printed(args: string[], cwd = dir): Promise<Record<string, unknown>> {
  const r = await tapbox(['config', '--print', ...args], { cwd });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** zbox's example config (its config.json), as zbox ships it. */
const ZBOX_EXAMPLE = {
  name: 'zbox-sandbox',
  root: '/tmp/zbox_root',
  binary: '/bin/busybox',
  cpu_cores: 2,
  cpu_limit_percent: 10,
  memory_limit_mb: 3,
  network_access: true,
  port_forwards: [{ host: 8080, sandbox: 80 }],
};

describe('config files', () => {
  it('ships the schema `tapbox config --schema` prints, with a key for every option', async () => {
    const r = await tapbox(['config', '--schema']);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as { properties: Record<string, unknown> };
    expect(JSON.parse(readFileSync(join(repoRoot, 'schema', 'tapbox.schema.json'), 'utf8'))).toEqual(schema);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('schema');
    // Every option --help lists has its key (but --help, --config, and config's own --schema and --print).
    const help = (await tapbox(['--help'])).stdout;
    const flags = [...help.matchAll(/--(?:no-)?([a-z][a-z0-9-]*)/g)].map((m) => m[1]!).filter((f) => !['help', 'config', 'schema', 'print'].includes(f));
    for (const flag of new Set(flags)) expect(Object.keys(schema.properties), `--${flag}`).toContain(flag);
    for (const key of Object.keys(ZBOX_EXAMPLE)) expect(Object.keys(schema.properties)).toContain(key);
  });

  it('applies the keys of a file, and a flag on the command line wins', async () => {
    const file = configFile({ memory: '1G', hostname: 'from-file', allow: ['example.com:443'], summary: false, 'sni-check': false });
    const s = await printed(['--config', file, '--memory', '2G']);
    expect(s).toMatchObject({ memory: '2G', hostname: 'from-file', allow: ['example.com:443'], summary: false, 'sni-check': false });
  });

  it('applies files in order, a later one replacing what an earlier one set', async () => {
    const first = configFile({ hostname: 'first', pids: 10 });
    const second = configFile({ hostname: 'second' });
    expect(await printed(['--config', first, '--config', second])).toMatchObject({ hostname: 'second', pids: 10 });
  });

  it('takes zbox\'s keys as they are', async () => {
    const s = await printed(['--config', configFile(ZBOX_EXAMPLE)]);
    expect(s).toMatchObject({ hostname: 'zbox-sandbox', rootfs: '/tmp/zbox_root', cpuset: '0-1', cpus: 0.2, memory: '3M', net: 'tap', publish: ['8080:80'], command: ['/bin/busybox'] });
    // A command on the command line replaces zbox's binary.
    expect(await printed(['--config', configFile(ZBOX_EXAMPLE), '--', 'sh'])).toMatchObject({ command: ['sh'] });
  });

  it('refuses bad keys and bad values as FILE: key: what is wrong, and runs nothing', async () => {
    const cases: [unknown, RegExp][] = [
      [{ memroy: '1G' }, /: memroy: is not a tapbox setting; `tapbox config --schema` lists them$/m],
      [{ memory: true }, /: memory: must be string,number$/m],
      [{ net: 'bridge' }, /: net: must be one of tap, none, host$/m],
      [{ allow: 'example.com' }, /: allow: must be array$/m],
      [{ mtu: 'lots' }, /: mtu: .*mtu/m],
      [{ cpus: 'half' }, /: cpus: .*cpus/m],
      [{ cpu_limit_percent: 150 }, /: cpu_limit_percent: must be <= 100$/m],
      [{ port_forwards: [{ host: 8080 }] }, /: port_forwards\.0: must have required property 'sandbox'$/m],
      [{ memory_limit_mb: 3, memory: '3M' }, /: memory_limit_mb: sets memory, and so does the key memory; keep one\.$/m],
      ['{"memory": ', /: is not JSON \(/],
      // Values the flags take as text and the run checks when it resolves its options.
      [{ cpuset: '9-2' }, /: cpuset: --cpuset takes CPU numbers and ranges such as 0,2-3, not "9-2"\.$/m],
      [{ memory: '12Q' }, /: memory: --memory "12Q" is not a size/m],
      [{ root: '/nonexistent/tapbox-root' }, /: root: --rootfs \/nonexistent\/tapbox-root: no such file or directory/m],
    ];
    for (const [content, error] of cases) {
      const file = configFile(content);
      const marker = join(dir, `ran-${n}`);
      // The plain form, and a box: the same sentence, nothing runs.
      for (const form of [[], ['run', '-d', '--name', `bad-${n}`]]) {
        const r = await tapbox([...form, '--config', file, '--net', 'none', '--', 'touch', marker], { cwd: dir, env: boxEnv });
        expect(r.code, JSON.stringify(content)).toBe(2);
        expect(r.stderr, JSON.stringify(content)).toMatch(new RegExp(`^tapbox: ${file.replace(/[.]/g, '\\.')}: `));
        expect(r.stderr, JSON.stringify(content)).toMatch(error);
        expect(existsSync(marker)).toBe(false);
      }
    }
    // The same value given as a flag is not blamed on a file.
    const flag = await tapbox(['--config', configFile({ hostname: 'h' }), '--cpuset', '9-2', '--', 'true'], { cwd: dir });
    expect(flag.stderr).toMatch(/^tapbox: --cpuset takes/);
    const missing = await tapbox(['--config', join(dir, 'nope.json'), '--', 'true']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^tapbox: --config .*nope\.json: the file can't be read \(ENOENT\); give the path of a JSON config file\.$/m);
  });

  it('never picks a config up from the working directory on its own', async () => {
    const { dir: repo, cleanup: done } = userTempDir('tapbox-config-repo-');
    try {
      // What a cloned repository could carry to widen its own sandbox.
      for (const name of ['tapbox.json', 'config.json', '.tapbox.json', '.tapboxrc', 'tapbox.config.json']) {
        writeFileSync(join(repo, name), JSON.stringify({ net: 'host', 'expose-home': true, allow: ['*'] }), { mode: 0o644 });
      }
      const s = await printed([], repo);
      expect(s.net).toBeUndefined();
      expect(s['expose-home']).toBeUndefined();
      expect(s.allow).toEqual([]);
      const r = await tapbox(['--', 'sh', '-c', 'cat /proc/net/dev | grep -c :'], { cwd: repo });
      expect(r.stdout.trim()).toBe('1'); // only lo: no network from tapbox.json
    } finally {
      done();
    }
  });

  it('drives a run as the test user', async () => {
    const file = configFile({ net: 'none', hostname: 'from-config', 'same-uid': true });
    const r = await tapbox(['--config', file, '--', 'sh', '-c', 'hostname; id -u'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('from-config');
  });

  it('drives a detached box: its settings, and zbox\'s name names the box unless --name does', async () => {
    const file = configFile({ name: 'zbox-named', 'same-uid': true, net: 'none', memory_limit_mb: 64 });
    const started = await tapbox(['run', '-d', '--config', file, '--', 'sh', '-c', 'hostname; id -u; sleep 30'], { cwd: dir, env: boxEnv });
    expect(started.stderr).toBe('');
    expect(started.stdout).toBe('zbox-named\n');
    try {
      const inspected = JSON.parse((await tapbox(['inspect', 'zbox-named'], { env: boxEnv })).stdout) as { record: { options: unknown } };
      expect(inspected.record.options).toMatchObject({ limits: { memory: '64M' }, hostname: 'zbox-named' });
      let logs = '';
      for (let i = 0; i < 100 && !logs.includes('\n'); i++) logs = (await tapbox(['logs', 'zbox-named'], { env: boxEnv })).stdout;
      expect(logs.split('\n')[0]).toBe('zbox-named');
    } finally {
      await tapbox(['rm', '-f', 'zbox-named'], { env: boxEnv });
    }
    const named = await tapbox(['run', '-d', '--name', 'cli-named', '--config', file, '--', 'true'], { cwd: dir, env: boxEnv });
    expect(named.stdout).toBe('cli-named\n');
    await tapbox(['rm', '-f', 'cli-named'], { env: boxEnv });
  });

  it('runs zbox\'s example config: its root, its binary, its limits, its network and port forward', async () => {
    const { dir: root, cleanup: done } = userTempDir('tapbox-zbox-root-');
    try {
      // zbox's root is a directory holding the binary; here a fresh one instead of /tmp/zbox_root.
      const r0 = await tapbox(['--net', 'none', '-w', root, '--', 'sh', '-c', `mkdir -p ${root}/bin && cp /bin/busybox ${root}/bin/busybox`], { cwd: dir });
      expect(r0.code).toBe(0);
      const file = configFile({ ...ZBOX_EXAMPLE, root, port_forwards: [{ host: 18080 + (process.pid % 1000), sandbox: 80 }] });
      const r = await tapbox(['--config', file], { cwd: dir });
      expect(r.stdout + r.stderr).toMatch(/BusyBox v/);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/published tcp 127\.0\.0\.1:\d+ → sandbox port 80/);
      // Its root is zbox's root (only the busybox in /bin), its name the hostname.
      const inside = await tapbox(['--config', file, '--', '/bin/busybox', 'sh', '-c', 'hostname; /bin/busybox ls /bin'], { cwd: dir });
      expect(inside.stdout).toBe('zbox-sandbox\nbusybox\n');
    } finally {
      done();
    }
  });
});
