// Filesystem modes and process hardening, black-box through the CLI, run as the unprivileged user:
// what each mode shows, what is writable, which writes reach the host and which vanish; the private
// /tmp and /run; clean-up that can't be steered by planted symlinks; seccomp, capabilities, limits,
// the timeout; and every mistake a user can make, refused with one sentence and exit 2.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { asTestUser, cliPath, isRoot, repoRoot, tapbox, testIds, userTempDir } from '../helpers/tapbox.js';
import { wholeSandboxLimits } from '../helpers/limits.js';

const HOME = (spawnSync('getent', ['passwd', String(testIds.uid)], { encoding: 'utf8' }).stdout.split(':')[5] ?? '').trim();
const tag = `${process.pid}-${Date.now()}`;
const cleanups: (() => void)[] = [];

afterAll(() => {
  for (const cleanup of cleanups.reverse()) {
    try {
      cleanup();
    } catch (e) {
      console.error(`cleanup failed: ${(e as Error).message}`);
    }
  }
});

/** A scratch directory owned by the test user, removed after the file's tests. */
function scratch(): string {
  const { dir, cleanup } = userTempDir('tapbox-fs-');
  cleanups.push(cleanup);
  return dir;
}

/** Creates directories (and optionally a file) owned by the test user. */
function userPath(path: string, content?: string, mode?: number): string {
  const missing: string[] = [];
  for (let d = content === undefined ? path : dirname(path); !existsSync(d); d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    mkdirSync(d);
    if (isRoot) chownSync(d, testIds.uid, testIds.gid);
  }
  if (content !== undefined) {
    writeFileSync(path, content);
    if (isRoot) chownSync(path, testIds.uid, testIds.gid);
  }
  if (mode !== undefined) chmodSync(path, mode);
  return path;
}

const sh = (script: string) => ['sh', '-c', script];

describe('read-only mode (no mode flag)', () => {
  it('shows the host read-only, keeps writes in the working directory, refuses $HOME and system paths', async () => {
    const dir = scratch();
    const homeFile = userPath(join(HOME, `.tapbox-fs-visible-${tag}`), 'host home file\n');
    cleanups.push(() => rmSync(homeFile, { force: true }));
    const r = await tapbox(['--', ...sh(`cat ${homeFile}; echo kept > ./f && echo cwd-ok; touch $HOME/f-${tag}; touch /usr/f-${tag}; touch /etc/f-${tag}; pwd`)], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`host home file\ncwd-ok\n${dir}\n`);
    expect(r.stderr).toContain(`cannot touch '${HOME}/f-${tag}': Read-only file system`);
    expect(r.stderr).toContain(`cannot touch '/usr/f-${tag}': Read-only file system`);
    expect(r.stderr).toContain(`cannot touch '/etc/f-${tag}': Read-only file system`);
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('kept\n');
    expect(existsSync(join(HOME, `f-${tag}`))).toBe(false);
  });

  it('passes the exit code through', async () => {
    expect((await tapbox(['--', ...sh('exit 5')], { cwd: scratch() })).code).toBe(5);
  });

  // Making the host-side submount takes root (CI runs the suite as root; a user run skips this one).
  it.runIf(isRoot)('keeps a writable submount of the read-only tree read-only (a tmpfs under the root, under a -M path); /dev/shm is the sandbox\'s own', async () => {
    const ro = userPath(`/var/tmp/tapbox-ro-${tag}`);
    const sub = userPath(join(ro, 'sub'));
    cleanups.push(() => rmSync(ro, { recursive: true, force: true }));
    const wd = scratch();
    execFileSync('mount', ['-t', 'tmpfs', '-o', `mode=0777,uid=${testIds.uid}`, 'tapbox-test', sub]);
    // Unmounted at once: a mount under /var makes -x fall back to a read-only /var (never a more open one).
    try {
      // The host's /dev/shm and the tmpfs are writable by the user outside.
      const outsideArgv = asTestUser(['sh', '-c', `touch /dev/shm/tapbox-fs-${tag} && touch ${sub}/outside`]);
      const outside = spawnSync(outsideArgv[0]!, outsideArgv.slice(1));
      rmSync(`/dev/shm/tapbox-fs-${tag}`, { force: true });
      expect(outside.status).toBe(0);
      // The minimal /dev has a private /dev/shm: a write there never reaches the host's.
      const readOnly = await tapbox(['--', ...sh(`touch /dev/shm/x-${tag} && echo shm-ok; touch ${sub}/inside`)], { cwd: wd });
      expect(readOnly.stdout).toBe('shm-ok\n');
      expect(existsSync(`/dev/shm/x-${tag}`)).toBe(false);
      expect(readOnly.stderr).toContain(`cannot touch '${sub}/inside': Read-only file system`);
      const bound = await tapbox(['-x', '-M', ro, '--', ...sh(`ls ${sub}; touch ${sub}/inside`)], { cwd: wd });
      expect(bound.stdout).toBe('outside\n');
      expect(bound.stderr).toContain(`cannot touch '${sub}/inside': Read-only file system`);
      expect(existsSync(join(sub, 'inside'))).toBe(false);
    } finally {
      spawnSync('umount', ['-l', sub]);
    }
  });

  it('hides the host\'s /run (no D-Bus, no docker.sock, no systemd sockets), in read-only and -x mode', async () => {
    expect(readdirSync('/run').length).toBeGreaterThan(0);
    for (const mode of [[], ['-x']]) {
      const r = await tapbox([...mode, '--', 'ls', '-A', '/run'], { cwd: scratch() });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('');
    }
  });

  it('gives each sandbox a private /tmp, invisible to another sandbox running beside it and to the host', async () => {
    const dir = scratch();
    const name = `tapbox-private-${tag}`;
    const first = tapbox(['--', ...sh(`echo a > /tmp/${name} && touch ready; while ! test -e go; do sleep 0.1; done; cat /tmp/${name}`)], { cwd: dir });
    for (let i = 0; i < 600 && !existsSync(join(dir, 'ready')); i++) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(join(dir, 'ready'))).toBe(true);
    const second = await tapbox(['-x', '--', ...sh(`test -e /tmp/${name} && echo visible || echo absent`)], { cwd: dir });
    const hostSees = existsSync(join(tmpdir(), name));
    writeFileSync(join(dir, 'go'), '');
    const r = await first;
    expect(second.stdout).toBe('absent\n');
    expect(hostSees).toBe(false);
    expect(r.stdout).toBe('a\n'); // it was there all along, for the first sandbox only
    expect(existsSync(join(tmpdir(), name))).toBe(false);
  });

  it('reads absolute symlinks inside bound directories, and binds a file with -w', async () => {
    const dir = scratch();
    const data = userPath(join(dir, 'data', 'file'), 'through the link\n');
    symlinkSync(data, join(dir, 'data', 'abs-link'));
    const single = userPath(join(dir, 'single.txt'), 'one file\n');
    const wd = userPath(join(dir, 'wd'));
    const r = await tapbox(['-h', scratch(), '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64', '-M', join(dir, 'data'), '-w', single, '--',
      ...sh(`cat ${dir}/data/abs-link; cat ${single}; echo appended >> ${single}`)], { cwd: wd });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('through the link\none file\n');
    expect(readFileSync(single, 'utf8')).toBe('one file\nappended\n');
  });
});

