// A box's output log: the size cap (rotation to FILE.1), --tail, and following across a rotation.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { captureOutput, followLog, readLog } from '../../src/boxes/logs.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tapbox-logs-'));
  dirs.push(dir);
  return join(dir, 'output.log');
}

const line = (c: string) => `${c.repeat(59)}\n`;
const tick = () => new Promise((r) => setImmediate(r));

describe('box output log', () => {
  it('keeps at most the cap in FILE and the previous file in FILE.1; stdout and stderr interleave as they come', async () => {
    const path = scratch();
    const [out, err] = [new PassThrough(), new PassThrough()];
    captureOutput(path, [out, err], 100);
    out.write(line('a'));
    await tick();
    err.write(line('b'));
    await tick();
    out.write(line('c'));
    await tick();
    expect(readLog(path)).toBe(line('b') + line('c'));
    expect(statSync(path).size).toBe(60);
    expect(statSync(`${path}.1`).size).toBe(60);
    expect(readLog(path, 1)).toBe(line('c'));
    expect(readLog(path, 5)).toBe(line('b') + line('c'));
    expect(readLog(path, 0)).toBe('');
  });

  it('follows what is appended, from the start of the new file after a rotation, and stops once the writer is done', async () => {
    const path = scratch();
    const out = new PassThrough();
    captureOutput(path, [out], 100);
    out.write(line('a'));
    await tick();
    let seen = '';
    let writerDone = false;
    const following = followLog(path, statSync(path).size, (chunk) => (seen += chunk.toString()), () => writerDone);
    out.write(line('b')); // rotates: FILE.1 holds a, FILE holds b
    await tick();
    await new Promise((r) => setTimeout(r, 300));
    out.write(line('c'));
    await tick();
    writerDone = true;
    await following;
    expect(seen).toBe(line('b') + line('c'));
  });
});
