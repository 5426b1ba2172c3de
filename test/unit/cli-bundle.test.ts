// The `tapbox` command runs the CLI bundle through V8's code cache (src/cli/bin.cts,
// scripts/bundle-cli.mjs): the cache must be one V8 takes, and one it refuses must cost nothing but time.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { cliPath } from '../helpers/tapbox.js';

const bundle = join(dirname(cliPath), 'tapbox.cjs');
const wrapped = () => Module.wrap(readFileSync(bundle, 'utf8').replace(/^#!.*/, ''));
const help = (bin: string) => spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('the CLI bundle and its code cache', () => {
  it('has a cache that this node accepts for the bundle as built', () => {
    const script = new Script(wrapped(), { filename: bundle, cachedData: readFileSync(`${bundle}.cache`) });
    expect(script.cachedDataRejected).toBe(false);
  });

  it('is a command a symlink on the PATH can run (README: ln -s …/bin.cjs ~/.local/bin/tapbox)', () => {
    const dir = mkdtempSync(join(dirname(dirname(cliPath)), 'cli-link-test-'));
    dirs.push(dir);
    symlinkSync(cliPath, join(dir, 'tapbox'));
    const r = spawnSync('tapbox', ['--help'], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(help(cliPath).stdout);
  });

  it('runs the same with a cache V8 refuses (another build, another node)', () => {
    // A directory beside the real one: the bundle finds the package root and the rest of dist/ relative to itself.
    const dir = mkdtempSync(join(dirname(dirname(cliPath)), 'cli-cache-test-'));
    dirs.push(dir);
    copyFileSync(cliPath, join(dir, 'bin.cjs'));
    copyFileSync(bundle, join(dir, 'tapbox.cjs'));
    // What a cache for another source looks like to V8: the bundle's own cache, made for a longer script.
    const other = new Script(`${wrapped()}\n// another build`, { filename: bundle }).createCachedData();
    writeFileSync(join(dir, 'tapbox.cjs.cache'), other);
    expect(new Script(wrapped(), { filename: bundle, cachedData: other }).cachedDataRejected).toBe(true);
    const ours = help(cliPath);
    const theirs = help(join(dir, 'bin.cjs'));
    expect(ours.status).toBe(0);
    expect(theirs.stderr).toBe('');
    expect(theirs.status).toBe(0);
    expect(theirs.stdout).toBe(ours.stdout);
  });
});
