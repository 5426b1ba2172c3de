// Image import, attacked: hostile archives built member by member (".." names, absolute names, a
// symlink out and a write through it, hard links out, device nodes, a symlink planted by one layer and
// written through by the next) are refused or neutralized with nothing written outside the store; and
// the formats themselves: whiteouts, a docker save archive, an OCI layout (directory and tar).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { images } from '../../src/images/index.js';
import { dockerSave, multiPlatformLayout, ociLayout, sha256, tarOf, type Member } from '../helpers/images.js';
import { hostPlatform } from '../../src/images/oci.js';
import { applyTar } from '../../src/images/unpack.js';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

let dir: string;
let store: string;
let outside: string;
let warnings: string[];
let before: string;

/** Every path under root with its type, mode and content: what "untouched" is compared against. */
function snapshot(root: string): string {
  const lines: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const what = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : st.isDirectory() ? 'dir' : readFileSync(p, 'utf8');
      lines.push(`${relative(root, p)} ${(st.mode & 0o7777).toString(8)} ${st.nlink} ${what}`);
      if (st.isDirectory() && !st.isSymbolicLink()) walk(p);
    }
  };
  walk(root);
  return lines.join('\n');
}

const opts = () => ({ store, onWarning: (m: string) => warnings.push(m) });

async function importTar(members: Member[], name = 'test', gzip = false) {
  const file = join(dir, `archive-${Math.random().toString(36).slice(2)}.tar${gzip ? '.gz' : ''}`);
  const bytes = await tarOf(members);
  writeFileSync(file, gzip ? gzipSync(bytes) : bytes);
  return images.importImage(file, name, opts());
}

