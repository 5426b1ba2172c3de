// The filesystem and hardening options without a sandbox: sizes, the flags' order, the launcher flags.
import { afterAll, describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions } from '../../src/options/options.js';
import { hardeningArgs, resolveHardening, resolveEnv } from '../../src/options/hardening.js';
import { parseSize } from '../../src/units.js';
import { hardeningFromFlags, hardeningOptions, type HardeningFlags } from '../../src/cli/hardening-flags.js';
import { TapboxError } from '../../src/errors.js';

function parse(args: string[]) {
  const program = new Command().exitOverride().helpOption('--help');
  for (const option of hardeningOptions()) program.addOption(option);
  program.parse(args, { from: 'user' });
  return hardeningFromFlags(program.opts<HardeningFlags>());
}

describe('parseSize', () => {
  it('reads bytes and K/M/G/T suffixes (powers of 1024)', () => {
    expect(parseSize('4096', '--storage')).toBe(4096);
    expect(parseSize('512M', '--memory')).toBe(512 * 1024 ** 2);
    expect(parseSize('2G', '--memory')).toBe(2 * 1024 ** 3);
    expect(parseSize('1.5g', '--memory')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('64KiB', '--memory')).toBe(64 * 1024);
    expect(parseSize(1 << 20, '--memory')).toBe(1 << 20);
  });

  it('refuses anything else with one sentence', () => {
    for (const bad of ['lots', '-1G', '0', '12Q', '']) {
      expect(() => parseSize(bad, '--memory')).toThrowError(TapboxError);
    }
    expect(() => parseSize('lots', '--memory')).toThrowError('--memory "lots" is not a size; give bytes or a size like 512M or 2G.');
  });
});

describe('the flags', () => {
  it('keeps -M, -w, -k and -e in the order given across flags', () => {
    const o = parse(['-e', '/scratch', '-w', '/tmp:/scratch/rw', '-M', '/usr', '-k', '/etc:/e', '-M', '/bin']);
    expect(o.mounts).toEqual([
      { type: 'tmpfs', target: '/scratch' },
      { type: 'rw', source: '/tmp', target: '/scratch/rw' },
      { type: 'ro', source: '/usr' },
      { type: 'overlay', source: '/etc', target: '/e' },
      { type: 'ro', source: '/bin' },
    ]);
  });

  it('maps -x, -o DIR and -h DIR to modes, DIR (or -d) to the store', () => {
    expect(parse(['-x'])).toMatchObject({ mode: 'default', store: undefined });
    expect(parse(['-o', '/tmp'])).toMatchObject({ mode: 'custom', store: '/tmp' });
    expect(parse(['-h', '/tmp', '-d', '/var/tmp'])).toMatchObject({ mode: 'hermetic', store: '/var/tmp' });
    expect(parse([])).toMatchObject({ mode: undefined });
    expect(parse(['--expose-home'])).toMatchObject({ exposeHome: true });
    expect(() => parse(['-x', '-h', '/tmp'])).toThrowError('-x and -h each choose the filesystem mode; give one.');
  });

  it('turns limits, timeout, seccomp and capabilities into launcher flags', () => {
    const o = parse(['--memory', '1G', '--pids', '64', '--cpus', '1', '-T', '30', '-t', '0', '--seccomp', 'default',
      '--allow-syscall', 'keyctl', '--deny-syscall', 'ptrace', '--cap-drop', 'ALL', '--cap-add', 'NET_RAW']);
    const h = resolveHardening({ ...o, home: null }, '/tmp');
    expect(hardeningArgs(h)).toEqual(['--fs', 'read-only', '--memory', String(1024 ** 3), '--pids', '64', '--cpus', '1',
      '--timeout', '30', '--grace', '0', '--seccomp', 'default', '--allow-syscall', 'keyctl', '--deny-syscall', 'ptrace',
      '--cap-add', 'NET_RAW', '--cap-drop', 'ALL']);
  });
});

describe('a working directory that is the home or holds it', () => {
  const base = mkdtempSync(join(tmpdir(), 'tapbox-home-'));
  const home = join(base, 'home', 'someone');
  mkdirSync(join(home, 'project'), { recursive: true });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('is refused (the cwd would make all of it writable) unless exposeHome says so', () => {
    for (const cwd of [home, join(base, 'home'), base]) {
      expect(() => resolveHardening({ home }, cwd)).toThrowError(TapboxError);
      expect(() => resolveHardening({ home }, cwd)).toThrowError(/; cd into a project directory, or pass --expose-home if you mean it\.$/);
      expect(resolveHardening({ home, exposeHome: true }, cwd).exposedHome).toBe(home);
    }
    expect(() => resolveHardening({ home }, home)).toThrowError(`the working directory ${home} is your home, which`);
    expect(() => resolveHardening({ home }, base)).toThrowError(`the working directory ${base} holds your home ${home}, which`);
  });

  it('sees through a symlink to it, and leaves a project inside it or a sibling alone', () => {
    symlinkSync(home, join(base, 'link'));
    expect(() => resolveHardening({ home }, join(base, 'link'))).toThrowError(/is your home/);
    expect(resolveHardening({ home }, join(home, 'project')).exposedHome).toBeUndefined();
    mkdirSync(join(base, 'home', 'other'));
    expect(resolveHardening({ home }, join(base, 'home', 'other')).exposedHome).toBeUndefined();
  });

  it('is checked by the library too (the same options)', () => {
    expect(() => resolveOptions({ home, cwd: home })).toThrowError(/is your home/);
    expect(resolveOptions({ home, cwd: home, exposeHome: true }).hardening.exposedHome).toBe(home);
  });
});

describe('resolveEnv', () => {
  it('is the caller\'s environment by default, PATH only with clearEnv', () => {
    expect(resolveEnv(undefined, false)).toBe(process.env);
    expect(Object.keys(resolveEnv(undefined, true))).toEqual(['PATH']);
    expect(resolveEnv({ A: '1' }, true)).toEqual({ PATH: expect.any(String), A: '1' });
    expect(resolveEnv({ A: '1' }, false)).toEqual({ A: '1' });
  });
});
