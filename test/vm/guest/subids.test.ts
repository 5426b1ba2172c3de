// Runs inside the VM lane's guests: images keep their owners as the test user's subordinate ids on
// Debian's 6.1 and 6.12. newuidmap and newgidmap come from the host's root, shared read-only over 9p,
// where they keep their setuid bit; /etc/subuid and /etc/subgid are the host's too (.ci/run gives the
// test user a range there). test/integration/subids.test.ts has the attacks and the fallbacks.
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { asTestUser, repoRoot, tapbox, testIds, testUser, userTempDir } from '../../helpers/tapbox.js';
import { tarOf } from '../../helpers/images.js';

const launcher = join(repoRoot, 'build', 'Release', 'tapbox-launcher');

function rangeOf(file: string): [number, number] {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${testUser}:`));
  if (!line) throw new Error(`${file} gives ${testUser} no range: the host's .ci/run adds one (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${testUser})`);
  return [Number(line.split(':')[1]), Number(line.split(':')[2])];
}

describe("images keep their owners as the user's subordinate ids on this kernel", () => {
  it('newuidmap, setuid root on the 9p root, maps the range into a bare user namespace', () => {
    const [uid] = rangeOf('/etc/subuid');
    const [gid] = rangeOf('/etc/subgid');
    expect(lstatSync('/usr/bin/newuidmap').mode & 0o4000, 'newuidmap lost its setuid bit on the guest\'s root').not.toBe(0);
    const argv = asTestUser([launcher, '--userns-only', '--subuid', `${uid}:65536`, '--subgid', `${gid}:65536`, '--', '/bin/cat', '/proc/self/uid_map']);
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: '/' });
    expect(r.stderr).toBe('');
    expect(r.stdout.replace(/[ \t]+/g, ' ')).toBe(` 0 ${testIds.uid} 1\n 1 ${uid} 65536\n`);
  });

  it('an image with files of uid 1000 and gid 42 shows them so in the box; image rm leaves nothing', async () => {
    const { dir, cleanup } = userTempDir('tapbox-vm-subids-');
    try {
      const env = { ...process.env, XDG_DATA_HOME: join(dir, 'data') };
      const file = join(dir, 'owned.tar');
      writeFileSync(file, await tarOf([
        { name: 'bin/busybox', data: readFileSync('/bin/busybox'), mode: 0o755 },
        { name: 'home/app', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
        { name: 'home/app/secret', data: 'mine\n', mode: 0o600, uid: 1000, gid: 42 },
      ]));
      chmodSync(file, 0o644);
      const imported = await tapbox(['image', 'import', file, 'owned'], { cwd: dir, env });
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stderr).toBe('');
      const run = await tapbox(['--image', 'owned', '--', '/bin/busybox', 'stat', '-c', '%u:%g %n', '/home/app', '/home/app/secret'], { cwd: dir, env });
      expect(run.stderr).toBe('');
      expect(run.stdout).toBe('1000:1000 /home/app\n1000:42 /home/app/secret\n');
      expect((await tapbox(['image', 'rm', 'owned'], { cwd: dir, env })).code).toBe(0);
      expect(readdirSync(join(dir, 'data', 'tapbox', 'rootfs'))).toEqual([]);
    } finally {
      cleanup();
    }
  });
});
