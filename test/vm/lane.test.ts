// The VM lane: boots each kernel that test/vm/kernels.sh unpacked (Debian 12's 6.1 and 6.12) under
// QEMU with this machine's root shared read-only, and runs the portability subset of the suite
// (vitest.guest.config.ts) inside, as root there with tapbox run as the unprivileged test user, on
// cgroup v2 delegated as systemd does (guest.sh). Our users' kernels are not this machine's: this
// is where code that touches the kernel proves it runs on theirs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/tapbox.js';

const vmDir = process.env.TAPBOX_VM_DIR ?? '/var/cache/tapbox-vm';
const kernels = existsSync(vmDir)
  ? readdirSync(vmDir).filter((release) => existsSync(join(vmDir, release, 'boot', `vmlinuz-${release}`))).sort()
  : [];
const hasQemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).status === 0;
const missing = !hasQemu ? 'qemu-system-x86_64 is not installed' : kernels.length === 0 ? `no kernels in ${vmDir}` : null;
const guestCommand = [
  `cd ${repoRoot}`,
  'export CI=true NO_COLOR=1 FORCE_COLOR=0',
  'node node_modules/vitest/vitest.mjs run --config test/vm/vitest.guest.config.ts --configLoader runner --reporter=verbose',
].join(' && ');

function boot(kernel: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveBoot) => {
    const child = spawn('bash', [join(repoRoot, 'test/vm/run.sh'), join(vmDir, kernel), guestCommand], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => resolveBoot({ code, output }));
  });
}

// Lines worth reading in a failed run: the failures and vitest's totals.
function digest(output: string): string {
  const lines = output.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split('\n');
  const failed = lines.filter((l) => /^\s*(×|FAIL|AssertionError|Error:)|Test Files|Tests\s/.test(l));
  return failed.slice(0, 60).join('\n') || lines.slice(-40).join('\n');
}

describe('VM lane: the portability subset on other kernels', () => {
  if (missing && process.env.CI) {
    it('has QEMU and the kernels (CI installs them: bash test/vm/kernels.sh)', () => {
      expect.fail(`the VM lane can't run: ${missing}; .ci/run installs qemu-system-x86 and runs test/vm/kernels.sh`);
    });
    return;
  }
  if (missing) {
    console.warn(`VM lane skipped: ${missing} (install qemu-system-x86 and run \`sudo bash test/vm/kernels.sh\`, then \`npm run test:vm\`).`);
  }
  for (const kernel of kernels) {
    // The kernels boot side by side: each guest keeps about one of the host's cores busy.
    it.concurrent.skipIf(missing !== null)(`passes on Linux ${kernel}`, async () => {
      const started = Date.now();
      const { code, output } = await boot(kernel);
      console.log(`VM lane, Linux ${kernel}: exit ${code} after ${Math.round((Date.now() - started) / 1000)} s\n${digest(output)}`);
      expect(code, `the portability subset failed on Linux ${kernel}:\n${digest(output)}`).toBe(0);
    }, 45 * 60_000);
  }
});