/** Nothing left of a refused import: no image, no unpacked root, nothing in tmp/; outside as it was. */
function expectNothingKept() {
  expect(images.list({ store })).toEqual([]);
  expect(readdirSync(join(store, 'rootfs'))).toEqual([]);
  expect(readdirSync(join(store, 'tmp'))).toEqual([]);
  expect(snapshot(outside)).toBe(before);
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tapbox-images-'));
  store = join(dir, 'store');
  outside = join(dir, 'outside');
  mkdirSync(join(outside, 'etc'), { recursive: true });
  writeFileSync(join(outside, 'secret'), 'secret\n', { mode: 0o600 });
  writeFileSync(join(outside, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  warnings = [];
  before = snapshot(outside);
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('hostile archives', () => {
  it('refuses a compression bomb before it fills the disk: a file larger than the space left is never written', async () => {
    // 64 MiB of zeros gzip to ~64 KiB; the disk is made to have 16 MiB left (the check reads each file's header size).
    const bomb = gzipSync(await tarOf([{ name: 'small', data: 'ok' }, { name: 'zeros', data: Buffer.alloc(64 * 2 ** 20) }]));
    expect(bomb.length).toBeLessThan(2 ** 20);
    const root = join(dir, 'root');
    mkdirSync(root);
    const input = Readable.from([bomb]).pipe(createGunzip());
    await expect(applyTar(input, root, { source: 'bomb.tar.gz', whiteouts: true, spaceLeft: () => 16 * 2 ** 20 })).rejects.toThrow(
      'unpacking bomb.tar.gz stopped at "zeros": it would fill the disk (tapbox keeps 1 GiB free); free some space, or use a smaller image.',
    );
    expect(readFileSync(join(root, 'small'), 'utf8')).toBe('ok');
    expect(existsSync(join(root, 'zeros'))).toBe(false);
  });

  it('refuses a ".." member, including one that climbs out after a descent', async () => {
    for (const name of ['../escaped', 'a/../../escaped', `../outside/secret`]) {
      await expect(importTar([{ name: 'a', type: 'directory' }, { name, data: 'pwned' }])).rejects.toThrow(`refusing ${dir}`);
      await expect(importTar([{ name, data: 'pwned' }])).rejects.toThrow(/its member ".*" has a "\.\." component; an image must stay inside its own root/);
    }
    expect(existsSync(join(dir, 'escaped'))).toBe(false);
    expectNothingKept();
  });

  it('writes an absolute member inside the root (the leading "/" is dropped), never at that host path', async () => {
    const r = await importTar([{ name: join(outside, 'secret'), data: 'pwned' }, { name: '/etc/motd', data: 'hello' }]);
    const root = images.resolve('test', { store });
    expect(readFileSync(join(root, outside, 'secret'), 'utf8')).toBe('pwned');
    expect(readFileSync(join(root, 'etc', 'motd'), 'utf8')).toBe('hello');
    expect(r.name).toBe('test');
    expect(snapshot(outside)).toBe(before);
  });

  it('keeps a symlink pointing out as a symlink, but refuses to write through it', async () => {
    // Targets inside this test's directory only: were the check broken, the writes would land there.
    for (const target of [outside, '../../../../../../../..' + outside]) {
      await expect(importTar([{ name: 'link', type: 'symlink', linkname: target }, { name: 'link/secret', data: 'pwned' }])).rejects.toThrow(
        'its member "link/secret" would be written through the symlink "link"',
      );
      await expect(importTar([{ name: 'd', type: 'directory' }, { name: 'd/link', type: 'symlink', linkname: target }, { name: 'd/link/etc/passwd', data: 'pwned' }])).rejects.toThrow(
        'would be written through the symlink "d/link"',
      );
    }
    expectNothingKept();
    // A symlink out, alone, is a symlink inside the sandbox's root, where "/" is the image's.
    await importTar([{ name: 'link', type: 'symlink', linkname: outside }]);
    expect(readlinkSync(join(images.resolve('test', { store }), 'link'))).toBe(outside);
  });

  it('replaces a symlink with a later member of the same name instead of writing through it', async () => {
    await importTar([{ name: 'secret', type: 'symlink', linkname: join(outside, 'secret') }, { name: 'secret', data: 'mine' }]);
    const root = images.resolve('test', { store });
    expect(lstatSync(join(root, 'secret')).isFile()).toBe(true);
    expect(readFileSync(join(root, 'secret'), 'utf8')).toBe('mine');
    expect(snapshot(outside)).toBe(before);
  });

  it('refuses hard links to /etc/passwd, out of the directory, or through a symlink', async () => {
    const cases: [Member[], string][] = [
      [[{ name: 'passwd', type: 'link', linkname: '/etc/passwd' }], 'its member "passwd" is a hard link to "/etc/passwd", which is not a file inside the image'],
      [[{ name: 'passwd', type: 'link', linkname: join(outside, 'etc', 'passwd') }], `its member "passwd" is a hard link to "${join(outside, 'etc', 'passwd')}", which is not a file inside the image`],
      [[{ name: 'secret', type: 'link', linkname: '../outside/secret' }], 'its member "secret" is a hard link to "../outside/secret", which leaves the image'],
      [[{ name: 'out', type: 'symlink', linkname: outside }, { name: 'secret', type: 'link', linkname: 'out/secret' }], 'its member "secret" would be written through the symlink "out"'],
    ];
    for (const [members, message] of cases) await expect(importTar(members)).rejects.toThrow(message);
    expectNothingKept();
    expect(statSync('/etc/passwd').nlink).toBe(1);
    // A hard link to a file inside the image is kept.
    await importTar([{ name: 'etc/passwd', data: 'root:x:0:0::/:/bin/sh\n' }, { name: 'etc/passwd-', type: 'link', linkname: '/etc/passwd' }]);
    const root = images.resolve('test', { store });
    expect(statSync(join(root, 'etc', 'passwd-')).ino).toBe(statSync(join(root, 'etc', 'passwd')).ino);
  });

  it('skips device nodes and fifos with a warning, and imports the rest', async () => {
    await importTar([
      { name: 'dev', type: 'directory' },
      { name: 'dev/null', type: 'character-device' },
      { name: 'dev/sda', type: 'block-device' },
      { name: 'run/fifo', type: 'fifo' },
      { name: 'etc/os-release', data: 'ID=test\n' },
    ]);
    const root = images.resolve('test', { store });
    expect(readdirSync(join(root, 'dev'))).toEqual([]);
    expect(existsSync(join(root, 'run', 'fifo'))).toBe(false);
    expect(readFileSync(join(root, 'etc', 'os-release'), 'utf8')).toBe('ID=test\n');
    expect(warnings).toEqual([expect.stringMatching(/: skipped 3 members tapbox does not create: dev\/null \(a device node\), dev\/sda \(a device node\), run\/fifo \(a fifo\); the sandbox has its own \/dev\.$/)]);
  });

  it('drops setuid and setgid bits, keeps the permission bits and a directory\'s sticky bit', async () => {
    await importTar([{ name: 'bin/su', data: '#!/bin/sh\n', mode: 0o4755 }, { name: 'bin/wall', data: 'x', mode: 0o2755 }, { name: 'tmp', type: 'directory', mode: 0o1777 }, { name: 'etc/shadow', data: 's', mode: 0o640 }]);
    const root = images.resolve('test', { store });
    expect(statSync(join(root, 'bin', 'su')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(root, 'bin', 'wall')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(root, 'tmp')).mode & 0o7777).toBe(0o1777);
    expect(statSync(join(root, 'etc', 'shadow')).mode & 0o7777).toBe(0o640);
  });

  it('refuses a symlink planted by layer 1 and written through by layer 2', async () => {
    const layout = join(dir, 'layout');
    ociLayout(layout, [
      await tarOf([{ name: 'etc', type: 'directory' }, { name: 'etc/conf', type: 'symlink', linkname: outside }]),
      await tarOf([{ name: 'etc/conf/secret', data: 'pwned' }]),
    ], { gzip: true });
    await expect(images.importImage(layout, 'layered', opts())).rejects.toThrow('its member "etc/conf/secret" would be written through the symlink "etc/conf"');
    expect(readdirSync(join(store, 'rootfs'))).toEqual([]);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    expect(snapshot(outside)).toBe(before);
  });

  it('refuses a whiteout through a planted symlink, and one that names its own directory or the one above', async () => {
    const layer1 = await tarOf([{ name: 'etc', type: 'directory' }, { name: 'etc/conf', type: 'symlink', linkname: outside }, { name: 'etc/keep', data: 'keep' }]);
    const cases: [Member[], string][] = [
      [[{ name: 'etc/conf/.wh.secret' }], 'its member "etc/conf/.wh.secret" would be written through the symlink "etc/conf"'],
      [[{ name: 'etc/conf/.wh..wh..opq' }], 'its member "etc/conf/.wh..wh..opq" would be written through the symlink "etc/conf"'],
      [[{ name: '.wh...' }], 'its member ".wh..." is a whiteout of no file'],
      [[{ name: 'etc/.wh..' }], 'its member "etc/.wh.." is a whiteout of no file'],
      [[{ name: 'etc/.wh.' }], 'its member "etc/.wh." is a whiteout of no file'],
    ];
    for (const [i, [members, message]] of cases.entries()) {
      const layout = join(dir, `layout-${i}`);
      ociLayout(layout, [layer1, await tarOf(members)]);
      await expect(images.importImage(layout, 'whiteout', opts())).rejects.toThrow(message);
    }
    expect(readdirSync(join(store, 'rootfs'))).toEqual([]);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    expect(snapshot(outside)).toBe(before);
  });

  it('refuses a docker save archive whose layer path is a symlink to a host file', async () => {
    const layer = await tarOf([{ name: 'etc/motd', data: 'hi' }]);
    const save = join(dir, 'save');
    mkdirSync(save);
    // A real save archive, unpacked, then its layer.tar swapped for a symlink out.
    const file = join(dir, 'save.tar');
    writeFileSync(file, await dockerSave([layer], 'x:1'));
    const r = await images.importImage(file, 'ok', opts());
    expect(r.layers).toEqual([sha256(layer)]);
    const evil = await tarOf([
      { name: 'abc', type: 'directory' },
      { name: 'abc/layer.tar', type: 'symlink', linkname: join(outside, 'secret') },
      { name: 'config.json', data: JSON.stringify({ rootfs: { diff_ids: [] } }) },
      { name: 'manifest.json', data: JSON.stringify([{ Config: 'config.json', Layers: ['abc/layer.tar'] }]) },
    ]);
    writeFileSync(file, evil);
    await expect(images.importImage(file, 'evil', opts())).rejects.toThrow(`refusing ${file}: "abc/layer.tar" goes through a symlink to the absolute path ${join(outside, 'secret')}`);
    const relativeOut = await tarOf([
      { name: 'layer.tar', type: 'symlink', linkname: '../../../../../../../../../etc/passwd' },
      { name: 'manifest.json', data: JSON.stringify([{ Config: 'layer.tar', Layers: ['layer.tar'] }]) },
    ]);
    writeFileSync(file, relativeOut);
    await expect(images.importImage(file, 'evil', opts())).rejects.toThrow(`refusing ${file}: "layer.tar" points outside the archive`);
    expect(images.list({ store }).map((i) => i.name)).toEqual(['ok']);
    expect(snapshot(outside)).toBe(before);
  });

  it('refuses a layer that does not match its digest, or unpacks to another diff id', async () => {
    const layer = await tarOf([{ name: 'bin/sh', data: 'real' }]);
    const layout = join(dir, 'layout');
    ociLayout(layout, [layer]);
    const blob = join(layout, 'blobs', 'sha256', sha256(layer).slice(7));
    writeFileSync(blob, await tarOf([{ name: 'bin/sh', data: 'fake' }]));
    await expect(images.importImage(layout, 'tampered', opts())).rejects.toThrow(/^layer 1 of .* does not match its digest sha256:[0-9a-f]{64} \(got sha256:[0-9a-f]{64}, \d+ bytes\); the image is corrupt or was tampered with/);
    const other = join(dir, 'other');
    ociLayout(other, [layer], { diffIds: [sha256('something else')] });
    await expect(images.importImage(other, 'tampered', opts())).rejects.toThrow(/layer 1 \(sha256:[0-9a-f]{12}\) unpacks to sha256:[0-9a-f]{64}, not the sha256:[0-9a-f]{64} its image config names/);
    expect(readdirSync(join(store, 'rootfs'))).toEqual([]);
  });

  it('refuses a zstd layer in one sentence', async () => {
    const layout = join(dir, 'layout');
    const layer = await tarOf([{ name: 'a', data: 'a' }]);
    ociLayout(layout, [layer], { rawLayers: [Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64)])] });
    await expect(images.importImage(layout, 'zstd', opts())).rejects.toThrow(/layer 1 \(sha256:[0-9a-f]{12}\) is compressed with zstd, which tapbox can't unpack yet; use an image whose layers are gzip or uncompressed tar/);
  });
});

describe('image formats', () => {
  it('applies layers in order with whiteouts and opaque directories (OCI layout, gzip layers)', async () => {
    const layout = join(dir, 'layout');
    ociLayout(layout, [
      await tarOf([
        { name: 'a/1', data: '1' }, { name: 'a/2', data: '2' },
        { name: 'b/old', data: 'old' }, { name: 'b/sub/deep', data: 'deep' },
        { name: 'c/keep', data: 'keep' }, { name: 'gone', type: 'directory' }, { name: 'gone/x', data: 'x' },
      ]),
      await tarOf([
        { name: 'a/.wh.1' },
        { name: 'b/new', data: 'new' }, { name: 'b/.wh..wh..opq' }, { name: 'b/sub/mine', data: 'mine' },
        { name: '.wh.gone' },
        { name: 'c/.wh.never-there' },
      ]),
    ], { gzip: true });
    const r = await images.importImage(layout, 'layered:1', opts());
    const root = images.resolve('layered:1', { store });
    expect(snapshot(root)).toBe(['a 755 2 dir', 'a/2 644 1 2', 'b 755 3 dir', 'b/new 644 1 new', 'b/sub 755 2 dir', 'b/sub/mine 644 1 mine', 'c 755 2 dir', 'c/keep 644 1 keep'].join('\n'));
    expect(r.layers).toHaveLength(2);
    expect(r.config).toMatch(/^sha256:/);
    expect(warnings).toEqual([]);
  });

  it('imports a docker save archive (with a whiteout in its second layer), and an OCI layout as a tar', async () => {
    const base = await tarOf([{ name: 'etc/', type: 'directory' }, { name: 'etc/motd', data: 'base' }, { name: 'etc/issue', data: 'issue' }]);
    const top = await tarOf([{ name: 'etc/.wh.issue' }, { name: 'etc/motd', data: 'top' }]);
    const save = join(dir, 'image.tar');
    writeFileSync(save, await dockerSave([base, top], 'example/app:1'));
    const r = await images.importImage(save, 'app', opts());
    const root = images.resolve('app', { store });
    expect(readdirSync(join(root, 'etc'))).toEqual(['motd']);
    expect(readFileSync(join(root, 'etc', 'motd'), 'utf8')).toBe('top');
    expect(r.layers).toEqual([sha256(base), sha256(top)]);

    const layout = join(dir, 'layout');
    ociLayout(layout, [base, top], { gzip: true, refName: '2' });
    const layoutTar = join(dir, 'layout.tar');
    writeFileSync(layoutTar, await tarOf(readdirSync(layout, { recursive: true }).map(String).map((p): Member => (statSync(join(layout, p)).isDirectory() ? { name: p, type: 'directory' } : { name: p, data: readFileSync(join(layout, p)) }))));
    const o = await images.importImage(layoutTar, 'app:2', opts());
    expect(readFileSync(join(images.resolve('app:2', { store }), 'etc', 'motd'), 'utf8')).toBe('top');
    expect(o.id).not.toBe(r.id); // gzip layers: other digests, another image (the same files)
  });

  it('picks this host\'s platform from a multi-platform image, and names the platforms when it has none for it', async () => {
    const arch = hostPlatform().architecture;
    const layout = join(dir, 'multi');
    multiPlatformLayout(layout, { [arch]: await tarOf([{ name: 'arch', data: arch }]), mips64le: await tarOf([{ name: 'arch', data: 'mips64le' }]) });
    await images.importImage(layout, 'multi', opts());
    expect(readFileSync(join(images.resolve('multi', { store }), 'arch'), 'utf8')).toBe(arch);
    const other = join(dir, 'other');
    multiPlatformLayout(other, { mips64le: await tarOf([{ name: 'arch', data: 'mips64le' }]), riscv64: await tarOf([{ name: 'arch', data: 'riscv64' }]) });
    await expect(images.importImage(other, 'other', opts())).rejects.toThrow(`${other} has no image for linux/${arch} (it has linux/mips64le, linux/riscv64); use an image built for this platform.`);
  });

  it('imports a rootfs tarball (.tar.gz), keeps a name per image, shares content, and removes it all', async () => {
    const members: Member[] = [{ name: './', type: 'directory' }, { name: './bin/', type: 'directory' }, { name: './bin/tool', data: '#!/bin/sh\necho hi\n', mode: 0o755 }];
    const a = await importTar(members, 'one', true);
    const b = await importTar(members, 'two', true);
    expect(a.id).toBe(b.id);
    expect(images.resolve('one', { store })).toBe(images.resolve('two', { store }));
    expect(images.list({ store }).map((i) => i.name)).toEqual(['one', 'two']);
    expect(readFileSync(join(images.resolve('one', { store }), 'bin', 'tool'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
    expect(statSync(store).mode & 0o777).toBe(0o700);
    images.remove('one', { store });
    expect(existsSync(images.resolve('two', { store }))).toBe(true);
    images.remove('two', { store });
    expect(readdirSync(join(store, 'rootfs'))).toEqual([]);
    expect(readdirSync(join(store, 'blobs', 'sha256'))).toEqual([]);
    expect(() => images.resolve('two', { store })).toThrow('there is no image "two"; run tapbox image ls to see your images (tapbox image pull or import adds one).');
    expect(() => images.remove('two', { store })).toThrow('there is no image "two"; run tapbox image ls');
  });

  it('resolves a short name to the full reference a pulled image is stored under', async () => {
    const layout = join(dir, 'layout');
    ociLayout(layout, [await tarOf([{ name: 'x', data: 'x' }])]);
    await images.importImage(layout, 'docker.io/library/busybox:latest', opts());
    expect(images.resolve('busybox', { store })).toBe(images.resolve('docker.io/library/busybox:latest', { store }));
    expect(() => images.resolve('busybox:1', { store })).toThrow('there is no image "busybox:1"');
  });

  it('refuses what is not an image, and a bad name, in one sentence', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await expect(images.importImage(empty, 'x', opts())).rejects.toThrow(/is a directory but neither an OCI image layout \(oci-layout, index\.json\) nor a docker save archive \(manifest\.json\); pass one of those, or a rootfs tarball\.$/);
    await expect(images.importImage(join(dir, 'missing.tar'), 'x', opts())).rejects.toThrow(/missing\.tar does not exist; pass a tarball/);
    await expect(images.importImage(empty, '../x', opts())).rejects.toThrow('"../x" can\'t name an image');
    const garbage = join(dir, 'garbage.tar');
    writeFileSync(garbage, Buffer.alloc(1024, 'x'));
    await expect(images.importImage(garbage, 'x', opts())).rejects.toThrow(/^unpacking .*garbage\.tar failed \(.+\); pass a complete \.tar or \.tar\.gz archive, and check that the disk has room\.$/);
    const truncated = join(dir, 'truncated.tar.gz');
    writeFileSync(truncated, gzipSync(await tarOf([{ name: 'a', data: 'x'.repeat(10000) }])).subarray(0, 40));
    await expect(images.importImage(truncated, 'x', opts())).rejects.toThrow(/^unpacking .*truncated\.tar\.gz failed \(unexpected end of file\); pass a complete/);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
  });
});
