// Runs inside the VM lane's guests (cgroup v2 delegated to the test user): a box's cgroup holds what
// `exec` starts in it, and `rm` of a box whose supervisor was SIGKILLed removes its cgroup.
// test/integration/boxes.test.ts covers the rest on a host without a delegated cgroup.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapbox, userTempDir } from '../../helpers/tapbox.js';

describe('boxes on cgroup v2', () => {
  let scratch: { dir: string; cleanup: () => void };
  let env: NodeJS.ProcessEnv;
  const box = (args: string[]) => tapbox(args, { env, cwd: scratch.dir, timeoutMs: 240_000 });
  const record = async (name: string) => JSON.parse((await box(['inspect', name])).stdout).record as { supervisorPid: number; cgroup: string | null };

  beforeAll(() => {
    scratch = userTempDir('tapbox-boxes-');
    env = { ...process.env, XDG_STATE_HOME: join(scratch.dir, 'state'), XDG_RUNTIME_DIR: join(scratch.dir, 'run') };
  });
  afterAll(() => scratch?.cleanup());

  it("exec joins the box's cgroup: it sees itself at the root of the box's cgroup namespace, and --pids counts it", async () => {
    expect((await box(['run', '-d', '--name', 'limited', '--pids', '10', '--', 'sleep', '1000'])).code).toBe(0);
    const { cgroup } = await record('limited');
    expect(cgroup).toMatch(/\/tapbox-\d+-[0-9a-f]+$/);
    expect(readFileSync(join(cgroup!, 'pids.max'), 'utf8').trim()).toBe('10');
    const inside = await box(['exec', 'limited', '--', 'cat', '/proc/self/cgroup']);
    expect(inside.stdout).toBe('0::/\n');
    const bomb = await box(['exec', 'limited', '--', 'sh', '-c', 'for i in $(seq 20); do sleep 5 & done 2>/dev/null; ls /proc | grep -c "^[0-9]"']);
    expect(Number(bomb.stdout.trim())).toBeLessThanOrEqual(10);
    expect((await box(['rm', '-f', 'limited'])).code).toBe(0);
    expect(existsSync(cgroup!)).toBe(false);
  });

  it('rm removes the cgroup of a box whose supervisor was SIGKILLed', async () => {
    expect((await box(['run', '-d', '--name', 'orphan', '--memory', '256M', '--', 'sleep', '1000'])).code).toBe(0);
    const { supervisorPid, cgroup } = await record('orphan');
    expect(existsSync(cgroup!)).toBe(true);
    process.kill(supervisorPid, 'SIGKILL');
    for (let i = 0; i < 200 && /^populated 1$/m.test(readFileSync(join(cgroup!, 'cgroup.events'), 'utf8')); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await box(['ps'])).stdout).toMatch(/^orphan\s+dead\s/m);
    expect((await box(['rm', 'orphan'])).code).toBe(0);
    expect(existsSync(cgroup!)).toBe(false);
  });
});