describe('-x (default mode)', () => {
  it('passes mini-sandbox\'s -x checks: $HOME empty, cwd\'s parent and ancestors throw-away, system writes never reach the host', async () => {
    const b = scratch();
    const wd = userPath(join(b, 'top', 'wd'));
    userPath(join(b, 'file'), 'b file\n');
    userPath(join(b, 'top', 'file'), 'top file\n');
    const homeFile = userPath(join(HOME, `.tapbox-fs-hidden-${tag}`), 'secret\n');
    cleanups.push(() => rmSync(homeFile, { force: true }));
    const script = [
      `test -e ${homeFile} && echo home-visible`,
      `ls -A $HOME | wc -l`,
      `echo h > $HOME/f && echo home-write-ok`,
      'echo p > ../f && echo parent-write-ok',
      `echo b > ${b}/f && echo ancestor-write-ok`,
      `test -e ${b}/file && echo b-file-visible`,
      `cat ${b}/top/file`,
      `echo o > /opt/f-${tag} && echo opt-write-thrown-away`,
      'echo c > ./f && echo cwd-ok',
      'exit 5',
    ].join('; ');
    const r = await tapbox(['-x', '--', ...sh(script)], { cwd: wd });
    expect(r.code).toBe(5);
    expect(r.stdout).toBe('0\nhome-write-ok\nparent-write-ok\nancestor-write-ok\ntop file\nopt-write-thrown-away\ncwd-ok\n');
    expect(existsSync(join(HOME, 'f'))).toBe(false);
    expect(existsSync(join(b, 'top', 'f'))).toBe(false);
    expect(existsSync(join(b, 'f'))).toBe(false);
    expect(existsSync(`/opt/f-${tag}`)).toBe(false);
    expect(readFileSync(join(wd, 'f'), 'utf8')).toBe('c\n');
  });

  it('shows no other home and no /root; a cwd inside $HOME makes the home visible and writable', async () => {
    const hidden = await tapbox(['-x', '--', ...sh('ls -A /home; test -e /root || echo no-root')], { cwd: scratch() });
    expect(hidden.stdout).toBe(`${HOME.split('/').pop()}\nno-root\n`);
    const project = userPath(join(HOME, `tapbox-project-${tag}`));
    cleanups.push(() => rmSync(project, { recursive: true, force: true }));
    userPath(join(HOME, `.tapbox-fs-shown-${tag}`), 'shown\n');
    cleanups.push(() => rmSync(join(HOME, `.tapbox-fs-shown-${tag}`), { force: true }));
    const r = await tapbox(['-x', '--', ...sh(`cat $HOME/.tapbox-fs-shown-${tag}; echo p > ../.tapbox-fs-persisted-${tag}`)], { cwd: project });
    cleanups.push(() => rmSync(join(HOME, `.tapbox-fs-persisted-${tag}`), { force: true }));
    expect(r.stdout).toBe('shown\n');
    expect(r.stderr).toContain(`tapbox: warning: the working directory is inside your home, so all of ${HOME} is writable`);
    expect(hidden.stderr).not.toContain('warning');
    expect(readFileSync(join(HOME, `.tapbox-fs-persisted-${tag}`), 'utf8')).toBe('p\n');
  });

  it('-w on the cwd\'s parent makes ../f persist', async () => {
    const b = scratch();
    const mid = userPath(join(b, 'top', 'mid'));
    const wd = userPath(join(mid, 'wd'));
    const r = await tapbox(['-x', '-w', mid, '--', ...sh('echo p > ../f')], { cwd: wd });
    expect(r.code).toBe(0);
    expect(readFileSync(join(mid, 'f'), 'utf8')).toBe('p\n');
  });

  it('-w persists, -k shows a directory whose writes vanish, /var writes vanish', async () => {
    const w = userPath(`/var/tmp/tapbox-w-${tag}`);
    const o = userPath(`/var/tmp/tapbox-o-${tag}`);
    cleanups.push(() => rmSync(w, { recursive: true, force: true }), () => rmSync(o, { recursive: true, force: true }));
    userPath(join(o, 'existing'), 'from the host\n');
    const r = await tapbox(['-x', '-w', w, '-k', o, '--',
      ...sh(`echo v > /var/f-${tag} && echo var-ok; echo w > ${w}/f; echo o > ${o}/f; cat ${o}/existing ${o}/f; echo changed > ${o}/existing`)], { cwd: scratch() });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('var-ok\nfrom the host\no\n');
    expect(r.code).toBe(0);
    expect(existsSync(`/var/f-${tag}`)).toBe(false);
    expect(readFileSync(join(w, 'f'), 'utf8')).toBe('w\n');
    expect(existsSync(join(o, 'f'))).toBe(false);
    expect(readFileSync(join(o, 'existing'), 'utf8')).toBe('from the host\n');
  });

  it('starts in -W DIR, which is bound writable', async () => {
    const dir = scratch();
    const wd = userPath(join(dir, 'elsewhere'));
    const r = await tapbox(['-x', '-W', wd, '--', ...sh('pwd; echo here > made')], { cwd: dir });
    expect(r.stdout).toBe(`${wd}\n`);
    expect(readFileSync(join(wd, 'made'), 'utf8')).toBe('here\n');
  });
});

