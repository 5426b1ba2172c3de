// The user's terminals, black-box through the CLI as the unprivileged user (issue 11, part 4): the
// command never gets the terminal tapbox was started from, only a pty of its own in place of each of
// stdin, stdout, stderr that is one; and no mode shows the host's devpts, where the user's other
// terminals are open to the same uid. The outer terminals are ptys the test user opens
// (test/helpers/tty-run.py); test/helpers/terminal-attack.py is what runs inside.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { asTestUser, cliPath, repoRoot, userTempDir } from '../helpers/tapbox.js';

interface TtyRun {
  code: number;
  terminal: string;
  stdout: string;
  stderr: string;
  rows: number;
  cols: number;
  pending: string;
  canonical: boolean;
  other?: { path: string; output: string; pending: string };
}

interface Attack {
  own: Record<string, { read: string; resized: boolean | string }>;
  opened: { path: string; read: string }[];
  tried: number;
  mknod: Record<string, string>;
}

/** Runs `tapbox ARGS` under tty-run.py (env: which fds are the terminal, what is typed, ...). */
function ttyRun(args: string[], env: Record<string, string>, cwd: string): TtyRun {
  const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'tty-run.py'), process.execPath, cliPath, ...args]);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd, env: { ...process.env, ...env }, timeout: 90_000, maxBuffer: 64 << 20 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as TtyRun;
}

const attackScript = join(repoRoot, 'test', 'helpers', 'terminal-attack.py');
const SECRET = 's3cret-typed-outside\n';
const PASSWORD = 'hunter2-other-terminal\n';

const cleanups: (() => void)[] = [];
afterAll(() => cleanups.forEach((cleanup) => cleanup()));

/**
 * A working directory owned by the test user, holding a copy of terminal-attack.py (visible in every
 * mode: the checkout may sit in a home that -x hides); `attack()` reads what it found there.
 */
function scratch(): { dir: string; attack: () => Attack } {
  const { dir, cleanup } = userTempDir('tapbox-tty-');
  cleanups.push(cleanup);
  copyFileSync(attackScript, join(dir, 'terminal-attack.py'));
  return { dir, attack: () => JSON.parse(readFileSync(join(dir, 'attack.json'), 'utf8')) as Attack };
}

describe('the terminal tapbox was started from', () => {
  it.each([['read-only', []], ['-x', ['-x']]] as const)(
    'with stdout on a terminal and stdin not (%s): the command can neither read what is typed there nor resize it',
    (_, mode) => {
      const { dir, attack } = scratch();
      const r = ttyRun([...mode, '--', 'sh', '-c', `python3 terminal-attack.py; echo "attack-ran"; test -t 0 || echo stdin-not-tty`], { TTY_FDS: '1,2', TTY_TYPED: SECRET, TTY_NOECHO: '1', STDIN_DATA: '' }, dir);
      expect(r.code, r.terminal).toBe(0);
      expect(r.terminal).toContain('attack-ran');
      expect(r.terminal).toContain('stdin-not-tty');
      const a = attack();
      // fd 1 and 2 are a terminal inside (the sandbox's own pty): reopened for reading, it has nothing.
      expect(Object.keys(a.own)).toEqual(['1', '2']);
      expect(a.own['1']!.read).toBe('');
      expect(a.opened).toEqual([]);
      expect(a.tried).toBeGreaterThan(0);
      expect(JSON.stringify(a)).not.toContain('s3cret');
      // What was typed outside is still there, unread; the terminal keeps its size.
      expect(r.pending).toBe(SECRET);
      expect([r.rows, r.cols]).toEqual([40, 100]);
    },
  );

  it('with stdin on a terminal and stdout not: typing reaches the command (echoed on the terminal), the terminal is restored', () => {
    const { dir } = scratch();
    const r = ttyRun(['--', 'sh', '-c', 'read line; echo "got $line"; test -t 0 && echo stdin-tty; test -t 1 || echo stdout-not-tty; stty size'], { TTY_FDS: '0', TTY_TYPED: 'typed words\n', TTY_NOECHO: '1' }, dir);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe('got typed words\nstdin-tty\nstdout-not-tty\n40 100\n');
    // The terminal has echo off: what shows is the pty's own echo, relayed.
    expect(r.terminal).toContain('typed words');
    expect(r.pending).toBe('');
    expect(r.canonical).toBe(true); // out of raw mode again
  });

  it('as a background job with stdin on the terminal: tapbox leaves the terminal alone (no SIGTTOU stop), the command still gets a pty', () => {
    const { dir } = scratch();
    // A shell with job control runs tapbox in the background: the terminal's foreground stays the shell's.
    const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'tty-run.py'), 'sh', '-c', 'set -m; "$@" & wait $!', 'sh', process.execPath, cliPath,
      '--', 'sh', '-c', 'test -t 0 && echo stdin-tty; echo done']);
    const run = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: dir, env: { ...process.env, TTY_FDS: '0' }, timeout: 90_000 });
    const r = JSON.parse(run.stdout) as TtyRun;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('stdin-tty\ndone\n');
    expect(r.canonical).toBe(true);
  });

  it('brought to the foreground (fg), it starts passing typing on', () => {
    const { dir } = scratch();
    // fg only once the command runs, so tapbox surely started in the background.
    const shell = 'set -m; "$@" & while [ ! -e started ]; do sleep 0.1; done; fg %1';
    const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'tty-run.py'), 'sh', '-c', shell, 'sh', process.execPath, cliPath,
      '--', 'sh', '-c', 'touch started; read line; echo "got $line"']);
    const run = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: dir, env: { ...process.env, TTY_FDS: '0,1,2', TTY_TYPED: 'hello\n' }, timeout: 90_000 });
    const r = JSON.parse(run.stdout) as TtyRun;
    expect(r.code).toBe(0);
    expect(r.terminal).toMatch(/got hello\r*\n$/);
    expect(r.canonical).toBe(true);
  });

  it('with stdin from a pipe and stdout on a terminal: output and exit status come through, stdin stays the pipe', () => {
    const { dir } = scratch();
    const r = ttyRun(['--', 'sh', '-c', 'cat; test -t 1 && echo stdout-tty; echo to-stderr >&2; stty size <&1; exit 3'], { TTY_FDS: '1,2', STDIN_DATA: 'piped in\n' }, dir);
    expect(r.code).toBe(3);
    expect(r.terminal.replace(/\r+\n/g, '\n')).toBe('piped in\nstdout-tty\nto-stderr\n40 100\n');
  });

  it('relays all of the command\'s output before tapbox exits', () => {
    const { dir } = scratch();
    const r = ttyRun(['--', 'sh', '-c', 'yes line | head -n 50000; echo END'], { TTY_FDS: '1,2' }, dir);
    expect(r.code).toBe(0);
    const lines = r.terminal.split(/\r+\n/);
    expect(lines.filter((l) => l === 'line')).toHaveLength(50000);
    expect(lines.slice(-2)).toEqual(['END', '']);
  });

  it('passes on a paste larger than the pty\'s buffers while the command, not reading yet, writes a lot', () => {
    const { dir } = scratch();
    // Relaying the paste must not stall relaying the output, or neither side would ever move again.
    const script = 'echo ready; sleep 1; yes | head -n 200000 > /dev/tty; head -c 60000 | wc -c';
    const r = ttyRun(['-T', '30', '--', 'sh', '-c', script], { TTY_TYPE_ON: 'ready:60000' }, dir);
    expect(r.code, r.terminal.slice(-200)).toBe(0);
    expect(r.terminal).toMatch(/\n60000\r*\n$/);
  });

  it('the pty follows the terminal\'s size when it changes', () => {
    const { dir } = scratch();
    const script = 'trap "stty size <&1; exit 0" WINCH; stty size <&1; echo ready; while :; do sleep 0.1; done';
    const r = ttyRun(['-T', '30', '--', 'sh', '-c', script], { TTY_FDS: '1,2', TTY_RESIZE_ON: 'ready' }, dir);
    expect(r.code).toBe(0);
    expect(r.terminal.replace(/\r+\n/g, '\n')).toBe('40 100\nready\n50 120\n');
  });

  it('with only stderr on a terminal: stdout stays the pipe, stderr reaches the terminal', () => {
    const { dir } = scratch();
    const r = ttyRun(['--', 'sh', '-c', 'echo to-stdout; echo to-stderr >&2; test -t 2 && echo stderr-tty'], { TTY_FDS: '2' }, dir);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('to-stdout\nstderr-tty\n');
    expect(r.terminal.replace(/\r+\n/g, '\n')).toBe('to-stderr\n');
  });
});

