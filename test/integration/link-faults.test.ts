// Our TCP against the Linux kernel's through a bad wire: faults injected in our link layer (drop,
// duplicate, reorder, corrupt a share of the frames, both ways). Transfers must arrive byte-identical
// and finish.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { asTestUser, repoRoot } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');
const driver = join(repoRoot, 'test', 'helpers', 'library-run.mjs');
const faults = { drop: 0.01, duplicate: 0.01, reorder: 0.02, corrupt: 0.005 };
const SIZE = 200 << 20;

function throughBadWire(args: string[], seed: number): Promise<{ code: number | null; result: Record<string, unknown> }> {
  const options = { allow: ['198.18.0.0/15'], summary: false, linkFaults: { inbound: faults, outbound: faults, seed } };
  const argv = asTestUser([process.execPath, driver, JSON.stringify(options), process.execPath, probe, ...args]);
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, result: JSON.parse(out.trim().split('\n').pop() || '{}') as Record<string, unknown> }));
  });
}

describe.runIf(canMakeTestHost)('transfers through a lossy, duplicating, reordering, corrupting link', () => {
  let host: TestHost;
  beforeAll(async () => {
    host = new TestHost();
    await host.start('services.mjs', ['--tcp-sink', '9', '--tcp-source', '19']);
  });
  afterAll(() => host?.destroy());

  it('uploads 200 MB byte-identical', async () => {
    const { code, result } = await throughBadWire(['tcp-upload', host.ip4, '9', String(SIZE)], 7);
    expect(code).toBe(0);
    expect(result).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
  }, 300_000);

  it('downloads 200 MB byte-identical', async () => {
    const { code, result } = await throughBadWire(['tcp-download', host.ip4, '19', String(SIZE)], 11);
    expect(code).toBe(0);
    expect(result).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
  }, 300_000);
});
