// Runs inside the VM lane's guests (Debian's 6.1 and 6.12, cgroup v2 delegated to the test user as
// systemd does): `tapbox doctor` tells the truth on kernels other than the development machine's.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cliPath, repoRoot, tapbox, testUser } from '../../helpers/tapbox.js';

describe('tapbox doctor on this kernel', () => {
  it('passes every check, the overlay and the TAP device tried for real, and finds the delegated cgroup v2', async () => {
    const r = await tapbox(['doctor']);
    expect(r.stdout).toMatch(/^ok {4}overlayfs in a user namespace \(for -x, --rootfs, -k\): -x sandboxes run$/m);
    expect(r.stdout).toMatch(/^ok {4}\/dev\/net\/tun usable \(for --net tap\): .*a sandbox gets its TAP device$/m);
    expect(r.stdout).toMatch(/^ok {4}read-only mode, seccomp and no_new_privs: /m);
    expect(r.stdout).toMatch(/^ok {4}subordinate ids \(for images' owners\): image uids 1-65536 are your \d+-\d+, gids 1-65536 your \d+-\d+$/m);
    expect(r.stdout).toMatch(/^ok {4}cgroup v2 delegation \(for whole-sandbox limits\): cgroup v2, \/user\.slice\/.* is yours \(controllers: .*memory.*\)$/m);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('All checks passed.');
    expect(r.code).toBe(0);
  });

  it('says limits are per process when the cgroup it runs in is not the user\'s', () => {
    const foreign = '/sys/fs/cgroup/not-delegated';
    mkdirSync(foreign);
    try {
      // Root moves the shell into a cgroup root owns, then becomes the test user there.
      const script = `echo $$ > ${foreign}/cgroup.procs && exec runuser -u ${testUser} -- ${process.execPath} ${cliPath} doctor`;
      const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', cwd: repoRoot });
      expect(r.stdout).toMatch(/^warn {2}cgroup v2 delegation \(for whole-sandbox limits\): your cgroup \/not-delegated is not delegated to you and no user systemd runs for you \(\/run\/user\/\d+\/systemd\/private is missing\), so --memory, --pids and --cpus hold per process, not for the sandbox as a whole; for whole-sandbox limits run tapbox on a cgroup v2 host in a cgroup delegated to you or with a user systemd running/m);
      expect(r.status).toBe(0);
    } finally {
      rmdirSync(foreign);
    }
  });
});