describe('--progress with only stderr on a terminal', () => {
  it("steps aside for the command's output relayed there: no status line left in front of a line", () => {
    const { dir } = scratch();
    const script = 'for i in 1 2 3; do echo "line $i" >&2; sleep 0.5; done';
    const r = ttyRun(['--allow', '198.18.0.0/15', '--progress', '--', 'sh', '-c', script], { TTY_FDS: '2' }, dir);
    expect(r.code).toBe(0);
    expect(r.terminal).toMatch(/\rtapbox: 0 open \/ 0 flows, .*0 denied\x1b\[K/);
    for (const i of [1, 2, 3]) expect(r.terminal).toMatch(new RegExp(`(^|\\n|\\r\\x1b\\[K)line ${i}\\r+\\n`));
    expect(r.terminal).not.toMatch(/denied(\x1b\[K)?line/);
  });
});

describe('the user\'s other terminals', () => {
  it.each([['read-only', []], ['-x', ['-x']]] as const)(
    '%s: a terminal of the same user open on the host can\'t be opened by any path',
    (_, mode) => {
      const { dir, attack } = scratch();
      const r = ttyRun([...mode, '--', 'python3', 'terminal-attack.py'], { TTY_FDS: '', OTHER_TERMINAL: '1', OTHER_PASSWORD: PASSWORD }, dir);
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(join(dir, 'attack.json')), r.stderr).toBe(true);
      const a = attack();
      expect(a.opened).toEqual([]);
      expect(a.tried).toBeGreaterThan(0);
      expect(Object.keys(a.mknod)).toHaveLength(3);
      expect(Object.values(a.mknod)).not.toContain('made');
      // The password typed into it is still there, unread, and nothing was written onto it.
      expect(r.other!.pending).toBe(PASSWORD);
      expect(r.other!.output).toBe('');
    },
  );

  it('the same under the interactive pty: an interactive shell finds no host terminal', () => {
    const { dir, attack } = scratch();
    const r = ttyRun(['--', 'sh', '-c', `python3 terminal-attack.py; tty`], { OTHER_TERMINAL: '1', OTHER_PASSWORD: PASSWORD }, dir);
    expect(r.code, r.terminal).toBe(0);
    expect(r.terminal).toContain('/dev/console');
    const a = attack();
    expect(a.opened).toEqual([]);
    expect(Object.keys(a.own)).toEqual(['0', '1', '2']);
    expect(r.other!.pending).toBe(PASSWORD);
    expect(r.other!.output).toBe('');
  });
});
