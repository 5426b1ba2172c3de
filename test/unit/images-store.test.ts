// The image store's safety, attacked in-process: a root a sandbox holds a lease on (the flock that
// src/supervisor/root-lease.ts takes) is never removed, by `remove`, by an image imported again under
// its name, or by collecting; a sandbox that looked a root up just before it was removed can't take a
// lease on it; collecting never runs under an import or pull in progress; and a lock held by a tapbox
// that was killed locks nothing. (With real boxes, as the unprivileged user: test/integration/boxes.test.ts.)
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { images } from '../../src/images/index.js';
import { ImageStore } from '../../src/images/store.js';
import { leaseRoot } from '../../src/supervisor/root-lease.js';
import { requireNative } from '../../native/addon/index.js';
import { tarOf } from '../helpers/images.js';

let dir: string;
let store: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tapbox-store-'));
  store = join(dir, 'store');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Imports a one-file rootfs tarball (its content: text) as name; returns its unpacked root. */
async function importText(name: string, text: string): Promise<string> {
  const file = join(dir, `${name.replace(/\W/g, '_')}-${text}.tar`);
  writeFileSync(file, await tarOf([{ name: 'motd', data: text }]));
  await images.importImage(file, name, { store });
  return images.resolve(name, { store });
}

const roots = () => readdirSync(join(store, 'rootfs'));
const blobs = () => readdirSync(join(store, 'blobs', 'sha256'));
const IN_USE = 'the image web is the root of a sandbox that is running; stop or remove that box first (tapbox ps lists them), or let the run end.';

describe('the lease on a root', () => {
  it('images.remove() is refused while a sandbox holds the lease, and keeps the name; once it is gone, the root goes', async () => {
    const root = await importText('web', 'one');
    const lease = leaseRoot(root);
    expect(() => images.remove('web', { store })).toThrow(IN_USE);
    expect(images.list({ store }).map((r) => r.name)).toEqual(['web']);
    expect(existsSync(join(root, 'motd'))).toBe(true);
    closeSync(lease);
    expect(images.remove('web', { store }).name).toBe('web');
    expect(roots()).toEqual([]);
    expect(blobs()).toEqual([]);
  });

  it('another name on the same root may go while the root is in use: the root stays for the name left', async () => {
    const root = await importText('web', 'one');
    await importText('web-copy', 'one');
    const lease = leaseRoot(root);
    expect(images.remove('web-copy', { store }).name).toBe('web-copy');
    expect(() => images.remove('web', { store })).toThrow(IN_USE);
    closeSync(lease);
  });

  it('an image imported again under the name leaves the old root to its sandbox; collect removes it once the lease is gone', async () => {
    const old = await importText('web', 'one');
    const lease = leaseRoot(old);
    const fresh = await importText('web', 'two');
    expect(fresh).not.toBe(old);
    expect(roots().sort()).toEqual([old, fresh].map((r) => r.split('/').pop()).sort());
    images.collect({ store });
    expect(existsSync(join(old, 'motd'))).toBe(true); // still leased: kept as it was
    closeSync(lease);
    images.collect({ store });
    expect(existsSync(old)).toBe(false);
    expect(roots()).toEqual([fresh.split('/').pop()]);
    expect(blobs()).toHaveLength(1); // the old image's layer went with it
  });

  it('a sandbox that looked the root up before it was removed cannot take a lease on it', async () => {
    const root = await importText('web', 'one');
    expect(images.remove('web', { store }).name).toBe('web');
    expect(() => leaseRoot(root)).toThrow(`can't open the sandbox's root ${root} (ENOENT)`);
    // The same image imported again: the root at that path is the new one, and its lease holds.
    expect(await importText('web', 'one')).toBe(root);
    const lease = leaseRoot(root);
    expect(() => images.remove('web', { store })).toThrow(IN_USE);
    closeSync(lease);
  });

  it('no lease while the store holds the root to remove it (its exclusive flock)', async () => {
    const root = await importText('web', 'one');
    const remover = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
    expect(requireNative().tryLock(remover, true)).toBe(true);
    expect(() => leaseRoot(root)).toThrow(`the sandbox's root ${root} was removed as the sandbox started (tapbox image rm, or the image imported or pulled again); run it again.`);
    closeSync(remover);
    closeSync(leaseRoot(root));
  });
});

describe('collecting', () => {
  it('removes unreferenced blobs and leftovers in tmp/, but never while an import or pull runs', async () => {
    await importText('web', 'one');
    const kept = blobs();
    const s = ImageStore.open(store);
    const orphan = join(store, 'blobs', 'sha256', 'a'.repeat(64));
    await s.working(async () => {
      // What a pull in progress has written so far, not indexed yet.
      writeFileSync(orphan, 'layer 1 of 2');
      const partial = s.tempDir('blob');
      writeFileSync(join(partial, 'data'), 'half of layer 2');
      ImageStore.open(store).collect(); // another tapbox's image rm
      images.collect({ store });
      expect(existsSync(orphan)).toBe(true);
      expect(existsSync(join(partial, 'data'))).toBe(true);
    });
    // The pull failed without saving a record: the next collect takes what it left.
    images.collect({ store });
    expect(blobs()).toEqual(kept);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
  });

  it('makes no store where there is none', () => {
    images.collect({ store });
    expect(existsSync(store)).toBe(false);
  });

  it('a lock held by a tapbox that was killed locks nothing', async () => {
    await importText('web', 'one');
    const addon = join(import.meta.dirname, '..', '..', 'build', 'Release', 'tapbox_native.node');
    const holder = spawn(process.execPath, ['-e', `
      const fs = require('node:fs');
      for (const name of ['index.lock', 'work.lock']) {
        if (!require(${JSON.stringify(addon)}).tryLock(fs.openSync(${JSON.stringify(store)} + '/' + name, 'r+'), true)) process.exit(1);
      }
      console.log('locked');
      setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((ok) => holder.stdout!.once('data', ok));
    holder.kill('SIGKILL');
    await new Promise((ok) => holder.once('exit', ok));
    expect(images.remove('web', { store }).name).toBe('web');
    expect(roots()).toEqual([]);
  });
});
