// Boxes (tapbox run -d, ps, exec, logs, stop, kill, rm, inspect), run as the unprivileged test user,
// with real daemons, real sandboxes and a real test host. Each test names its own box; the state and
// runtime directories are a scratch directory of the test user's (XDG_STATE_HOME, XDG_RUNTIME_DIR).
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTestUser, cliPath, repoRoot, tapbox, testIds, userTempDir, type RunResult } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';
import { ociLayout, tarOf } from '../helpers/images.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');

describe.runIf(canMakeTestHost)('boxes', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  let env: NodeJS.ProcessEnv;
  const box = (args: string[], timeoutMs?: number): Promise<RunResult> => tapbox(args, { env, cwd: scratch.dir, timeoutMs });
  const stateDir = () => join(scratch.dir, 'state', 'tapbox', 'boxes');
  const runtimeDir = () => join(scratch.dir, 'run', 'tapbox');

  beforeAll(async () => {
    host = new TestHost();
    await host.start('services.mjs', ['--tcp-echo', '7']);
    scratch = userTempDir('tapbox-boxes-');
    env = { ...process.env, XDG_STATE_HOME: join(scratch.dir, 'state'), XDG_RUNTIME_DIR: join(scratch.dir, 'run') };
  });
  afterAll(async () => {
    // Whatever a failed test left running.
    for (const name of existsSync(stateDir()) ? readdirSync(stateDir()) : []) await box(['rm', '-f', name]);
    host?.destroy();
    scratch?.cleanup();
  });

  /** One request on a box's control socket, from this process (root). */
  function rawRequest(socket: string, req: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const connection = createConnection(socket);
      let text = '';
      connection.on('data', (d) => (text += d));
      connection.on('end', () => resolve(JSON.parse(text)));
      connection.on('error', reject);
      connection.write(`${JSON.stringify(req)}\n`);
    });
  }

  async function inspect(name: string): Promise<{ state: string; record: { supervisorPid: number; launcherPid: number } | null; exit: { code: number } | null; live: { flows: number; denials: number } | null }> {
    const r = await box(['inspect', name]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  }

  /** Whether pid runs (a zombie waiting for a reaper, e.g. a daemon re-parented to PID 1, has ended). */
  function alive(pid: number): boolean {
    try {
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  }

  /** Nothing of box NAME is left: no state, no socket, no process. */
  function expectGone(name: string, pids: number[]): void {
    expect(existsSync(join(stateDir(), name))).toBe(false);
    expect(existsSync(join(runtimeDir(), name))).toBe(false);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
  }

  it('a detached box outlives the tapbox that started it; ps lists it; logs shows its output and logs -f follows it to its end', async () => {
    const started = await box(['run', '-d', '--name', 'follow', '-x', '--', 'sh', '-c', 'echo first; i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.2; done']);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toBe('follow\n');
    // `tapbox run -d` has exited (tapbox() resolved at its close); the box runs on.
    const ps = await box(['ps']);
    expect(ps.stdout).toMatch(/^NAME\s+STATE\s+UPTIME\s+COMMAND\s+NET\s+FLOWS\s+DENIED\s+MEMORY$/m);
    expect(ps.stdout).toMatch(/^follow\s+running\s+\d+s\s+sh -c echo first/m);
    const { record } = await inspect('follow');
    expect(alive(record!.supervisorPid)).toBe(true);

    const logs = await box(['logs', 'follow']);
    expect(logs.stdout.split('\n')[0]).toBe('first');
    const tail = await box(['logs', '--tail', '1', 'follow']);
    expect(tail.stdout).toMatch(/^line \d+\n$/);

    // -f prints what comes after, and ends by itself when the box stops.
    const following = box(['logs', '-f', 'follow'], 60_000);
    const seen = Number(/line (\d+)\n$/.exec(logs.stdout)![1]);
    for (let i = 0; i < 100 && Number(/line (\d+)\n$/.exec((await box(['logs', '--tail', '1', 'follow'])).stdout)?.[1]) < seen + 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await box(['stop', '-t', '1', 'follow'])).code).toBe(0);
    const followed = await following;
    expect(followed.code, followed.stderr).toBe(0);
    const numbers = [...followed.stdout.matchAll(/line (\d+)/g)].map((m) => Number(m[1]));
    expect(Math.max(...numbers)).toBeGreaterThan(seen);
    expect((await box(['ps'])).stdout).not.toMatch(/^follow/m);
    expect((await box(['ps', '-a'])).stdout).toMatch(/^follow\s+exited \(143\)/m);
    expect((await box(['rm', 'follow'])).code).toBe(0);
    expectGone('follow', [record!.supervisorPid, record!.launcherPid]);
  });

  it("exec into a running -x box sees its files and processes, has its seccomp and capabilities, can't reach what its policy denies, and is held to --pids", async () => {
    const started = await box(['run', '-d', '--name', 'ex', '-x', '--pids', '40', '--allow', `${host.ip4}:7`, '--', 'sh', '-c', 'echo box-secret > /tmp/box-file; exec sleep 1000']);
    expect(started.code, started.stderr).toBe(0);
    // The box's private /tmp (not the host's) and its PID namespace: its command is PID 2, under PID 1.
    const seen = await box(['exec', 'ex', '--', 'sh', '-c', 'cat /tmp/box-file; ps -o pid=,comm= -p 2']);
    expect(seen.code, seen.stderr).toBe(0);
    expect(seen.stdout).toMatch(/^box-secret\n\s*2 sleep\n$/);
    expect(existsSync('/tmp/box-file')).toBe(false);
    const status = await box(['exec', 'ex', '--', 'sh', '-c', 'grep -E "^(CapBnd|CapEff|NoNewPrivs|Seccomp):" /proc/self/status; grep -E "^(CapBnd|CapEff|NoNewPrivs|Seccomp):" /proc/2/status']);
    const lines = status.stdout.trim().split('\n');
    expect(lines).toHaveLength(8);
    expect(lines.slice(0, 4)).toEqual(lines.slice(4));
    expect(lines).toContain('NoNewPrivs:\t1');
    expect(lines).toContain('Seccomp:\t2');

    // The policy: the allowed port answers, another port of the same host is refused and logged as a
    // denial in the box's audit log, as is another address.
    const allowed = await box(['exec', 'ex', '--', process.execPath, probe, 'tcp-connect', host.ip4, '7']);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ ok: true });
    const denied = await box(['exec', 'ex', '--', process.execPath, probe, 'tcp-connect', host.ip4, '80']);
    expect(JSON.parse(denied.stdout)).toMatchObject({ error: 'ECONNREFUSED' });
    const audit = (await box(['logs', '--audit', 'ex'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as { event?: string; verdict?: string; port?: number; dst?: string });
    expect(audit.filter((l) => l.event === 'flow' && l.verdict === 'deny').map((l) => [l.dst, l.port])).toEqual([[host.ip4, 80]]);
    // inspect: the counts, and per destination as the --report JSON has them.
    const live = (await inspect('ex')).live as unknown as { flows: number; denials: number; egress: { destinations: unknown[]; totals: unknown } };
    expect(live).toMatchObject({ flows: 1, denials: 1 });
    expect(live.egress.destinations).toEqual([expect.objectContaining({ destination: host.ip4, verdict: 'mixed', connections: 1, denied: 1, lookups: 0 })]);
    expect(live.egress.totals).toMatchObject({ connections: 1, denied: 1, lookups: 0, deniedLookups: 0 });
    // A flow still open counts its bytes so far, not only once it ends.
    const echo = `const s = require('net').connect(7, ${JSON.stringify(host.ip4)}, () => s.write(Buffer.alloc(5000, 1))); let n = 0; s.on('data', (d) => { n += d.length; if (n === 5000) console.log('echoed'); });`;
    const holderArgv = asTestUser([process.execPath, cliPath, 'exec', 'ex', '--', process.execPath, '-e', echo]);
    const holder = spawn(holderArgv[0]!, holderArgv.slice(1), { env, cwd: scratch.dir, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout.on('data', (d: Buffer) => String(d).includes('echoed') && resolve()));
    const open = (await inspect('ex')).live as unknown as { egress: { destinations: unknown[]; totals: unknown } };
    expect(open.egress.destinations).toEqual([expect.objectContaining({ destination: host.ip4, connections: 2, bytesUp: 5000, bytesDown: 5000 })]);
    expect(open.egress.totals).toMatchObject({ connections: 2, bytesUp: 5000, bytesDown: 5000 });
    holder.kill('SIGTERM');
    await new Promise((resolve) => holder.on('close', resolve));

    // --pids 40 holds for exec'd processes too: 60 more can't all start.
    const bomb = await box(['exec', 'ex', '--', 'sh', '-c', 'for i in $(seq 60); do sleep 2 & done; wait']);
    expect(bomb.stderr).toMatch(/Cannot fork/);

    const { record } = await inspect('ex');
    const rm = await box(['rm', 'ex']);
    expect(rm.code).not.toBe(0);
    expect(rm.stderr).toContain('box ex is running; stop it first (tapbox stop ex) or remove it by force (tapbox rm -f ex).');
    expect((await box(['rm', '-f', 'ex'])).code).toBe(0);
    expectGone('ex', [record!.supervisorPid, record!.launcherPid]);
  });

  it('exec -i -t: an interactive shell in the box on a terminal of its own; -i alone pipes stdin', async () => {
    expect((await box(['run', '-d', '--name', 'term', '--', 'sleep', '1000'])).code).toBe(0);
    const piped = await tapbox(['exec', '-i', 'term', '--', 'sh', '-c', 'test -t 0 || cat'], { env, cwd: scratch.dir, input: 'typed\n' });
    expect(piped.stdout).toBe('typed\n');
    const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'pty-run.py'), process.execPath, cliPath, 'exec', '-i', '-t', 'term', '--', 'sh']);
    // A terminal of the box's own devpts: `tty` finds it there, sized to the caller's (24x80 here).
    const typed = ['test -t 0 && test -t 1 && echo tty-$((40+2)); tty; stty size; ps -o comm= -p 2\r', 'exit 3\r'];
    const out = await new Promise<string>((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { env: { ...env, PTY_INPUT: JSON.stringify(typed) }, cwd: scratch.dir, stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('close', () => resolve(text));
    });
    const { code, output } = JSON.parse(out) as { code: number; output: string };
    expect(code).toBe(3);
    expect(output).toMatch(/\r?\ntty-42\r*\n\/dev\/pts\/\d+\r*\n24 80\r*\nsleep\r*\n/);
    expect((await box(['rm', '-f', 'term'])).code).toBe(0);
  });

  it('exec passes SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to tapbox on to the command, and leaves nothing running', async () => {
    expect((await box(['run', '-d', '--name', 'sig', '--', 'sleep', '1000'])).code).toBe(0);
    for (const [signal, code] of [['INT', 11], ['TERM', 12], ['HUP', 13], ['QUIT', 14]] as const) {
      const script = `trap "echo got-${signal}; exit ${code}" ${signal}; echo ready; while :; do sleep 0.1; done`;
      const argv = asTestUser([process.execPath, cliPath, 'exec', 'sig', '--', 'sh', '-c', script]);
      const child = spawn(argv[0]!, argv.slice(1), { env, cwd: scratch.dir, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      const ready = new Promise<void>((resolve) => child.stdout.on('data', (d) => (out += d) && out.includes('ready') && resolve()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const closed = new Promise((resolve) => child.on('close', resolve));
      await ready;
      // The tapbox CLI itself (under runuser), as a shell would signal it: not the helper it started.
      const cli = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
        try {
          const args = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          return args[0] === process.execPath && args[1] === cliPath && args[2] === 'exec';
        } catch {
          return false;
        }
      });
      process.kill(Number(cli), `SIG${signal}`);
      expect(await exited, signal).toBe(code);
      await closed;
      expect(out).toBe(`ready\ngot-${signal}\n`);
    }
    // Only the box's own command is left in it.
    const ps = await box(['exec', 'sig', '--', 'ps', '-e', '-o', 'comm=']);
    expect(ps.stdout.trim().split('\n')).toEqual(['tapbox-launcher', 'sleep', 'ps']);
    expect((await box(['rm', '-f', 'sig'])).code).toBe(0);
  });

  it('stop sends SIGTERM, then SIGKILL after the grace period to a command that ignores it', async () => {
    const script = 'trap "echo got TERM" TERM; echo ready; while :; do sleep 0.1; done';
    expect((await box(['run', '-d', '--name', 'grace', '--', 'sh', '-c', script])).code).toBe(0);
    for (let i = 0; i < 100 && !(await box(['logs', 'grace'])).stdout.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await box(['stop', '-t', '1', 'grace'])).code).toBe(0);
    expect((await box(['logs', 'grace'])).stdout).toContain('got TERM');
    expect((await inspect('grace')).exit).toMatchObject({ code: 137 });
    expect((await box(['rm', 'grace'])).code).toBe(0);
  });

  it("another uid can't drive a box: its supervisor refuses root's connection (SO_PEERCRED)", async () => {
    expect((await box(['run', '-d', '--name', 'mine', '--', 'sleep', '1000'])).code).toBe(0);
    // This test runs as root: the 0700 directory does not stop root, the peer check does.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = createConnection(join(runtimeDir(), 'mine', 'control.sock'));
      let text = '';
      socket.on('data', (d) => (text += d));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write(`${JSON.stringify({ op: 'kill', signal: 'SIGKILL' })}\n`);
    });
    expect(JSON.parse(answer)).toEqual({ ok: false, code: 'EACCES', message: expect.stringMatching(/^this box belongs to uid \d+; uid 0 may not drive it\.$/) });
    expect((await inspect('mine')).state).toBe('running');
    // Root's own tapbox refuses the test user's directories outright.
    const asRoot = await new Promise<RunResult>((resolve) => {
      const child = spawn(process.execPath, [cliPath, 'ps'], { env });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code, signal) => resolve({ code, signal, stdout: '', stderr }));
    });
    expect(asRoot.code).not.toBe(0);
    expect(asRoot.stderr).toMatch(/is not a directory private to you/);
    expect((await box(['rm', '-f', 'mine'])).code).toBe(0);
  });

  it('policy: allow and deny (--cut) change a running box\'s egress at once, show lists the rules and the changes, each change is an audit event; a bad rule changes nothing', async () => {
    expect((await box(['run', '-d', '--name', 'pol', '--allow', `${host.ip4}:9`, '--', 'sleep', '1000'])).code).toBe(0);
    const connect = async () => JSON.parse((await box(['exec', 'pol', '--', process.execPath, probe, 'tcp-connect', host.ip4, '7'])).stdout) as { ok?: boolean; error?: string };
    expect(await connect()).toMatchObject({ error: 'ECONNREFUSED' });

    const allowed = await box(['policy', 'pol', 'allow', `${host.ip4}:7`, 'extra.test:443']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toBe(`allow ${host.ip4}:7\nallow extra.test:443\n`);
    expect(await connect()).toMatchObject({ ok: true });

    // A bad rule among good ones: one sentence, exit 2, and none of them applied.
    const bad = await box(['policy', 'pol', 'allow', 'other.test:443', '[2001:db8::1:443']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^tapbox: tapbox policy: bad rule "\[2001:db8::1:443": [^\n]+\.\n$/);
    const denyAsAllow = await box(['policy', 'pol', 'allow', '!other.test']);
    expect(denyAsAllow.code).toBe(2);
    expect(denyAsAllow.stderr).toBe('tapbox: "!other.test" is a deny rule; give it to deny instead (`tapbox policy pol deny other.test`).\n');
    expect((await box(['policy', 'pol', 'show'])).stdout).not.toContain('other.test');

    // deny --cut resets the open flow the new rule covers; new ones are refused.
    const holding = box(['exec', 'pol', '--', process.execPath, probe, 'tcp-read', host.ip4, '7'], 60_000);
    for (let i = 0; i < 100 && (await inspect('pol')).live!.flows < 2; i++) await new Promise((r) => setTimeout(r, 100));
    const denied = await box(['policy', 'pol', 'deny', `${host.ip4}:7`, '--cut']);
    expect(denied.code, denied.stderr).toBe(0);
    expect(denied.stdout).toBe(`deny !${host.ip4}:7, replacing ${host.ip4}:7; 1 open flow cut\n`);
    expect(JSON.parse((await holding).stdout)).toMatchObject({ error: 'ECONNRESET' });
    expect(await connect()).toMatchObject({ error: 'ECONNREFUSED' });

    const show = await box(['policy', 'pol', 'show']);
    expect(show.code).toBe(0);
    const lines = show.stdout.split('\n');
    expect(lines.slice(0, 4)).toEqual([`${host.ip4}:9`, 'extra.test:443', `!${host.ip4}:7`, '# changed since the box started:']);
    expect(lines.slice(4, 7).map((l) => l.replace(/^# \S+ /, ''))).toEqual([`allow ${host.ip4}:7`, 'allow extra.test:443', `deny !${host.ip4}:7, replacing ${host.ip4}:7; 1 open flow cut`]);
    const events = (await box(['logs', '--audit', 'pol'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as { event?: string }).filter((e) => e.event === 'policy');
    expect(events).toEqual([
      expect.objectContaining({ action: 'allow', rule: `${host.ip4}:7`, origin: 'tapbox policy', replaced: [], reset: 0 }),
      expect.objectContaining({ action: 'allow', rule: 'extra.test:443', origin: 'tapbox policy' }),
      expect.objectContaining({ action: 'deny', rule: `!${host.ip4}:7`, origin: 'tapbox policy', replaced: [`${host.ip4}:7`], reset: 1 }),
    ]);
    expect((await box(['policy', 'pol', 'frob'])).stderr).toBe('tapbox: tapbox policy has no action "frob"; use allow, deny or show.\n');
    // The library: the same through box.allow / deny / policy.
    const script = `
      import { boxes } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'boxes', 'index.js'))};
      const box = boxes.get('pol');
      const allowed = await box.allow(['lib.test:443']);
      const denied = await box.deny('lib.test:443', { cut: true });
      const bad = await box.allow('lib.test:99999').catch((e) => e.code);
      const { rules, changes } = await box.policy();
      console.log(JSON.stringify({ allowed: allowed.map((c) => c.rule), denied: denied.map((c) => [c.rule, c.replaced]), bad, rules, changes: changes.length }));
    `;
    const lib = await new Promise<string>((resolve) => {
      const argv = asTestUser([process.execPath, '--input-type=module', '-e', script]);
      const child = spawn(argv[0]!, argv.slice(1), { env, cwd: scratch.dir, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('close', () => resolve(out));
    });
    expect(JSON.parse(lib)).toEqual({ allowed: ['lib.test:443'], denied: [['!lib.test:443', ['lib.test:443']]], bad: 'EPOLICY', rules: [`${host.ip4}:9`, 'extra.test:443', `!${host.ip4}:7`, '!lib.test:443'], changes: 5 });
    expect((await box(['rm', '-f', 'pol'])).code).toBe(0);
  }, 180_000); // some twenty tapbox commands: minutes on a loaded machine

  it("policy can't be widened by another uid (SO_PEERCRED) nor from inside a box that sees its socket (user namespace check)", async () => {
    // -M shows the runtime directory in the box, as an XDG_RUNTIME_DIR under a directory the sandbox
    // shows would (by default it is under /run or /tmp, which every mode replaces: checked below).
    expect((await box(['run', '-d', '--name', 'widen', '-M', runtimeDir(), '--allow', `${host.ip4}:9`, '--', 'sleep', '1000'])).code).toBe(0);
    const socket = join(runtimeDir(), 'widen', 'control.sock');
    const asRoot = await rawRequest(socket, { op: 'allow', rules: ['0.0.0.0/0'] });
    expect(asRoot).toMatchObject({ ok: false, code: 'EACCES', message: expect.stringMatching(/^this box belongs to uid \d+; uid 0 may not drive it\.$/) });
    // From inside the box: same uid outside (root inside maps to the test user), the socket in sight.
    const fromInside = async (req: object) => {
      const client = `const s = require('net').createConnection(${JSON.stringify(socket)}); let t = ''; s.on('connect', () => s.write(${JSON.stringify(JSON.stringify(req))} + '\\n')); s.on('data', (d) => (t += d)); s.on('end', () => console.log(t.trim())); s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));`;
      return JSON.parse((await box(['exec', 'widen', '--', process.execPath, '-e', client])).stdout) as unknown;
    };
    const refused = { ok: false, code: 'EACCES', message: 'a process inside a sandbox may not drive a box; run tapbox from the host.' };
    expect(await fromInside({ op: 'allow', rules: ['0.0.0.0/0'] })).toEqual(refused);
    expect(await fromInside({ op: 'stop', timeout: 0 })).toEqual(refused);
    expect((await inspect('widen')).state).toBe('running');
    expect((await box(['policy', 'widen', 'show'])).stdout).toBe(`${host.ip4}:9\n`);
    expect((await box(['rm', '-f', 'widen'])).code).toBe(0);

    // Here the box's working directory (bound in every mode) holds the runtime directory, as -M would.
    // From a working directory that does not, neither a default (read-only) box nor an -x box (which
    // shows the cwd's parent too) sees it: it is under /tmp here, and /run/user/UID, its usual place,
    // is hidden the same way (both modes show an empty /run).
    const deeper = join(scratch.dir, 'a', 'b');
    mkdirSync(deeper, { recursive: true });
    chownSync(join(scratch.dir, 'a'), testIds.uid, testIds.gid);
    chownSync(deeper, testIds.uid, testIds.gid);
    for (const mode of [[], ['-x']]) {
      const name = `see${mode.join('')}`;
      expect((await tapbox(['run', '-d', '--name', name, ...mode, '--', 'sleep', '1000'], { env, cwd: deeper })).code).toBe(0);
      const seen = await box(['exec', name, '--', 'sh', '-c', `ls ${runtimeDir()} 2>&1; ls /run`]);
      expect(seen.stdout, mode.join('')).toMatch(/^ls: [^\n]*No such file or directory\n$/);
      expect((await box(['rm', '-f', name])).code).toBe(0);
    }
  }, 180_000);

  it('a box whose supervisor was SIGKILLed shows as dead in ps, its sandbox gone with it, and rm cleans it up', async () => {
    // Its throw-away layers on disk (--store, a path relative to where it started).
    const store = join(scratch.dir, 'killed-store');
    mkdirSync(store);
    chownSync(store, testIds.uid, testIds.gid);
    expect((await box(['run', '-d', '--name', 'killed', '-x', '--store', 'killed-store', '--', 'sleep', '1000'])).code).toBe(0);
    expect(readdirSync(store)).toEqual([expect.stringMatching(/^\.tapbox-run-/)]);
    const { record } = await inspect('killed');
    process.kill(record!.supervisorPid, 'SIGKILL');
    // The launcher dies with its supervisor (PR_SET_PDEATHSIG), and the sandbox with the launcher.
    for (let i = 0; i < 100 && (alive(record!.supervisorPid) || alive(record!.launcherPid)); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await box(['ps'])).stdout).toMatch(/^killed\s+dead\s/m);
    expect(readdirSync(store)).toHaveLength(1); // left by the killed launcher
    expect((await box(['rm', 'killed'])).code).toBe(0);
    expectGone('killed', [record!.supervisorPid, record!.launcherPid]);
    expect(readdirSync(store)).toEqual([]);
  });

  it('--rm: a box that ends leaves nothing', async () => {
    expect((await box(['run', '-d', '--rm', '--name', 'brief', '--', 'sh', '-c', 'sleep 0.5; echo done'])).code).toBe(0);
    expect(existsSync(join(stateDir(), 'brief'))).toBe(true);
    for (let i = 0; i < 100 && existsSync(join(stateDir(), 'brief')); i++) await new Promise((r) => setTimeout(r, 100));
    expectGone('brief', []);
    expect((await box(['ps', '-a'])).stdout).not.toMatch(/^brief/m);
  });

  it('refuses state directories that are not private to the user: owned by another, open to others, a symlink', async () => {
    const attempts: [string, () => void][] = [
      ['root-owned', () => mkdirSync(join(scratch.dir, 'evil', 'root-owned', 'tapbox'), { recursive: true, mode: 0o777 })],
      ['open', () => {
        mkdirSync(join(scratch.dir, 'evil', 'open', 'tapbox'), { recursive: true });
        chmodSync(join(scratch.dir, 'evil', 'open', 'tapbox'), 0o755);
        chownSync(join(scratch.dir, 'evil', 'open', 'tapbox'), testIds.uid, testIds.gid);
      }],
      ['symlink', () => {
        // To a directory that would pass: the user's own, 0700.
        const target = join(scratch.dir, 'evil', 'target');
        mkdirSync(target, { recursive: true, mode: 0o700 });
        chownSync(target, testIds.uid, testIds.gid);
        mkdirSync(join(scratch.dir, 'evil', 'symlink'), { recursive: true });
        symlinkSync(target, join(scratch.dir, 'evil', 'symlink', 'tapbox'));
      }],
    ];
    for (const [kind, make] of attempts) {
      make();
      const r = await tapbox(['run', '-d', '--name', `evil-${kind}`, '--', 'sleep', '1000'], { env: { ...env, XDG_RUNTIME_DIR: join(scratch.dir, 'evil', kind) }, cwd: scratch.dir });
      expect(r.code, kind).toBe(2);
      expect(r.stderr, kind).toContain(`${join(scratch.dir, 'evil', kind, 'tapbox')} is not a directory private to you`);
      expect(existsSync(join(stateDir(), `evil-${kind}`))).toBe(false);
    }
    // Without XDG_RUNTIME_DIR: /tmp/tapbox-UID, which someone else made first.
    const fallback = `/tmp/tapbox-${testIds.uid}`;
    const aside = existsSync(fallback) ? `${fallback}.aside-${process.pid}` : null;
    if (aside) renameSync(fallback, aside);
    mkdirSync(fallback, { mode: 0o700 });
    try {
      const { XDG_RUNTIME_DIR: _, ...noRuntime } = env;
      const r = await tapbox(['run', '-d', '--name', 'evil-tmp', '--', 'sleep', '1000'], { env: noRuntime, cwd: scratch.dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${fallback} is not a directory private to you (owner 0, mode 700)`);
    } finally {
      rmSync(fallback, { recursive: true, force: true });
      if (aside) renameSync(aside, fallback);
    }
  });

  /** An OCI layout of busybox and an /etc/motd saying motd, owned by the test user; its path. */
  async function busyboxLayout(motd: string): Promise<string> {
    const layout = join(scratch.dir, `layout-${motd}`);
    ociLayout(layout, [await tarOf([{ name: 'bin/busybox', data: readFileSync('/bin/busybox'), mode: 0o755 }, { name: 'etc/motd', data: `${motd}\n` }])], { gzip: true });
    execFileSync('chown', ['-R', `${testIds.uid}:${testIds.gid}`, layout]);
    return layout;
  }
  const inUse = (image: string) => `tapbox: the image ${image} is the root of a sandbox that is running; stop or remove that box first (tapbox ps lists them), or let the run end.\n`;

  it("image rm refuses while a running box runs on the image's root, and removes it once the box stopped", async () => {
    const layout = await busyboxLayout('boxroot');
    const withStore = (args: string[]) => tapbox(args, { env: { ...env, XDG_DATA_HOME: join(scratch.dir, 'data') }, cwd: scratch.dir });
    expect((await withStore(['image', 'import', layout, 'boxroot'])).code).toBe(0);
    const started = await withStore(['run', '-d', '--name', 'onimage', '--image', 'boxroot', '--', '/bin/busybox', 'sleep', '1000']);
    expect(started.code, started.stderr).toBe(0);
    const refused = await withStore(['image', 'rm', 'boxroot']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(inUse('boxroot'));
    expect((await withStore(['image', 'ls'])).stdout).toMatch(/^boxroot /m);
    expect((await withStore(['exec', 'onimage', '--', '/bin/busybox', 'true'])).code).toBe(0);
    expect((await withStore(['stop', '-t', '1', 'onimage'])).code).toBe(0);
    const removed = await withStore(['image', 'rm', 'boxroot']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toBe('boxroot\n');
    expect(readdirSync(join(scratch.dir, 'data', 'tapbox', 'rootfs'))).toEqual([]);
    expect((await box(['rm', 'onimage'])).code).toBe(0);
  });

  it('an image imported again while a box runs on it: the box keeps its files, a new run gets the new ones, the old root goes with the box', async () => {
    const data = join(scratch.dir, 'data-again');
    const withStore = (args: string[]) => tapbox(args, { env: { ...env, XDG_DATA_HOME: data }, cwd: scratch.dir });
    const rootfs = () => readdirSync(join(data, 'tapbox', 'rootfs')).sort();
    expect((await withStore(['image', 'import', await busyboxLayout('old'), 'again'])).code).toBe(0);
    const [old] = rootfs();
    const started = await withStore(['run', '-d', '--name', 'again', '--image', 'again', '--', '/bin/busybox', 'sleep', '1000']);
    expect(started.code, started.stderr).toBe(0);
    const reimported = await withStore(['image', 'import', await busyboxLayout('new'), 'again']);
    expect(reimported.code, reimported.stderr).toBe(0);
    expect(rootfs()).toHaveLength(2);
    const fresh = rootfs().find((id) => id !== old);
    const inBox = await withStore(['exec', 'again', '--', '/bin/busybox', 'cat', '/etc/motd']);
    expect(inBox.stdout, inBox.stderr).toBe('old\n');
    const oneShot = await withStore(['--image', 'again', '--', '/bin/busybox', 'cat', '/etc/motd']);
    expect(oneShot.stdout, oneShot.stderr).toBe('new\n');
    expect((await withStore(['rm', '-f', 'again'])).code).toBe(0);
    expect(rootfs()).toEqual([fresh]);
    expect(readdirSync(join(data, 'tapbox', 'tmp'))).toEqual([]);
  });

  it("the library's images.remove() is refused while a box runs on the image; a SIGKILLed supervisor leaves no lease behind", async () => {
    const data = join(scratch.dir, 'data-lease');
    const withStore = (args: string[]) => tapbox(args, { env: { ...env, XDG_DATA_HOME: data }, cwd: scratch.dir });
    expect((await withStore(['image', 'import', await busyboxLayout('leased'), 'leased'])).code).toBe(0);
    const started = await withStore(['run', '-d', '--name', 'leased', '--image', 'leased', '--', '/bin/busybox', 'sleep', '1000']);
    expect(started.code, started.stderr).toBe(0);
    const script = `
      import { images } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'images', 'index.js'))};
      try {
        images.remove('leased');
        console.log('removed');
      } catch (e) {
        console.log(e.message);
      }`;
    const argv = asTestUser([process.execPath, '--input-type=module', '-e', script]);
    const lib = execFileSync(argv[0]!, argv.slice(1), { env: { ...env, XDG_DATA_HOME: data }, cwd: scratch.dir, encoding: 'utf8' });
    expect(`tapbox: ${lib}`).toBe(inUse('leased'));

    const { record } = await inspect('leased');
    process.kill(record!.supervisorPid, 'SIGKILL');
    for (let i = 0; i < 100 && alive(record!.supervisorPid); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await inspect('leased')).state).toBe('dead');
    const removed = await withStore(['image', 'rm', 'leased']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(readdirSync(join(data, 'tapbox', 'rootfs'))).toEqual([]);
    expect((await box(['rm', 'leased'])).code).toBe(0);
  });

  it('names are checked, and a name is taken once', async () => {
    const bad = await box(['run', '-d', '--name', '../x', '--', 'true']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"../x" can\'t name a box');
    expect((await box(['run', '-d', '--name', 'twice', '--', 'sleep', '1000'])).code).toBe(0);
    const again = await box(['run', '-d', '--name', 'twice', '--', 'sleep', '1000']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('a box named twice exists; remove it (tapbox rm twice) or choose another --name.');
    expect((await box(['rm', '-f', 'twice'])).code).toBe(0);
    const nobox = await box(['logs', 'nosuchbox']);
    expect(nobox.stderr).toContain('there is no box named nosuchbox');
  });

  it('the library: boxes.run, get, list, exec (with a terminal too), logs, stop, remove', async () => {
    const script = `
      import { boxes } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'boxes', 'index.js'))};
      import { ReadStream } from 'node:tty';
      const box = await boxes.run(['sh', '-c', 'echo from-box; exec sleep 1000'], { name: 'lib', net: 'none' });
      const listed = (await boxes.list()).map((b) => [b.name, b.state]);
      const child = await boxes.get('lib').exec(['cat', '/proc/2/comm']);
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      const code = await new Promise((r) => child.on('close', r));
      // stdout on a terminal of the box's own: its master is ours to read until every slave closed (EIO).
      const withTty = await boxes.get('lib').exec(['sh', '-c', 'tty <&1; test -t 0 || echo stdin-not-a-tty'], { tty: [false, true, false] });
      let onTty = '';
      const master = new ReadStream(withTty.terminal);
      master.on('data', (d) => (onTty += d));
      await new Promise((r) => { master.on('error', r); master.on('end', r); });
      master.destroy();
      for (let i = 0; i < 50 && !box.logs().includes('from-box'); i++) await new Promise((r) => setTimeout(r, 50));
      const logs = box.logs();
      const exit = await box.stop({ timeout: 1 });
      await box.remove();
      const after = (await boxes.list()).filter((b) => b.name === 'lib');
      console.log(JSON.stringify({ listed: listed.filter(([name]) => name === 'lib'), exec: [code, out], onTty, logs, exit: exit.code, after: after.length }));
    `;
    const argv = asTestUser([process.execPath, '--input-type=module', '-e', script]);
    const result = await new Promise<string>((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { env, cwd: scratch.dir, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${out}`))));
    });
    expect(JSON.parse(result)).toEqual({ listed: [['lib', 'running']], exec: [0, 'sleep\n'], onTty: expect.stringMatching(/^\/dev\/pts\/\d+\r?\nstdin-not-a-tty\r?\n$/), logs: 'from-box\n', exit: 143, after: 0 });
  });
});
