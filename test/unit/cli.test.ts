// The CLI's own commands, run as a user runs them (the unprivileged test user): --help and its
// examples, `help TOPIC`, `allowlists`, `doctor`; and the pieces they are made of.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { escapeCommandName, EXAMPLES, RULE_EXAMPLES, shippedLists, TOPICS, unescapeCommandName } from '../../src/cli/commands.js';
import { formatProgress } from '../../src/cli/progress.js';
import { CURATED_LISTS, load, parse } from '../../src/egress/policy/allowlist.js';
import { asTestUser, cliPath, repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';

describe('tapbox --help', () => {
  it('shows the usage, every option, the commands and examples on stdout, and exits 0', async () => {
    const r = await tapbox(['--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^Usage: tapbox \[options\] -- COMMAND \[ARGS\.\.\.\]\n {7}tapbox doctor \| setup apparmor \| allowlists \| image \| help \[TOPIC\]\n {7}tapbox run -d \| ps \| exec \| logs \| stop \| kill \| rm \| inspect \| policy {3}\(boxes\)\n/);
    expect(r.stdout).toMatch(/\n {2}run \[options\] \[command\.\.\.\] +run COMMAND in a sandbox; with -d/);
    expect(r.stdout).toMatch(/\nCommands:\n {2}doctor +check that this host can run tapbox/);
    expect(r.stdout).toMatch(/\n {2}allowlists +list the allowlists shipped/);
    expect(r.stdout).toMatch(/\n {2}help \[topic\] +show help on a topic/);
    expect(r.stdout).toContain(EXAMPLES.trim());
    expect(r.stdout).toMatch(/--progress +while it runs, a live status line on stderr/);
    // `tapbox help` alone is the same text.
    expect((await tapbox(['help'])).stdout).toBe(r.stdout);
  });

  it('into a pipe whose reader already left (| true), ends quietly with the SIGPIPE status, not a stack trace', () => {
    const r = spawnSync('bash', ['-c', '"$0" "$1" --help | true; echo "status ${PIPESTATUS[0]}" >&2', process.execPath, cliPath], { encoding: 'utf8' });
    expect(r.stderr).toBe('status 141\n');
  });

  it('names only flags that exist, in the examples and in every topic', async () => {
    const help = (await tapbox(['--help'])).stdout;
    const texts = [EXAMPLES, ...Object.values(TOPICS).map((t) => t.text())];
    const flags = new Set(texts.flatMap((t) => [...t.matchAll(/(?<=^|[\s(/|])(--?[a-zA-Z][\w-]*)/gm)].map((m) => m[1]!)));
    expect(flags.size).toBeGreaterThan(20);
    for (const flag of flags) expect(help, `${flag} is named in the help but is not an option`).toMatch(new RegExp(`(^|[\\s,])${flag}([\\s,]|$)`, 'm'));
  });
});

describe('tapbox help TOPIC', () => {
  it.each(Object.keys(TOPICS))('prints the %s topic on stdout and exits 0', async (topic) => {
    const r = await tapbox(['help', topic]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${TOPICS[topic]!.text()}\n`);
    // Short: a screenful at most, and no line wider than a wide terminal.
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(30);
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(110);
  });

  it('shows rules that parse, and mean what the topic says', async () => {
    const text = (await tapbox(['help', 'allowlist'])).stdout;
    for (const [rule] of RULE_EXAMPLES) {
      expect(text).toContain(rule);
      expect(parse(rule, 'help').rules).toHaveLength(1);
    }
    const [name, wildcard, subnet, v6, udp, deny] = RULE_EXAMPLES.map(([rule]) => parse(rule, 'help').rules[0]!);
    expect(name).toMatchObject({ deny: false, proto: null, ports: { from: 443, to: 443 }, target: { kind: 'name', name: 'registry.npmjs.org' } });
    expect(wildcard).toMatchObject({ ports: null, target: { kind: 'wildcard', suffix: 'example.com' } });
    expect(subnet).toMatchObject({ ports: { from: 8000, to: 8999 }, target: { kind: 'subnet' } });
    expect(v6).toMatchObject({ ports: { from: 443, to: 443 }, target: { kind: 'subnet' } });
    expect(udp).toMatchObject({ proto: 'udp', ports: { from: 53, to: 53 } });
    expect(deny).toMatchObject({ deny: true });
  });

  it('shows the help of a command', async () => {
    const r = await tapbox(['help', 'doctor']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: tapbox doctor \[options\]\n\ncheck that this host can run tapbox/);
    const topics = await tapbox(['help', 'help']);
    for (const topic of Object.keys(TOPICS)) expect(topics.stdout).toMatch(new RegExp(`\\n  ${topic} +${TOPICS[topic]!.summary}`));
  });

  it('refuses an unknown topic in one sentence naming the topics, exit 2', async () => {
    const r = await tapbox(['help', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('tapbox: there is no help topic "bogus"; the topics are allowlist, modes, network, exit, and the commands doctor, setup, allowlists, image, run, ps, logs, exec, stop, kill, rm, inspect, policy, help, config.\n');
  });
});

describe('tapbox allowlists', () => {
  it('lists every shipped list with its description and rule count', async () => {
    const r = await tapbox(['allowlists']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('Allowlists shipped with tapbox (use: tapbox -F @NAME -- COMMAND):');
    const rows = lines.slice(1).map((l) => /^ {2}@(\S+) +(\d+) rules? {2}(.+)$/.exec(l));
    expect(rows.every(Boolean)).toBe(true);
    // Exactly the lists -F @NAME accepts, in order.
    expect(rows.map((m) => m![1])).toEqual([...CURATED_LISTS].sort());
    for (const m of rows) {
      const [, name, count, description] = m!;
      expect(Number(count)).toBe((await load(`@${name}`)).rules.length);
      const firstComment = readFileSync(join(repoRoot, 'allowlists', `${name}.txt`), 'utf8').split('\n')[0]!;
      expect(firstComment.startsWith(`# ${description}`)).toBe(true);
      expect(description).toMatch(/\.$/);
    }
    expect(r.stdout).toMatch(/@npm +\d+ rules +npm registry/);
  });

  it('reads a list directory: first sentence of the first comment, rules counted', () => {
    const { dir, cleanup } = userTempDir();
    try {
      writeFileSync(join(dir, 'one.txt'), '# Only one host. More words here\n# and here.\nexample.com:443\n');
      writeFileSync(join(dir, 'two.txt'), '\n# Two hosts\n# Use: tapbox -F two.txt\na.example:443\n\nb.example\n');
      writeFileSync(join(dir, 'notes.md'), 'not a list');
      expect(shippedLists(dir)).toEqual([
        { name: 'one', description: 'Only one host.', rules: 1 },
        { name: 'two', description: 'Two hosts', rules: 2 },
      ]);
    } finally {
      cleanup();
    }
  });
});

describe('tapbox doctor', () => {
  it('passes every check on this host, trying each kind of sandbox for real, and exits 0', async () => {
    const r = await tapbox(['doctor']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 7).map((l) => l.slice(0, 6))).toEqual(Array(7).fill('ok    '));
    expect(r.stdout).toMatch(/ok {4}unprivileged user namespaces: a user namespace can be created/);
    expect(r.stdout).toMatch(/ok {4}read-only mode, seccomp and no_new_privs: a sandbox runs, with the seccomp filter and no_new_privs/);
    expect(r.stdout).toMatch(/ok {4}overlayfs in a user namespace \(for -x, --rootfs, -k\): -x sandboxes run/);
    expect(r.stdout).toMatch(/ok {4}subordinate ids \(for images' owners\): image uids 1-65536 are your \d+-\d+, gids 1-65536 your \d+-\d+\n/);
    expect(r.stdout).toMatch(/ok {4}\/dev\/net\/tun usable \(for --net tap\): \/dev\/net\/tun is read-write and a sandbox gets its TAP device/);
    expect(lines[lines.length - 1]).toBe('All checks passed.');
  });

  // On a cgroup v2 host the VM lane's guests check the other answers (test/vm/guest/doctor.test.ts).
  const cgroupV1 = /^\d+:[^:]*memory[^:]*:/m.test(readFileSync('/proc/self/cgroup', 'utf8'));
  it.runIf(cgroupV1)('warns, without failing, that limits are per process on a cgroup v1 host', async () => {
    const r = await tapbox(['doctor']);
    expect(r.stdout).toMatch(/\nwarn {2}cgroup v2 delegation \(for whole-sandbox limits\): this host does not run cgroup v2 alone \(its controllers are on cgroup v1\), so --memory, --pids and --cpus hold per process/);
    expect(r.code).toBe(0);
  });

  it('names the fix for a failing check and exits 1', () => {
    // A user namespace whose own limit on nested user namespaces is 0: to the launcher's probe, a host
    // with user namespaces turned off (nothing global is changed).
    const script = `echo 0 > /proc/sys/user/max_user_namespaces && exec "${process.execPath}" "${cliPath}" doctor`;
    const argv = asTestUser(['unshare', '--user', '--map-root-user', 'sh', '-c', script]);
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: repoRoot });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/\nFAIL {2}unprivileged user namespaces: .*(sysctl|AppArmor)/);
    expect(r.stdout).toMatch(/^ok {4}Linux on x86_64 or aarch64/);
    // Every sandbox doctor tries needs a user namespace: those checks fail too, each with the reason.
    expect(r.stdout).toMatch(/\nFAIL {2}overlayfs in a user namespace \(for -x, --rootfs, -k\): .*(sysctl|user namespace)/);
    expect(r.stdout).toMatch(/\n4 check\(s\) failed; tapbox refuses what needs them \(a check in parentheses is needed only there\) until they are fixed\.\n$/);
  });

  it('runs a command called doctor in the sandbox when it comes after --', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      writeFileSync(join(dir, 'doctor'), '#!/bin/sh\necho "sandboxed doctor $(hostname)"\n', { mode: 0o755 });
      spawnSync('chown', ['-R', `${process.env.TAPBOX_TEST_USER ?? 'tapboxtest'}`, dir]);
      const r = await tapbox(['--', 'doctor'], { cwd: dir, env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
      expect(r.stdout).toBe('sandboxed doctor tapbox\n');
      expect(r.code).toBe(0);
    } finally {
      cleanup();
    }
  });
});

describe('the pieces', () => {
  it('hides only a command name that follows --, and gives it back', () => {
    const program = new Command('t');
    program.command('doctor');
    program.command('allowlists');
    expect(escapeCommandName(['doctor'], program)).toEqual(['doctor']);
    expect(escapeCommandName(['--allow', 'x', '--', 'ls'], program)).toEqual(['--allow', 'x', '--', 'ls']);
    const hidden = escapeCommandName(['--net', 'tap', '--', 'allowlists', '-v'], program);
    expect(hidden[3]).not.toBe('allowlists');
    expect(unescapeCommandName(hidden.slice(3))).toEqual(['allowlists', '-v']);
  });

  it('keeps the status line narrower than the terminal', () => {
    const counts = { open: 3, flows: 12, denied: 2, bytesUp: 2048, bytesDown: 5 * 1024 * 1024 };
    expect(formatProgress(counts, 200)).toBe('tapbox: 3 open / 12 flows, ↑ 2.0 KiB ↓ 5.0 MiB, 2 denied');
    expect(formatProgress(counts, 20)).toBe('tapbox: 3 open / 12');
    expect(formatProgress({ ...counts, memoryBytes: 3 * 1024 * 1024 }, 200)).toBe('tapbox: 3 open / 12 flows, ↑ 2.0 KiB ↓ 5.0 MiB, 2 denied, 3.0 MiB in use');
  });
});