describe('mounts', () => {
  it('applies -e, -w and -k in the order given: a bind inside a fresh tmpfs', async () => {
    const dir = scratch();
    const data = userPath(join(dir, 'data'));
    const r = await tapbox(['-x', '-e', '/scratch', '-w', `${data}:/scratch/rw`, '--',
      ...sh('echo t > /scratch/t && echo r > /scratch/rw/r && ls /scratch')], { cwd: userPath(join(dir, 'wd')) });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('rw\nt\n');
    expect(readdirSync(data)).toEqual(['r']);
  });

  // Making the host-side submount takes root (CI runs the suite as root; a user run skips this one).
  it.runIf(isRoot)('refuses -k on a directory with mounts inside, naming the fix (exit 125, nothing runs)', async () => {
    const dir = scratch();
    const k = userPath(join(dir, 'k'));
    const sub = userPath(join(k, 'sub'));
    const marker = join(dir, 'ran');
    execFileSync('mount', ['-t', 'tmpfs', 'tapbox-test', sub]);
    try {
      const r = await tapbox(['-x', '-k', k, '--', 'touch', marker], { cwd: dir });
      expect(r.code).toBe(125);
      expect(r.stderr).toBe(`tapbox: creating the throw-away overlay of ${k} failed: it has mounts inside it, which overlayfs can't take as a lower layer here; bind it with -M, or overlay a directory without mounts\n`);
      expect(existsSync(marker)).toBe(false);
    } finally {
      spawnSync('umount', ['-l', sub]);
    }
  });
});

