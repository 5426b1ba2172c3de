// Reading the user's subordinate ranges as newuidmap does (by name or by uid), and what is said when
// there are none (src/idmap/subids.ts).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rangeOf, subordinateArgs, subordinateIds } from '../../src/idmap/subids.js';

const dir = mkdtempSync(join(tmpdir(), 'tapbox-subids-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
}

describe('rangeOf', () => {
  it('finds the user by name or by uid, the first usable line, and caps the range at 65536 ids', () => {
    expect(rangeOf('bob:200000:65536\nalice:100000:65536\n', 'alice', 1000)).toEqual({ start: 100000, count: 65536 });
    expect(rangeOf('1000:300000:10\n', 'alice', 1000)).toEqual({ start: 300000, count: 10 });
    expect(rangeOf('alice:100000:1000000\n', 'alice', 1000)).toEqual({ start: 100000, count: 65536 });
    expect(rangeOf('alice:0:65536\nalice:x:1\nalice:5:0\nalice:400000:5\n', 'alice', 1000)).toEqual({ start: 400000, count: 5 });
  });

  it('gives none for another user, a range past 2^32-1, or an empty file', () => {
    expect(rangeOf('alicea:100000:65536\nalic:1:2\n', 'alice', 1000)).toBeNull();
    expect(rangeOf('alice:4294967290:65536\n', 'alice', 1000)).toBeNull();
    expect(rangeOf('', 'alice', 1000)).toBeNull();
  });
});

describe('subordinateIds', () => {
  const { username } = userInfo();

  it('needs newuidmap and newgidmap on the path, then a range in both files', () => {
    const subuid = file('subuid', `${username}:100000:65536\n`);
    const subgid = file('subgid', `${username}:200000:65536\n`);
    expect(subordinateIds({ subuid, subgid, path: dir }).missing).toBe('newuidmap and newgidmap are not installed: install them (Debian, Ubuntu: sudo apt install uidmap; Fedora: shadow-utils)');
    for (const helper of ['newuidmap', 'newgidmap']) {
      writeFileSync(join(dir, helper), '#!/bin/sh\n');
      chmodSync(join(dir, helper), 0o755);
    }
    const found = subordinateIds({ subuid, subgid, path: dir });
    expect(found.ids).toEqual({ uid: { start: 100000, count: 65536 }, gid: { start: 200000, count: 65536 } });
    expect(subordinateArgs(found.ids!)).toEqual(['--subuid', '100000:65536', '--subgid', '200000:65536']);
    expect(subordinateIds({ subuid, subgid: file('none', ''), path: dir }).missing).toBe(`/etc/subgid gives you (${username}) no subordinate ids: add a range with sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${username}`);
    expect(subordinateIds({ subuid: join(dir, 'missing'), subgid: join(dir, 'missing'), path: dir }).missing).toMatch(/^\/etc\/subuid and \/etc\/subgid give you/);
  });
});
