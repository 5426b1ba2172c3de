// Images keep their files' owners as the user's subordinate ids (src/idmap/, src/images/owners.ts,
// native/launcher/idmap.c), as rootless podman does: the unprivileged test user, given a range in
// /etc/subuid and /etc/subgid here (as .ci/run does), imports images with files of uid 1000 and gid 42,
// runs them and removes them; a second user without a range gets today's flattened owners and a
// warning. The attacks: owners beyond the range, a symlink planted for the chown pass, ranges the
// admin did not grant, and dropping a supplementary group to read what that group may not.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, isRoot, repoRoot, testIds, testUser } from '../helpers/tapbox.js';
import { ociLayout, tarOf, type Member } from '../helpers/images.js';

const NO_RANGE_USER = 'tapboxnoids';
const NEGATIVE_GROUP = 'tapboxneg';
const launcher = join(repoRoot, 'build', 'Release', 'tapbox-launcher');
const busybox = readFileSync('/bin/busybox');

let range: { uid: number; gid: number; count: number };
let work: string;
let probe: Buffer;

/** The first START:COUNT of user in an /etc/subuid-style file. */
function rangeIn(file: string, user: string): [number, number] | null {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  return line ? [Number(line.split(':')[1]), Number(line.split(':')[2])] : null;
}

beforeAll(() => {
  if (!isRoot) throw new Error('test/integration/subids.test.ts sets up users, groups and /etc/subuid: run it as root (CI does), it runs tapbox as the test users');
  // The host setup: the test user has a range (useradd gives one; a host that predates /etc/subuid may not).
  if (!rangeIn('/etc/subuid', testUser) || !rangeIn('/etc/subgid', testUser)) execFileSync('usermod', ['--add-subuids', '100000-165535', '--add-subgids', '100000-165535', testUser]);
  if (spawnSync('id', [NO_RANGE_USER]).status !== 0) execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', NO_RANGE_USER]);
  if (spawnSync('getent', ['group', NEGATIVE_GROUP]).status !== 0) execFileSync('groupadd', [NEGATIVE_GROUP]);
  const [uid, count] = rangeIn('/etc/subuid', testUser)!;
  const [gid, gcount] = rangeIn('/etc/subgid', testUser)!;
  expect(rangeIn('/etc/subuid', NO_RANGE_USER)).toBeNull();
  expect(Math.min(count, gcount)).toBeGreaterThanOrEqual(65536);
  range = { uid, gid, count: 65536 };
  for (const helper of ['/usr/bin/newuidmap', '/usr/bin/newgidmap']) {
    expect(lstatSync(helper, { throwIfNoEntry: false })?.mode, `${helper} must be installed setuid root (apt-get install uidmap; .ci/run does)`).toSatisfy((m: number | undefined) => m !== undefined && (m & 0o4000) !== 0);
  }
  work = mkdtempSync(join(tmpdir(), 'tapbox-subids-'));
  chmodSync(work, 0o755);
  // setgroups(2) to drop every supplementary group, then open the file named: static, for any image.
  writeFileSync(join(work, 'probe.c'), `#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  (void)argc;
  printf("setgroups: %s\\n", setgroups(0, NULL) == 0 ? "dropped" : strerror(errno));
  printf("open: %s\\n", open(argv[1], O_RDONLY) >= 0 ? "opened" : strerror(errno));
  return 0;
}
`);
  execFileSync('cc', ['-static', '-O', '-o', join(work, 'probe'), join(work, 'probe.c')]);
  probe = readFileSync(join(work, 'probe'));
});

/** A directory owned by user (a store and a working directory of theirs). */
function dirOf(user: string): { cwd: string; env: NodeJS.ProcessEnv; store: string } {
  const cwd = mkdtempSync(join(work, 'user-'));
  execFileSync('chown', [`${user}:`, cwd]);
  return { cwd, store: join(cwd, 'data', 'tapbox'), env: { ...process.env, XDG_DATA_HOME: join(cwd, 'data') } };
}