describe('the library', () => {
  const libraryRun = (options: object, command: string[], cwd: string) => {
    const argv = asTestUser([process.execPath, join(repoRoot, 'test', 'helpers', 'library-run.mjs'), JSON.stringify(options), ...command]);
    return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd, timeout: 60_000 });
  };

  it('takes the same modes, mounts, limits, seccomp and environment as typed options', () => {
    const dir = scratch();
    const out = userPath(join(dir, 'out'));
    const options = {
      mode: 'hermetic',
      store: scratch(),
      mounts: [{ type: 'ro', source: '/usr' }, { type: 'ro', source: '/bin' }, { type: 'ro', source: '/lib' }, { type: 'ro', source: '/lib64' }, { type: 'rw', source: out, target: '/out' }],
      limits: { pids: 16, memory: '512M', cpuset: '0' },
      denySyscalls: ['uname'],
      env: { PATH: '/usr/bin:/bin', GREETING: 'hi' },
      timeout: 30,
    };
    const r = libraryRun(options, ['sh', '-c', 'ls -A /; nproc; echo $GREETING > /out/g; uname 2>&1 | tail -1'], dir);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('bin\ndev\nlib\nlib64\nout\ntmp\nusr\n1\nuname: cannot get system name: Operation not permitted\n');
    expect(readFileSync(join(out, 'g'), 'utf8')).toBe('hi\n');
  });

  it('refuses a mistake before starting, with a TapboxError and the same sentence', () => {
    const script = `import { Sandbox } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'index.js'))};
try { new Sandbox(['true'], { mode: 'default', rootfs: '/' }); console.log('constructed'); } catch (e) { console.log(e.name, e.code, e.message); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stdout).toBe('TapboxError EUSAGE --rootfs and the default mode each choose the sandbox\'s root; give one.\n');
  });
});

describe('-o (custom) and -h (hermetic)', () => {
  it('-o shows exactly what was asked for, an empty home, no /proc and no network', async () => {
    const base = scratch();
    const o = userPath(`/var/tmp/tapbox-ko-${tag}`);
    cleanups.push(() => rmSync(o, { recursive: true, force: true }));
    const dir = scratch();
    const script = [
      'echo "root: $(ls -A / | tr \'\\n\' \' \')"',
      'test -e /proc/self && echo proc',
      `test -d $HOME && ls -A $HOME | wc -l`,
      'echo h > $HOME/f',
      `echo o > ${o}/f`,
      'echo c > ./f',
      'python3 -c "import socket; socket.create_connection((\'1.1.1.1\', 80), timeout=5)" 2>&1 | tail -1',
    ].join('; ');
    const r = await tapbox(['-o', base, '-k', o, '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64', '--', ...sh(script)], { cwd: dir });
    expect(r.stdout.split('\n')[0]).toBe('root: bin dev home lib lib64 tmp usr var ');
    expect(r.stdout).not.toMatch(/^proc$/m);
    expect(r.stdout).toContain('\n0\n'); // the home is there, empty
    expect(r.stdout).toMatch(/OSError: \[Errno 101\] Network is unreachable\n$/);
    expect(existsSync(join(HOME, 'f'))).toBe(false);
    expect(existsSync(join(o, 'f'))).toBe(false);
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('c\n');
    expect(readdirSync(base)).toEqual([]); // the run directory with the throw-away layers is gone
  });

  it('-h shows only -M/-w paths, the cwd, /dev and /tmp: no home; -M /proc is a fresh one', async () => {
    const dir = scratch();
    const r = await tapbox(['-h', scratch(), '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64', '--',
      ...sh('ls -A /; test -e $HOME || echo no-home; test -e /proc/self || echo no-proc')], { cwd: dir });
    expect(r.stdout).toBe('bin\ndev\nlib\nlib64\ntmp\nusr\nno-home\nno-proc\n');
    const withProc = await tapbox(['-h', scratch(), '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64', '-M', '/proc', '--',
      ...sh('ls /proc | grep -c "^[0-9]"')], { cwd: dir });
    expect(Number(withProc.stdout.trim())).toBeLessThanOrEqual(4); // PID 1, sh, ls, grep: none of the host's
  });

  it('works with --same-uid and -U, where the command maps its own uid without a visible /proc', async () => {
    const r = await tapbox(['-h', scratch(), '--same-uid', '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64', '--', 'id', '-u'], { cwd: scratch() });
    expect(r.stdout.trim()).toBe(String(testIds.uid));
    const nobody = await tapbox(['-o', scratch(), '-U', '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64', '--', 'id', '-u'], { cwd: scratch() });
    expect(nobody.stdout.trim()).toBe('65534');
  });
});

describe('--rootfs', () => {
  /** A root with dash and the libraries it needs, as a .tar.gz. */
  function makeRootfsTarball(dir: string): string {
    const root = join(dir, 'rootfs-src');
    for (const path of ['/usr/bin/dash', '/lib64/ld-linux-x86-64.so.2', ...libsOf('/usr/bin/dash')]) {
      mkdirSync(join(root, dirname(path)), { recursive: true });
      execFileSync('cp', ['-L', path, join(root, path)]);
    }
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc', 'motd'), 'from the tarball\n');
    symlinkSync('usr/bin', join(root, 'bin'));
    const tarball = join(dir, 'root.tar.gz');
    execFileSync('tar', ['-czf', tarball, '-C', root, '.']);
    chmodSync(tarball, 0o644);
    return tarball;
  }

  function libsOf(binary: string): string[] {
    return [...execFileSync('ldd', [binary], { encoding: 'utf8' }).matchAll(/=> (\/\S+)/g)].map((m) => m[1]!);
  }

  it('unpacks a tarball once into the cache and runs in it, with writes thrown away', async () => {
    const dir = scratch();
    const cache = userPath(join(dir, 'cache'));
    const tarball = makeRootfsTarball(dir);
    const sha = createHash('sha256').update(readFileSync(tarball)).digest('hex');
    const env = { ...process.env, XDG_CACHE_HOME: cache };
    const r = await tapbox(['--rootfs', tarball, '--', '/bin/dash', '-c', 'read m < /etc/motd; echo "$m"; echo x > /etc/added && echo written'], { cwd: dir, env });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('from the tarball\nwritten\n');
    const unpacked = join(cache, 'tapbox', 'rootfs', sha);
    expect(statSync(unpacked).uid).toBe(testIds.uid);
    expect(existsSync(join(unpacked, 'etc', 'added'))).toBe(false);
    const again = await tapbox(['--rootfs', tarball, '--', '/bin/dash', '-c', 'test -e /etc/added && echo kept || echo gone'], { cwd: dir, env });
    expect(again.stdout).toBe('gone\n');
    expect(readdirSync(join(cache, 'tapbox', 'rootfs'))).toEqual([sha]);
  });

  it('does not write through a symlink member pointing out of the root', async () => {
    const dir = scratch();
    const victim = userPath(join(dir, 'victim'));
    const tarball = join(dir, 'evil.tar');
    // A symlink "escape" -> victim, then a file "escape/planted" written through it if tar followed it.
    const script = `import tarfile, io
t = tarfile.open(${JSON.stringify(tarball)}, 'w')
link = tarfile.TarInfo('escape'); link.type = tarfile.SYMTYPE; link.linkname = ${JSON.stringify(victim)}; t.addfile(link)
data = b'pwned'; f = tarfile.TarInfo('escape/planted'); f.size = len(data); t.addfile(f, io.BytesIO(data))
t.close()`;
    execFileSync('python3', ['-c', script]);
    chmodSync(tarball, 0o644);
    const r = await tapbox(['--rootfs', tarball, '--', 'true'], { cwd: dir, env: { ...process.env, XDG_CACHE_HOME: userPath(join(dir, 'cache')) } });
    expect(readdirSync(victim)).toEqual([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^tapbox: unpacking --rootfs .*evil\.tar failed \(.*\); pass a readable \.tar or \.tar\.gz of a root filesystem\.\n$/);
  });
});

describe('clean-up of the throw-away layers (-d DIR)', () => {
  function secretFiles(dir: string) {
    const secret = userPath(join(dir, 'secret'), 'secret\n', 0o600);
    const secretDir = userPath(join(dir, 'secret-dir'));
    userPath(join(secretDir, 'inside'), 'inside\n', 0o600);
    chmodSync(secretDir, 0o700);
    return { secret, secretDir };
  }

  function expectUntouched({ secret, secretDir }: { secret: string; secretDir: string }) {
    expect(statSync(secret).mode & 0o7777).toBe(0o600);
    expect(readFileSync(secret, 'utf8')).toBe('secret\n');
    expect(statSync(secretDir).mode & 0o7777).toBe(0o700);
    expect(readFileSync(join(secretDir, 'inside'), 'utf8')).toBe('inside\n');
  }

  const plant = (s: { secret: string; secretDir: string }) =>
    `ln -s ${s.secret} /usr/planted; ln -s ${s.secretDir} /usr/planted-dir; ln -s ${s.secret} /tmp/planted; mkdir /usr/locked; chmod 0 /usr/locked; ln -s ${s.secretDir} /usr/locked/link`;

  it('removes the run directory without following symlinks planted in a throw-away layer', async () => {
    const dir = scratch();
    const store = userPath(join(dir, 'store'));
    const s = secretFiles(dir);
    const r = await tapbox(['-x', '-d', store, '--', ...sh(`${plant(s)}; echo planted`)], { cwd: userPath(join(dir, 'wd')) });
    expect(r.stdout).toBe('planted\n');
    expect(readdirSync(store)).toEqual([]);
    expectUntouched(s);
  });

  it('after tapbox is SIGKILLed, the next start with the same store removes the stale run directory safely', async () => {
    const dir = scratch();
    const store = userPath(join(dir, 'store'));
    const wd = userPath(join(dir, 'wd'));
    const s = secretFiles(dir);
    const argv = asTestUser([process.execPath, cliPath, '-x', '-d', store, '--', ...sh(`${plant(s)}; echo ready; exec sleep 300`)]);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: wd, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    const exited = new Promise((r) => child.on('exit', r));
    process.kill(isRoot ? nodeChildOf(child.pid!) : child.pid!, 'SIGKILL');
    await exited;
    const stale = readdirSync(store);
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatch(/^\.tapbox-run-/);
    // Once the sandbox has died with tapbox, its lock is gone: the next start sweeps it away.
    let r = await tapbox(['-x', '-d', store, '--', 'true'], { cwd: wd });
    for (let i = 0; i < 20 && readdirSync(store).length > 0; i++) r = await tapbox(['-x', '-d', store, '--', 'true'], { cwd: wd });
    expect(r.code).toBe(0);
    expect(readdirSync(store)).toEqual([]);
    expectUntouched(s);
  });
});

/** The tapbox node process runuser started. */
function nodeChildOf(pid: number): number {
  for (let i = 0; i < 100; i++) {
    const out = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.trim();
    if (out) return Number(out.split('\n')[0]);
    spawnSync('sleep', ['0.05']);
  }
  throw new Error(`runuser ${pid} has no child`);
}

describe('seccomp and capabilities', () => {
  const keyctl = 'import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); r = libc.syscall(250, 0, 0, 0, 0, 0); print(os.strerror(ctypes.get_errno()) if r < 0 else "ok")';
  const python = (code: string) => ['python3', '-c', code];

  it('denies keyctl with EPERM by default; --allow-syscall lets it through', async () => {
    const denied = await tapbox(['--', ...python(keyctl)], { cwd: scratch() });
    expect(denied.stdout).toBe('Operation not permitted\n');
    const allowed = await tapbox(['--allow-syscall', 'keyctl', '--', ...python(keyctl)], { cwd: scratch() });
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).not.toBe('Operation not permitted\n');
    expect(allowed.stdout).not.toBe('');
  });

  it('refuses a nested user namespace (unshare -U), which would regain the mount calls', async () => {
    const r = await tapbox(['--', 'unshare', '-U', 'true'], { cwd: scratch() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Operation not permitted');
  });

  it('--deny-syscall NAME and --seccomp FILE deny other calls; --seccomp off denies nothing', async () => {
    const uname = 'import os\ntry:\n    os.uname(); print("ok")\nexcept OSError as e:\n    print(e.strerror)';
    expect((await tapbox(['--', ...python(uname)], { cwd: scratch() })).stdout).toBe('ok\n');
    expect((await tapbox(['--deny-syscall', 'uname', '--', ...python(uname)], { cwd: scratch() })).stdout).toBe('Operation not permitted\n');
    const dir = scratch();
    const profile = userPath(join(dir, 'profile'), '# my deny-list\nuname\n');
    expect((await tapbox(['--seccomp', profile, '--', ...python(uname)], { cwd: dir })).stdout).toBe('Operation not permitted\n');
    expect((await tapbox(['--seccomp', profile, '--', ...python(keyctl)], { cwd: dir })).stdout).not.toBe('Operation not permitted\n');
    expect((await tapbox(['--seccomp', 'off', '--', ...python(keyctl)], { cwd: dir })).stdout).not.toBe('Operation not permitted\n');
  });

  it('--cap-drop DAC_OVERRIDE makes root inside respect a 0444 file; --same-uid respects it too', async () => {
    const dir = scratch();
    const file = userPath(join(dir, 'readonly.txt'), 'original\n', 0o444);
    const write = sh('echo changed > readonly.txt && echo wrote');
    const withCap = await tapbox(['--', ...write], { cwd: dir });
    expect(withCap.stdout).toBe('wrote\n'); // root with CAP_DAC_OVERRIDE over the user's own files
    chmodSync(file, 0o644);
    writeFileSync(file, 'original\n');
    chmodSync(file, 0o444);
    for (const flags of [['--cap-drop', 'DAC_OVERRIDE'], ['--same-uid']]) {
      const r = await tapbox([...flags, '--', ...write], { cwd: dir });
      expect(r.stderr).toContain('Permission denied');
      expect(readFileSync(file, 'utf8')).toBe('original\n');
    }
  });
});

describe('limits and the timeout', () => {
  it('--memory stops an allocation loop', async () => {
    const loop = 'x = []\nwhile True: x.append(bytearray(10**7))';
    const r = await tapbox(['--memory', '256M', '--', 'python3', '-c', loop], { cwd: scratch() });
    // In a cgroup the kernel's OOM killer ends it (SIGKILL); per process, the allocation fails.
    if (wholeSandboxLimits) expect(r.code).toBe(137);
    else expect(r.stderr).toContain('MemoryError');
  });

  it.runIf(!wholeSandboxLimits)('per process: node starts under --memory 512M, one warning says so, --require-limits refuses', async () => {
    const r = await tapbox(['--memory', '512M', '--', process.execPath, '-e', 'console.log("node runs")'], { cwd: scratch() });
    expect(r.stdout).toBe('node runs\n');
    expect(r.code).toBe(0);
    expect(r.stderr.match(/warning/g)).toHaveLength(1);
    expect(r.stderr).toMatch(/^tapbox: warning: .*, so --memory, --pids and --cpus hold per process, not for the sandbox as a whole; for whole-sandbox limits run tapbox on a cgroup v2 host in a cgroup delegated to you or with a user systemd running/);
    const dir = scratch();
    const refused = await tapbox(['--require-limits', '--memory', '512M', '--', 'touch', 'ran'], { cwd: dir });
    expect(refused.code).toBe(125);
    expect(refused.stderr).toMatch(/^tapbox: --require-limits: .*, so the limits can't hold for the sandbox as a whole; run where a cgroup v2 is delegated to you/);
    expect(existsSync(join(dir, 'ran'))).toBe(false);
  });

  it('--pids stops a fork bomb', async () => {
    const forty = sh('for i in $(seq 40); do sleep 30 & done; echo loop-done');
    const unlimited = await tapbox(['--', ...forty], { cwd: scratch() });
    expect(unlimited.stderr).toBe('');
    const limited = await tapbox(['--pids', '16', '--', ...forty], { cwd: scratch() });
    expect(limited.stderr).toContain('Cannot fork');
    // Forking until fork fails: it stops at the cap (the children stay alive, so each counts).
    const bomb = 'import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.strerror)';
    const r = await tapbox(['--pids', '32', '--', 'python3', '-c', bomb], { cwd: scratch() });
    const [forked, reason] = [Number(r.stdout.split(' ')[0]), r.stdout.slice(r.stdout.indexOf(' ') + 1)];
    expect(reason).toBe('Resource temporarily unavailable\n');
    expect(forked).toBeGreaterThan(0);
    expect(forked).toBeLessThan(32);
  });

  it.runIf(!wholeSandboxLimits)('refuses a per-process limit above the caller\'s own hard limit instead of lowering it (exit 125, nothing runs)', async () => {
    const dir = scratch();
    const underLimits = (prlimit: string, flags: string[]) => {
      const argv = asTestUser(['prlimit', prlimit, '--', process.execPath, cliPath, ...flags, '--', 'touch', 'ran']);
      return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: dir, timeout: 60_000 });
    };
    const pids = underLimits('--nproc=500:500', ['--pids', '1000']);
    expect(pids.status).toBe(125);
    expect(pids.stderr).toMatch(/\ntapbox: --pids 1000 can't be enforced: you run under a hard limit of 500 \(processes; ulimit -Hu\); ask for at most that\n$/);
    const memory = underLimits('--data=4294967296:4294967296', ['--memory', '8G']);
    expect(memory.status).toBe(125);
    expect(memory.stderr).toMatch(/^tapbox: warning: .* hold per process, .*\ntapbox: --memory 8589934592 can't be enforced: you run under a hard limit of 4294967296 \(bytes; ulimit -Hd shows KiB\); ask for at most that\n$/);
    expect(existsSync(join(dir, 'ran'))).toBe(false);
  });

  it('--cpuset runs on the CPUs named; --cpus more than there are is refused', async () => {
    expect((await tapbox(['--cpuset', '0', '--', 'nproc'], { cwd: scratch() })).stdout).toBe('1\n');
    const r = await tapbox(['--cpus', '4096', '--', 'true'], { cwd: scratch() });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^tapbox: --cpus 4096 can't be enforced: only \d+ CPUs are available to you; ask for at most \d+\.\n$/);
  });

  it('-T kills a sleeper (-t 0: SIGKILL, exit 137); with a grace period it gets SIGTERM first', async () => {
    const killed = await tapbox(['-T', '1', '-t', '0', '--', 'sleep', '300'], { cwd: scratch() });
    expect(killed.code).toBe(137);
    expect(killed.stderr).toContain('ran past --timeout 1s; killing it');
    const termed = await tapbox(['-T', '1', '-t', '30', '--', ...sh('trap "echo got SIGTERM; exit 3" TERM; sleep 300 & wait')], { cwd: scratch() });
    expect(termed.code).toBe(3);
    expect(termed.stdout).toBe('got SIGTERM\n');
  });

  it('--storage caps the in-memory throw-away layers', async () => {
    const r = await tapbox(['--storage', '4M', '--', ...sh('head -c 8M /dev/zero > /tmp/big')], { cwd: scratch() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('No space left on device');
  });
});

describe('environment', () => {
  it('--env sets variables; --clear-env starts from PATH only', async () => {
    const r = await tapbox(['--env', 'ALPHA=1', '--env', 'BETA=two=2', '--', ...sh('echo $ALPHA $BETA; test -n "$HOME" && echo has-home')], { cwd: scratch() });
    expect(r.stdout).toBe('1 two=2\nhas-home\n');
    const clear = await tapbox(['--clear-env', '--env', 'ALPHA=1', '--', '/usr/bin/env'], { cwd: scratch() });
    expect(clear.stdout.trim().split('\n').map((l) => l.split('=')[0]).sort()).toEqual(['ALPHA', 'PATH']);
  });
});

describe('a terminal program', () => {
  it('runs bash with job control under a pseudo-terminal, in -x mode with limits', () => {
    const input = ['sleep 30 &\n', 'jobs\n', 'kill %1\n', 'echo "tty=$(tty) home=$(ls -A ~ | wc -l)"\n', 'exit 7\n'];
    const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'pty-run.py'), process.execPath, cliPath, '-x', '--pids', '64', '--', 'bash', '--norc', '-i']);
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: scratch(), env: { ...process.env, PTY_INPUT: JSON.stringify(input) }, timeout: 60_000 });
    const result = JSON.parse(r.stdout) as { code: number; output: string };
    expect(result.output).toMatch(/\[1\]\+?\s+Running\s+sleep 30 &/);
    expect(result.output).toMatch(/tty=\/dev\/console home=0/); // the terminal, found by ttyname() in the minimal /dev
    expect(result.output).not.toMatch(/no job control/);
    expect(result.code).toBe(7);
  });
});

describe('mistakes: one sentence, exit 2, nothing runs', () => {
  let dir: string;
  let existing: string;
  beforeAll(() => {
    dir = scratch();
    existing = userPath(join(dir, 'existing'));
  });

  const cases: [string, () => string[], RegExp][] = [
    ['a -M path that does not exist', () => ['-M', '/nonexistent/tapbox'], /^tapbox: -M \/nonexistent\/tapbox: no such file or directory; pass an existing path\.$/],
    ['a path both -M and -w', () => ['-M', existing, '-w', existing], /^tapbox: .*\/existing is given both read-only \(-M\) and writable \(-w\); give it once\.$/],
    ['two modes', () => ['-x', '-o', existing], /^tapbox: -x and -o each choose the filesystem mode; give one\.$/],
    ['-h and --rootfs', () => ['-h', existing, '--rootfs', existing], /^tapbox: -h and --rootfs each choose the filesystem mode; give one\.$/],
    ['an -o directory that does not exist', () => ['-o', '/nonexistent/base'], /^tapbox: -o \/nonexistent\/base: no such directory; pass an existing directory for the throw-away layers\.$/],
    ['an -h directory the user can\'t write', () => ['-h', '/usr'], /^tapbox: -h \/usr is not writable by you; pass a directory you own \(tapbox keeps its throw-away layers there\)\.$/],
    ['-k on a file', () => ['-k', '/etc/hostname'], /^tapbox: -k \/etc\/hostname is not a directory; an overlay needs one \(bind a file with -M or -w\)\.$/],
    ['a relative destination', () => ['-M', `${existing}:relative`], /^tapbox: -M relative: the path inside the sandbox must be absolute\.$/],
    ['--storage with a store directory', () => ['--storage', '1G', '-d', existing], /^tapbox: --storage caps the in-memory store of throw-away layers, but -o\/-h\/-d put them on disk; drop one\.$/],
    ['a bad size', () => ['--memory', 'lots'], /^tapbox: --memory "lots" is not a size; give bytes or a size like 512M or 2G\.$/],
    ['a bad number', () => ['--pids', 'many'], /^tapbox: --pids takes a whole number, not "many"\.$/],
    ['--seccomp off with --allow-syscall', () => ['--seccomp', 'off', '--allow-syscall', 'keyctl'], /^tapbox: --allow-syscall and --deny-syscall adjust the seccomp filter, which --seccomp off turns off; drop one\.$/],
    ['an unknown system call', () => ['--deny-syscall', 'nosuchcall'], /^tapbox: --deny-syscall nosuchcall: no such system call \(names as in syscalls\(2\), e\.g\. ptrace, io_uring_setup\)$/],
    ['an unknown capability', () => ['--cap-drop', 'NOPE'], /^tapbox: --cap-drop NOPE: no such capability \(names as in capabilities\(7\), e\.g\. NET_ADMIN or CAP_NET_ADMIN, or ALL\)$/],
    ['a missing seccomp file', () => ['--seccomp', '/nonexistent/profile'], /^tapbox: --seccomp \/nonexistent\/profile: no such file or directory; pass an existing path\.$/],
    ['a working directory that does not exist', () => ['-W', '/nonexistent/wd'], /^tapbox: -W \/nonexistent\/wd: no such directory; pass an existing working directory\.$/],
    ['--env without =', () => ['--env', 'JUSTKEY'], /^tapbox: --env JUSTKEY: give KEY=VALUE, e\.g\. --env CI=1\.$/],
  ];

  it.each(cases)('%s', async (_, args, sentence) => {
    const marker = join(dir, `ran-${Math.random().toString(36).slice(2)}`);
    const r = await tapbox([...args(), '--', 'touch', marker], { cwd: dir });
    expect(r.stderr.trim()).toMatch(sentence);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.code).toBe(2);
    expect(existsSync(marker)).toBe(false);
  });
});

// The cwd is bound writable in every mode: from $HOME or /home, all of the home would be, and a dotfile
// written there runs outside the sandbox at the next login.
describe('a working directory that is $HOME or holds it', () => {
  const store = () => scratch();
  const modes: [string, () => string[]][] = [
    ['read-only', () => []],
    ['-x', () => ['-x']],
    ['-o', () => ['-o', store(), '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64']],
    ['-h', () => ['-h', store(), '-M', '/usr', '-M', '/bin', '-M', '/lib', '-M', '/lib64']],
    ['--rootfs', () => ['--rootfs', store()]],
  ];
  const cwds: [string, () => string, (cwd: string) => RegExp][] = [
    ['$HOME', () => HOME, (cwd) => new RegExp(`^tapbox: the working directory ${cwd} is your home, which the sandbox could then write \\(dotfiles that run outside it at your next login included\\); cd into a project directory, or pass --expose-home if you mean it\\.$`)],
    ['its parent', () => dirname(HOME), (cwd) => new RegExp(`^tapbox: the working directory ${cwd} holds your home ${HOME}, which the sandbox could then write .*; cd into a project directory, or pass --expose-home if you mean it\\.$`)],
  ];
  const cases = modes.flatMap(([mode, args]) => cwds.map(([where, cwd, sentence]) => [mode, where, args, cwd, sentence] as const));

  it.each(cases)('%s from %s: refused with one sentence, exit 2, nothing runs', async (_, __, args, cwd, sentence) => {
    const marker = join(HOME, `.tapbox-home-marker-${Math.random().toString(36).slice(2)}`);
    cleanups.push(() => rmSync(marker, { force: true }));
    const r = await tapbox([...args(), '--', 'touch', marker], { cwd: cwd() });
    expect(r.stderr.trim()).toMatch(sentence(cwd()));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.code).toBe(2);
    expect(existsSync(marker)).toBe(false);
  });

  it('--expose-home lets it run, with a warning: the home is then writable', async () => {
    const marker = join(HOME, `.tapbox-home-exposed-${tag}`);
    cleanups.push(() => rmSync(marker, { force: true }));
    const r = await tapbox(['--expose-home', '--', 'touch', marker], { cwd: dirname(HOME) });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(`tapbox: warning: --expose-home: the working directory holds your home, so all of ${HOME} is writable in the sandbox and its writes persist (dotfiles included).\n`);
    expect(existsSync(marker)).toBe(true);
    const x = await tapbox(['-x', '--expose-home', '--', ...sh('pwd; ls -A | grep -c tapbox-home-exposed')], { cwd: HOME });
    expect(x.code, x.stderr).toBe(0);
    expect(x.stdout).toBe(`${HOME}\n1\n`);
  });

  it('a project directory inside $HOME still runs, only it writable in read-only mode', async () => {
    const project = userPath(join(HOME, `tapbox-project-ro-${tag}`));
    cleanups.push(() => rmSync(project, { recursive: true, force: true }));
    const r = await tapbox(['--', ...sh(`echo made > f; touch $HOME/.tapbox-dotfile-${tag}`)], { cwd: project });
    expect(r.stderr).toContain('Read-only file system');
    expect(readFileSync(join(project, 'f'), 'utf8')).toBe('made\n');
    expect(existsSync(join(HOME, `.tapbox-dotfile-${tag}`))).toBe(false);
  });
});
