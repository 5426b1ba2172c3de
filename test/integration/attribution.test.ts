// Attribution as a user meets it: real programs in a sandbox connect to a test host, and the audit
// (events in the JSON log, --report, --learn, the summary table) names the process that did it, and the
// package whose script it was.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, tapbox, testIds, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

interface ByField {
  pid: number;
  exe: string;
  argv: string[];
  cwd: string;
  parents: { pid: number; exe: string; argv: string[] }[];
  package: { manager: string; name: string; script: string } | null;
  label: string;
}
interface LogLine {
  event?: string;
  proto?: string;
  name?: string | null;
  dst?: string;
  port?: number;
  srcPort?: number;
  by?: ByField | null;
}

const logLines = (stderr: string): LogLine[] =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);

describe.runIf(canMakeTestHost)('attribution of flows and lookups to sandbox processes', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  let base: string[];

  beforeAll(async () => {
    scratch = userTempDir('tapbox-attr-');
    host = new TestHost();
    const zoneFile = join(scratch.dir, 'zone.json');
    writeFileSync(zoneFile, JSON.stringify({ 'home.attr.test': { A: [host.ip4] } }));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--tcp-echo', '7', '--http', '8080']);
    base = ['--dns-upstream', host.ip4, '--audit', '--log-format', 'json'];
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  /** A directory in the scratch space, owned by the test user. */
  const userDir = (name: string): string => {
    const dir = join(scratch.dir, name);
    mkdirSync(dir, { recursive: true });
    if (isRoot) chownSync(dir, testIds.uid, testIds.gid);
    return dir;
  };
  const userFile = (path: string, text: string): void => {
    writeFileSync(path, text);
    if (isRoot) chownSync(path, testIds.uid, testIds.gid);
  };

  it('names the npm package and lifecycle script that phoned home, in the log, the report, --learn and the summary', async () => {
    // A local package (a tarball the test makes; no registry) whose postinstall looks up a name and connects.
    const pkgSrc = userDir('phonehome-src/package');
    userFile(join(pkgSrc, 'package.json'), JSON.stringify({ name: 'phonehome', version: '1.0.0', scripts: { postinstall: 'node phone.js' } }));
    userFile(
      join(pkgSrc, 'phone.js'),
      "const s = require('net').connect(7, 'home.attr.test', () => s.end('hi\\n'));\ns.on('data', () => {}); s.on('close', () => console.log('phoned home'));\n",
    );
    // Inside the project: the sandbox sees the working directory, not the rest of the host's /tmp.
    const project = userDir('project');
    const tarball = join(project, 'phonehome-1.0.0.tgz');
    expect(spawnSync('tar', ['czf', tarball, '-C', join(scratch.dir, 'phonehome-src'), 'package']).status).toBe(0);
    if (isRoot) chownSync(tarball, testIds.uid, testIds.gid);
    userFile(join(project, 'package.json'), JSON.stringify({ name: 'project', version: '1.0.0', dependencies: { phonehome: 'file:phonehome-1.0.0.tgz' } }));
    const report = join(scratch.dir, 'npm-report.json');
    const learned = join(scratch.dir, 'npm.allow');

    const r = await tapbox(
      [...base, '--report', report, '--learn', learned, '--', 'sh', '-c', 'npm_config_cache="$PWD/.npm-cache" npm install --offline --no-audit --no-fund --foreground-scripts'],
      { cwd: project, timeoutMs: 120_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/phoned home/);

    const lines = logLines(r.stderr);
    const flow = lines.find((l) => l.event === 'flow' && l.port === 7);
    expect(flow?.by).toMatchObject({ package: { manager: 'npm', name: 'phonehome', script: 'postinstall' }, label: 'node (phonehome postinstall)', argv: ['node', 'phone.js'] });
    // The chain of parents goes up to (not including) the sandbox's PID 1: sh (the script), npm, sh -c.
    expect(flow!.by!.parents.length).toBeGreaterThanOrEqual(2);
    expect(flow!.by!.parents.some((p) => p.argv.join(' ').includes('npm'))).toBe(true);
    expect(flow!.by!.parents.every((p) => p.pid > 1)).toBe(true);
    expect(flow!.by!.cwd).toMatch(/node_modules\/phonehome$/);
    const lookup = lines.find((l) => l.event === 'dns' && l.name === 'home.attr.test');
    expect(lookup?.by?.label).toBe('node (phonehome postinstall)');

    const summary = JSON.parse(readFileSync(report, 'utf8')) as { destinations: { destination: string; by?: string[] }[] };
    expect(summary.destinations.find((d) => d.destination === 'home.attr.test')?.by).toEqual(['node (phonehome postinstall)']);
    expect(readFileSync(learned, 'utf8')).toMatch(/^tcp:home\.attr\.test:7 +# 1 connection; by node \(phonehome postinstall\)$/m);
    expect(r.stderr).toMatch(/home\.attr\.test .*node \(phonehome postinstall\)/);
  });

  it('tells apart a Python and a shell child of a build script', async () => {
    const dir = userDir('build');
    userFile(
      join(dir, 'build.sh'),
      [
        '#!/bin/sh',
        `python3 -c 'import socket; s = socket.create_connection(("${host.ip4}", 7)); s.sendall(b"x"); s.recv(1)'`,
        `bash -c 'exec 3<>/dev/tcp/${host.ip4}/8080; printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3 >/dev/null'`,
        '',
      ].join('\n'),
    );
    const r = await tapbox([...base, '--', 'sh', 'build.sh'], { cwd: dir, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const flows = logLines(r.stderr).filter((l) => l.event === 'flow');
    const python = flows.find((l) => l.port === 7)?.by;
    const shell = flows.find((l) => l.port === 8080)?.by;
    expect(python?.exe).toMatch(/python3/);
    expect(python?.argv.slice(0, 2)).toEqual(['python3', '-c']);
    expect(python?.parents[0]?.argv).toEqual(['sh', 'build.sh']);
    expect(shell?.exe).toMatch(/bash$/);
    expect(shell?.parents[0]?.argv).toEqual(['sh', 'build.sh']);
    expect(shell?.pid).not.toBe(python?.pid);
  });

  it('names the pip build whose setup.py connects', async () => {
    userDir('pip');
    const project = userDir('pip/phonehome');
    userFile(join(project, 'setup.py'), `import socket\nsocket.create_connection(("${host.ip4}", 7)).close()\nfrom setuptools import setup\nsetup(name="phonehome", version="1.0")\n`);
    const r = await tapbox([...base, '--', 'sh', '-c', 'HOME="$PWD" pip3 install --no-index --no-build-isolation --target "$PWD/out" ./phonehome'], { cwd: join(scratch.dir, 'pip'), timeoutMs: 120_000 });
    const flow = logLines(r.stderr).find((l) => l.event === 'flow' && l.port === 7);
    expect(flow?.by?.package, r.stderr).toEqual({ manager: 'pip', name: 'phonehome', script: 'build' });
    expect(flow?.by?.label).toMatch(/^python3[.\d]* \(pip build of phonehome\)$/);
    expect(flow?.by?.parents.some((p) => p.argv.some((a) => /pip3?$/.test(a)))).toBe(true);
  });

  it('attributes each of two processes connecting to the same destination at once to itself', async () => {
    // Each connects, prints its own pid and local port, waits for the other to be connected too, then ends.
    const client = `import os, socket, sys, time
s = socket.create_connection(("${host.ip4}", 7))
print(os.getpid(), s.getsockname()[1], flush=True)
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]): time.sleep(0.05)
`;
    const dir = userDir('two');
    userFile(join(dir, 'client.py'), client);
    const r = await tapbox([...base, '--', 'sh', '-c', 'python3 client.py a b & python3 client.py b a & wait'], { cwd: dir, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const printed = r.stdout.trim().split('\n').map((l) => l.split(' ').map(Number) as [number, number]);
    expect(printed).toHaveLength(2);
    const flows = logLines(r.stderr).filter((l) => l.event === 'flow' && l.port === 7);
    expect(flows).toHaveLength(2);
    for (const [pid, srcPort] of printed) {
      expect(flows.find((f) => f.srcPort === srcPort)?.by?.pid).toBe(pid);
    }
  });

  it('reports a process gone before it was read as unknown, never as another one', async () => {
    // The child opens the connection without waiting for it and exits at once; its parent stays.
    const child = `import os, socket; s = socket.socket(); s.setblocking(False); s.connect_ex(("${host.ip4}", 7)); print(os.getpid(), flush=True); os._exit(0)`;
    const r = await tapbox([...base, '--', 'sh', '-c', `python3 -c '${child}'; sleep 1; echo parent $$`], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const childPid = Number(r.stdout.split('\n')[0]);
    const flow = logLines(r.stderr).find((l) => l.event === 'flow' && l.port === 7);
    expect(flow).toBeDefined();
    // Either it was read while it lived, or it is unknown: never the parent that outlived it.
    if (flow!.by !== null) expect(flow!.by!.pid).toBe(childPid);
    expect(flow!.by === null || flow!.by!.argv[0] === 'python3').toBe(true);
  });

  it('names only the denied flows when enforcing, unless told --attribution all', async () => {
    const script = `import socket\nsocket.create_connection(("${host.ip4}", 7)).close()\ntry:\n    socket.create_connection(("${host.ip4}", 8080))\nexcept OSError:\n    pass`;
    const run = (flags: string[]) => tapbox(['--dns-upstream', host.ip4, '--log-format', 'json', '--log-level', 'debug', '--allow', `${host.ip4}:7`, ...flags, '--', 'python3', '-c', script], { timeoutMs: 60_000 });
    const flowsOf = (stderr: string) => logLines(stderr).filter((l) => l.event === 'flow');
    const enforcing = flowsOf((await run([])).stderr);
    expect(enforcing.find((f) => f.port === 7)).not.toHaveProperty('by');
    expect(enforcing.find((f) => f.port === 8080)?.by?.argv.slice(0, 2)).toEqual(['python3', '-c']);
    const all = flowsOf((await run(['--attribution', 'all'])).stderr);
    expect(all.find((f) => f.port === 7)?.by?.argv.slice(0, 2)).toEqual(['python3', '-c']);
  });

  it('finds each socket by its exact tuple (sock_diag), not by reading the socket tables', async () => {
    const script = `import socket\nfor i in range(5): socket.create_connection(("${host.ip4}", 7)).close()`;
    const r = await tapbox([...base, '--log-level', 'debug', '--', 'python3', '-c', script], { timeoutMs: 60_000 });
    const stats = logLines(r.stderr).find((l) => 'attribution' in l) as unknown as { attribution: { lookups: number; exact: number; cached: number; unknown: number } };
    expect(stats.attribution.lookups).toBeGreaterThanOrEqual(5);
    expect(stats.attribution.exact + stats.attribution.cached).toBe(stats.attribution.lookups);
  });

  it('leaves attribution out with --no-attribution', async () => {
    const r = await tapbox([...base, '--no-attribution', '--', 'python3', '-c', `import socket; socket.create_connection(("${host.ip4}", 7)).close()`], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const flow = logLines(r.stderr).find((l) => l.event === 'flow' && l.port === 7);
    expect(flow).toBeDefined();
    expect(flow).not.toHaveProperty('by');
  });
});