/** Runs the CLI (or argv[0] when it is absolute) as user; extra: runuser's options (a supplementary group). */
function as(user: string, args: string[], o: { cwd: string; env: NodeJS.ProcessEnv; extra?: string[] }) {
  const argv = args[0]!.startsWith('/') ? args : [process.execPath, cliPath, ...args];
  const r = spawnSync('/usr/sbin/runuser', ['-u', user, ...(o.extra ?? []), '--', ...argv], { cwd: o.cwd, env: o.env, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A tarball of members, readable by the test users. */
async function tarball(name: string, members: Member[]): Promise<string> {
  const path = join(work, name);
  writeFileSync(path, await tarOf(members));
  chmodSync(path, 0o644);
  return path;
}

const base: Member[] = [
  { name: 'bin', type: 'directory' },
  { name: 'bin/busybox', data: busybox, mode: 0o755 },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
];
const owned: Member[] = [
  ...base,
  { name: 'home/app', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
  { name: 'home/app/secret', data: 'mine\n', mode: 0o600, uid: 1000, gid: 42 },
  { name: 'home/app/link', type: 'symlink', linkname: 'secret', uid: 1000, gid: 1000 },
  { name: 'var/cache/apt', type: 'directory', mode: 0o755, uid: 42, gid: 42 },
];

/** Every entry under dir with its host owner: [path, uid, gid]. */
function ownersUnder(dir: string): [string, number, number][] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((rel) => {
    const st = lstatSync(join(dir, rel));
    return [rel, st.uid, st.gid];
  });
}

const rootfsOf = (store: string) => join(store, 'rootfs', readdirSync(join(store, 'rootfs'))[0]!);

describe("images keep their owners as the user's subordinate ids", () => {
  it('files of uid 1000 and gid 42: in the range on the host, 1000/42 in the box where the command is root; image rm leaves nothing', async () => {
    const u = dirOf(testUser);
    const imported = as(testUser, ['image', 'import', await tarball('owned.tar', owned), 'owned'], u);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stderr).toBe('');
    const root = rootfsOf(u.store);
    const host = Object.fromEntries(ownersUnder(root).map(([p, uid, gid]) => [p, `${uid}:${gid}`]));
    const sub = (id: number, start: number) => start + id - 1;
    expect(host).toMatchObject({
      bin: `${testIds.uid}:${testIds.gid}`,
      'bin/busybox': `${testIds.uid}:${testIds.gid}`,
      'home/app': `${sub(1000, range.uid)}:${sub(1000, range.gid)}`,
      'home/app/secret': `${sub(1000, range.uid)}:${sub(42, range.gid)}`,
      'home/app/link': `${sub(1000, range.uid)}:${sub(1000, range.gid)}`,
      'var/cache/apt': `${sub(42, range.uid)}:${sub(42, range.gid)}`,
    });
    // The user's own uid can't read it on the host: it is another id's now.
    expect(as(testUser, ['/bin/cat', join(root, 'home/app/secret')], u).code).not.toBe(0);

    const run = as(testUser, ['--image', 'owned', '--', '/bin/busybox', 'sh', '-c', 'id -u; id -g; busybox stat -c "%u %g %a %n" /home/app /home/app/secret /var/cache/apt; cat /proc/self/uid_map /proc/self/setgroups; cat /home/app/secret'], u);
    expect(run.stderr).toBe('');
    expect(run.stdout.replace(/[ \t]+/g, ' ')).toBe('0\n0\n1000 1000 700 /home/app\n1000 42 600 /home/app/secret\n42 42 755 /var/cache/apt\n 0 0 1\n 1 1 65536\ndeny\nmine\n');

    const removed = as(testUser, ['image', 'rm', 'owned'], u);
    expect(removed.code, removed.stderr).toBe(0);
    expect(readdirSync(join(u.store, 'rootfs'))).toEqual([]);
    expect(readdirSync(join(u.store, 'tmp'))).toEqual([]);
    expect(ownersUnder(u.store).filter(([, uid]) => uid !== testIds.uid)).toEqual([]);
  });

  it("root of the box writes a 0600 file of uid 1000 with podman's default capabilities (DAC_OVERRIDE), not without it; writes never reach the image", async () => {
    const u = dirOf(testUser);
    expect(as(testUser, ['image', 'import', await tarball('owned2.tar', owned), 'owned'], u).code).toBe(0);
    const write = as(testUser, ['--image', 'owned', '--', '/bin/busybox', 'sh', '-c', 'echo more >> /home/app/secret && cat /home/app/secret'], u);
    expect(write.stdout).toBe('mine\nmore\n');
    const dropped = as(testUser, ['--image', 'owned', '--cap-drop', 'DAC_OVERRIDE', '--', '/bin/busybox', 'sh', '-c', 'echo more >> /home/app/secret'], u);
    expect(dropped.code).not.toBe(0);
    expect(dropped.stderr).toMatch(/Permission denied/);
    expect(readFileSync(join(rootfsOf(u.store), 'home/app/secret'), 'utf8')).toBe('mine\n');
  });

  it("a detached box from the image: exec joins its mapping (the owners, root, setgroups denied)", async () => {
    const u = dirOf(testUser);
    const env = { ...u.env, XDG_STATE_HOME: join(u.cwd, 'state'), XDG_RUNTIME_DIR: join(u.cwd, 'run') };
    expect(as(testUser, ['image', 'import', await tarball('boxed.tar', owned), 'owned'], { ...u, env }).code).toBe(0);
    const started = as(testUser, ['run', '-d', '--name', 'owners', '--image', 'owned', '--', '/bin/busybox', 'sleep', '1000'], { ...u, env });
    expect(started.code, started.stderr).toBe(0);
    try {
      const exec = as(testUser, ['exec', 'owners', '--', '/bin/busybox', 'sh', '-c', 'id -u; busybox stat -c "%u %g %n" /home/app/secret; cat /proc/self/setgroups'], { ...u, env });
      expect(exec.stderr).toBe('');
      expect(exec.stdout).toBe('0\n1000 42 /home/app/secret\ndeny\n');
    } finally {
      expect(as(testUser, ['rm', '-f', 'owners'], { ...u, env }).code).toBe(0);
    }
  });
});

describe('attacks on the mapping', () => {
  it("an image gets no file of real root or of the user's other ids on the host; ids beyond the range are root's in the box, with a warning", async () => {
    const u = dirOf(testUser);
    const negativeGid = Number(execFileSync('getent', ['group', NEGATIVE_GROUP], { encoding: 'utf8' }).split(':')[2]);
    const ids = [1, 65536, 65537, 262143, testIds.uid, negativeGid]; // 262143: the largest tarOf writes
    const members: Member[] = [...base, ...ids.map((id): Member => ({ name: `owned-${id}`, data: `${id}\n`, uid: id, gid: id }))];
    const imported = as(testUser, ['image', 'import', await tarball('crafted.tar', members), 'crafted'], u);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stderr).toContain('2 of its files belong to ids beyond your subordinate range of 65536 uids and 65536 gids (uid 65537, gid 65537, uid 262143, and 1 more); those are root\'s in the box.');
    // On the host: the user, or an id of the range; never 0, the user's own uid for another id, or the group.
    for (const [path, uid, gid] of ownersUnder(rootfsOf(u.store))) {
      const id = /^owned-(\d+)$/.exec(path)?.[1];
      const inImage = id === undefined || Number(id) > 65536 ? 0 : Number(id);
      expect([path, uid, gid]).toEqual([path, inImage === 0 ? testIds.uid : range.uid + inImage - 1, inImage === 0 ? testIds.gid : range.gid + inImage - 1]);
    }
    const run = as(testUser, ['--image', 'crafted', '--', '/bin/busybox', 'sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; busybox stat -c "%u:%g %n" /owned-*'], u);
    const inBox = ids.map((id) => `/owned-${id}`).sort().map((name) => {
      const id = Number(name.slice('/owned-'.length));
      return `${id > 65536 ? 0 : id}:${id > 65536 ? 0 : id} ${name}\n`;
    });
    expect(run.stdout.replace(/[ \t]+/g, ' ')).toBe(` 0 0 1\n 1 1 65536\n 0 0 1\n 1 1 65536\n${inBox.join('')}`);
  });

  it("a later layer's symlink can't lead the chown pass out of the image, nor can a record given to the launcher by hand", async () => {
    const u = dirOf(testUser);
    const victim = join(u.cwd, 'victim');
    mkdirSync(victim);
    writeFileSync(join(victim, 'v'), 'the user\'s\n');
    execFileSync('chown', ['-R', `${testUser}:`, victim]);
    const layout = join(u.cwd, 'layout');
    ociLayout(layout, [
      await tarOf([...base, { name: 'a', type: 'directory', uid: 1000, gid: 1000 }, { name: 'a/v', data: 'image\n', uid: 1000, gid: 1000 }]),
      await tarOf([{ name: '.wh.a', data: '' }, { name: 'a', type: 'symlink', linkname: victim }]),
    ]);
    execFileSync('chown', ['-R', `${testUser}:`, layout]);
    const imported = as(testUser, ['image', 'import', layout, 'layered'], u);
    expect(imported.code, imported.stderr).toBe(0);
    expect(lstatSync(join(rootfsOf(u.store), 'a')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(victim, 'v')).uid).toBe(testIds.uid);

    const args = ['--userns-only', '--subuid', `${range.uid}:65536`, '--subgid', `${range.gid}:65536`, '--', launcher, '--apply-owners', rootfsOf(u.store)];
    const byHand = spawnSync('/usr/sbin/runuser', ['-u', testUser, '--', launcher, ...args], { input: '1000 1000 a/v\0', encoding: 'utf8' });
    expect(byHand.status, byHand.stderr).toBe(1);
    expect(byHand.stderr).toMatch(/a\/v the owner 1000:1000 failed \(Not a directory\)/);
    expect(lstatSync(join(victim, 'v')).uid).toBe(testIds.uid);
  });

  it('the launcher maps only what /etc/subuid grants: another range, or one wider than 65536, is refused and nothing runs', () => {
    const u = dirOf(testUser);
    const marker = join(u.cwd, 'ran');
    const bare = (uids: string, gids: string) => as(testUser, [launcher, '--userns-only', '--subuid', uids, '--subgid', gids, '--', '/bin/touch', marker], u);
    const notGranted = bare(`${range.uid + 65536}:65536`, `${range.gid}:65536`);
    expect(notGranted.code).toBe(125);
    expect(notGranted.stderr).toMatch(/^tapbox-launcher: mapping your subordinate ids failed: newuidmap: /);
    const before = bare(`${range.uid - 1}:2`, `${range.gid}:65536`);
    expect(before.code).toBe(125);
    const wider = bare(`${range.uid}:65537`, `${range.gid}:65536`);
    expect(wider.code).toBe(125);
    expect(wider.stderr).toMatch(/--subuid: the count in "\d+:65537" must be a number from 1 to 65536/);
    expect(readdirSync(u.cwd)).not.toContain('ran');
    expect(bare(`${range.uid}:65536`, `${range.gid}:65536`).code).toBe(0);
    expect(readdirSync(u.cwd)).toContain('ran');
  });

  it("the command can't drop a supplementary group (setgroups is denied) to read a file that group may not", async () => {
    const u = dirOf(testUser);
    expect(as(testUser, ['image', 'import', await tarball('probe.tar', [...owned, { name: 'bin/probe', data: probe, mode: 0o755 }]), 'probe'], u).code).toBe(0);
    // Others may read it, its group may not: only dropping the group would open it.
    const negative = join(work, 'negative');
    writeFileSync(negative, 'not for the group\n');
    execFileSync('chown', [`root:${NEGATIVE_GROUP}`, negative]);
    chmodSync(negative, 0o604);
    const run = (extra: string[]) => as(testUser, ['--image', 'probe', '-M', `${negative}:/negative`, '--', '/bin/probe', '/negative'], { ...u, extra });
    expect(run(['-g', testUser, '-G', NEGATIVE_GROUP]).stdout).toBe('setgroups: Operation not permitted\nopen: Permission denied\n');
    // The same user outside the group reads it: the probe can tell.
    expect(run([]).stdout).toBe('setgroups: Operation not permitted\nopen: opened\n');
  });
});

describe('the fallback: owners flattened to the user, as before, with one warning naming the fix', () => {
  it('a user with no subordinate range imports, runs and removes an image with files of other owners', async () => {
    const u = dirOf(NO_RANGE_USER);
    const file = await tarball('flat.tar', owned);
    const imported = as(NO_RANGE_USER, ['image', 'import', file, 'owned'], u);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stderr).toBe(`tapbox: warning: ${file}: 4 of its files belong to other owners than root (uid 1000, gid 1000, gid 42, and 1 more); they are yours (root's in the box), as /etc/subuid and /etc/subgid give you (${NO_RANGE_USER}) no subordinate ids: add a range with sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${NO_RANGE_USER}; then remove the image (tapbox image rm) and import it again.\n`);
    const noRangeUid = Number(execFileSync('id', ['-u', NO_RANGE_USER], { encoding: 'utf8' }));
    expect(ownersUnder(rootfsOf(u.store)).filter(([, uid]) => uid !== noRangeUid)).toEqual([]);
    const run = as(NO_RANGE_USER, ['--image', 'owned', '--', '/bin/busybox', 'sh', '-c', 'busybox stat -c "%u:%g %n" /home/app/secret; cat /proc/self/uid_map'], u);
    expect(run.stderr).toBe('');
    expect(run.stdout.replace(/[ \t]+/g, ' ')).toBe('0:0 /home/app/secret\n 0 0 1\n');
    expect(as(NO_RANGE_USER, ['image', 'rm', 'owned'], u).code).toBe(0);
    expect(readdirSync(join(u.store, 'rootfs'))).toEqual([]);
  });

  it('a uid with no entry in /etc/passwd (newuidmap needs one) still runs a --rootfs, with its single id', () => {
    const dir = mkdtempSync(join(work, 'nameless-'));
    mkdirSync(join(dir, 'root', 'bin'), { recursive: true });
    writeFileSync(join(dir, 'root', 'bin', 'busybox'), busybox, { mode: 0o755 });
    mkdirSync(join(dir, 'cwd'));
    execFileSync('chown', ['-R', '4242:4242', dir]);
    const argv = ['--reuid=4242', '--regid=4242', '--clear-groups', process.execPath, cliPath, '--net', 'none', '--rootfs', join(dir, 'root'), '--', '/bin/busybox', 'cat', '/proc/self/uid_map'];
    const r = spawnSync('setpriv', argv, { cwd: join(dir, 'cwd'), env: { ...process.env, HOME: join(dir, 'cwd', 'home') }, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.replace(/[ \t]+/g, ' ')).toBe(' 0 0 1\n');
  });

  it('without newuidmap on PATH, the warning names the package to install', async () => {
    const u = dirOf(testUser);
    const empty = join(u.cwd, 'empty');
    mkdirSync(empty);
    const imported = as(testUser, ['image', 'import', await tarball('nohelper.tar', owned), 'owned'], { ...u, env: { ...u.env, PATH: empty } });
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stderr).toMatch(/4 of its files belong to other owners than root .* as newuidmap and newgidmap are not installed: install them \(Debian, Ubuntu: sudo apt install uidmap; Fedora: shadow-utils\); then remove the image/);
  });

  it('with newuidmap refusing, an import flattens the owners and a run falls back to the single map, each with a warning', async () => {
    const u = dirOf(testUser);
    const fakes = join(u.cwd, 'fakes');
    mkdirSync(fakes);
    for (const helper of ['newuidmap', 'newgidmap']) writeFileSync(join(fakes, helper), `#!/bin/sh\necho "${helper}: refused by the test" >&2\nexit 1\n`, { mode: 0o755 });
    const refusing = { ...u, env: { ...u.env, PATH: `${fakes}:/usr/bin:/bin` } };
    const file = await tarball('refused.tar', owned);
    const flat = as(testUser, ['image', 'import', file, 'flat'], refusing);
    expect(flat.code, flat.stderr).toBe(0);
    expect(flat.stderr).toMatch(/its files' owners were not kept \(mapping your subordinate ids failed: newuidmap: refused by the test\): they are yours \(root's in the box\); check that newuidmap and newgidmap are setuid root/);
    expect(ownersUnder(rootfsOf(u.store)).filter(([, uid]) => uid !== testIds.uid)).toEqual([]);
    expect(as(testUser, ['image', 'rm', 'flat'], u).code).toBe(0);

    expect(as(testUser, ['image', 'import', file, 'owned'], u).code).toBe(0);
    const run = as(testUser, ['--image', 'owned', '--', '/bin/busybox', 'sh', '-c', 'busybox stat -c "%u:%g %n" /home/app; cat /proc/self/uid_map'], refusing);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^tapbox: warning: newuidmap refused your subordinate uids \(newuidmap: refused by the test\), so files of the image owned by others than you show as nobody; install uidmap[^\n]*\n$/);
    expect(run.stdout.replace(/[ \t]+/g, ' ')).toBe('65534:65534 /home/app\n 0 0 1\n');
  });
});
