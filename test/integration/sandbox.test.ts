// The foundation as a user sees it: tapbox run as an unprivileged user, through the CLI.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asTestUser, cliPath, isRoot, repoRoot, tapbox, testIds, userTempDir } from '../helpers/tapbox.js';

const NAMESPACES = ['user', 'mnt', 'pid', 'net', 'uts', 'ipc', 'cgroup'];

describe('tapbox --net tap', () => {
  it('runs the command as uid 0 inside, mapped to the user outside, with tap0 configured', async () => {
    const { dir, cleanup } = userTempDir();
    const r = await tapbox(['--net', 'tap', '--', 'sh', '-c', 'id -u; touch made-inside; ip addr; ip route; ip -6 route'], { cwd: dir });
    const owner = statSync(join(dir, 'made-inside')).uid;
    cleanup();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('0');
    expect(owner).toBe(testIds.uid);
    expect(r.stdout).toMatch(/tap0: <[^>]*UP[^>]*> mtu 65520/);
    expect(r.stdout).toContain('inet 10.0.2.100/24');
    expect(r.stdout).toContain('inet6 fd00::100/64');
    expect(r.stdout).toMatch(/default via 10\.0\.2\.2 dev tap0/);
    expect(r.stdout).toMatch(/default via fd00::2 dev tap0/);
  });

  it('puts the command in new namespaces of every kind', async () => {
    const r = await tapbox(['--net', 'tap', '--', 'sh', '-c', NAMESPACES.map((n) => `readlink /proc/self/ns/${n}`).join(';')]);
    expect(r.code).toBe(0);
    const inside = r.stdout.trim().split('\n');
    NAMESPACES.forEach((n, i) => expect(inside[i]).not.toBe(readlinkSync(`/proc/self/ns/${n}`)));
  });

  it('gets answers from the gateway to ping over IPv4 and IPv6', async () => {
    const r = await tapbox(['--net', 'tap', '--', 'sh', '-c', 'ping -c 2 -W 3 10.0.2.2 && ping -6 -c 2 -W 3 fd00::2']);
    expect(r.stdout).toMatch(/2 packets transmitted, 2 received/);
    expect(r.stdout.match(/2 received/g)).toHaveLength(2);
    expect(r.code).toBe(0);
  });

  it('refuses a connect to another host of its own subnets at once with ECONNREFUSED, in the audit log', async () => {
    // The stack answers ARP / NDP for 10.0.2.50 and fd00::50, so the flows reach the policy (which
    // allows nothing here) instead of waiting for the sandbox's neighbour resolution to fail.
    const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');
    const script = ['10.0.2.50', 'fd00::50'].map((a) => `${process.execPath} ${probe} tcp-connect ${a} 80`).join('; ');
    const r = await tapbox(['--net', 'tap', '--no-summary', '--log-format', 'json', '--', 'sh', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const outcomes = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { error?: string });
    expect(outcomes).toEqual([expect.objectContaining({ error: 'ECONNREFUSED' }), expect.objectContaining({ error: 'ECONNREFUSED' })]);
    const denied = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event?: string; verdict?: string; msg?: string })
      .filter((l) => l.event === 'flow' && l.verdict === 'deny')
      .map((l) => l.msg);
    // Each destination is denied; on a starved machine (the VM lane under load) a SYN the sandbox
    // retransmitted while our RST was on its way is a second attempt, denied and logged again.
    expect([...new Set(denied.map((m) => /10\.0\.2\.50|fd00::50/.exec(m ?? '')?.[0]))], r.stderr).toEqual(['10.0.2.50', 'fd00::50']);
  });

  it('honours --mtu and points resolv.conf at the DNS proxy', async () => {
    const r = await tapbox(['--net', 'tap', '--mtu', '9000', '--', 'sh', '-c', 'ip link show tap0; cat /etc/resolv.conf']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('mtu 9000');
    expect(r.stdout).toContain('qlen 4096'); // small frames: a longer transmit queue absorbs bursts
    expect(r.stdout).toContain('nameserver 10.0.2.3');
    expect(r.stdout).toContain('nameserver fd00::3');
  });

  it('resolves its own hostname locally, without a DNS query the proxy would deny', async () => {
    const r = await tapbox(['--net', 'tap', '-H', 'box1', '--log-format', 'json', '--', 'getent', 'hosts', 'box1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^(127\.0\.1\.1|::1)\s+box1$/m);
    expect(r.stderr).not.toContain('denied dns');
  });

  it('lets a server inside bind a port below 1024', async () => {
    const bind = 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 80)); s.listen(); print("bound")';
    const r = await tapbox(['--net', 'tap', '--', 'python3', '-c', bind]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('bound\n');
  });
});

describe('--net none and --net host', () => {
  it('--net none (the default without rules) has only lo', async () => {
    const r = await tapbox(['--', 'ip', '-o', 'link']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('lo:');
    expect(r.stdout).not.toContain('tap0');
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('-n (mini-sandbox\'s flag) is --net none, and contradicts --net tap', async () => {
    const r = await tapbox(['-n', '--', 'ip', '-o', 'link']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toContain('lo:');
    const bad = await tapbox(['-n', '--net', 'tap', '--', 'true']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/-n and --net tap contradict each other/);
  });

  it('-D FILE (mini-sandbox\'s debug log) writes the audit log at level debug', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      const log = join(dir, 'debug.log');
      const r = await tapbox(['-D', log, '--allow', '198.18.0.1', '--', 'true'], { cwd: dir });
      expect(r.code).toBe(0);
      expect(readFileSync(log, 'utf8')).toMatch(/"level":20,.*egress policy loaded/);
    } finally {
      cleanup();
    }
  });

  it('--net host shares the host network namespace and warns', async () => {
    const r = await tapbox(['-N', '--', 'readlink', '/proc/self/ns/net']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(readlinkSync('/proc/self/ns/net'));
    expect(r.stderr).toMatch(/warning: .*no isolation/);
  });
});

describe('exit codes and signals', () => {
  it('passes the exit code through', async () => {
    expect((await tapbox(['--', 'sh', '-c', 'exit 5'])).code).toBe(5);
    expect((await tapbox(['--', 'true'])).code).toBe(0);
  });

  it('returns 128+N when a signal kills the command', async () => {
    expect((await tapbox(['--', 'sh', '-c', 'kill -TERM $$'])).code).toBe(143);
    expect((await tapbox(['--', 'sh', '-c', 'kill -KILL $$'])).code).toBe(137);
  });

  it('forwards SIGTERM from the supervisor to the command', async () => {
    const argv = asTestUser([process.execPath, cliPath, '--', 'sh', '-c', 'trap "exit 42" TERM; echo ready; sleep 100 & wait']);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    const supervisor = supervisorPid(child.pid!);
    process.kill(supervisor, 'SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(42);
  });

  it('with -i, turns a SIGINT to the supervisor into SIGTERM for the command', async () => {
    const script = 'trap "exit 42" TERM; trap "exit 7" INT; echo ready; sleep 100 & wait';
    const results: (number | null)[] = [];
    for (const flags of [['-i'], []]) {
      const argv = asTestUser([process.execPath, cliPath, ...flags, '--', 'sh', '-c', script]);
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((r) => child.stdout!.once('data', () => r()));
      process.kill(supervisorPid(child.pid!), 'SIGINT');
      results.push(await new Promise<number | null>((r) => child.on('exit', (c) => r(c))));
    }
    expect(results).toEqual([42, 7]);
  });

  it('says "command not found" and exits 127 for a missing command', async () => {
    const r = await tapbox(['--', 'no-such-command-xyz']);
    expect(r.code).toBe(127);
    expect(r.stderr).toMatch(/^tapbox: .*command not found: no-such-command-xyz/);
  });
});

describe('clear failures', () => {
  it('rejects an unknown flag with one sentence and exit 2', async () => {
    const r = await tapbox(['--bogus', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown option '--bogus'.*tapbox --help/);
  });

  it('asks for a command when none is given', async () => {
    const r = await tapbox([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no command given/);
  });

  it('names the real reason a bind-mount point cannot be made (a read-only parent), and runs nothing', async () => {
    // A file's mount point is created with open(O_CREAT): its errno, not close(-1)'s EBADF, is the reason.
    for (const [source, point] of [['/etc/hostname', '/usr/tapbox-no-such-file'], ['/etc', '/usr/tapbox-no-such-dir']]) {
      const r = await tapbox(['-M', `${source}:${point}`, '--', 'echo', 'ran']);
      expect(r.code).toBe(125);
      expect(r.stdout).not.toContain('ran');
      expect(r.stderr).toContain(`the mount point ${point} does not exist inside the sandbox and can't be created there (Read-only file system); use a destination that exists, or mount a tmpfs (-e)`);
    }
  });

  it.runIf(isRoot)('names the fix when /dev/net/tun is not usable, and runs nothing', async () => {
    const { dir, cleanup } = userTempDir();
    spawnSync('chmod', ['0600', '/dev/net/tun']);
    try {
      const r = await tapbox(['--net', 'tap', '--', 'touch', join(dir, 'ran')], { cwd: dir });
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/\/dev\/net\/tun .*chmod 0666 \/dev\/net\/tun/);
      expect(spawnSync('ls', [dir], { encoding: 'utf8' }).stdout).not.toContain('ran');
    } finally {
      spawnSync('chmod', ['0666', '/dev/net/tun']);
      cleanup();
    }
  });

  it('names the fix when user namespaces are disabled, and runs nothing', async () => {
    // A user namespace whose own limit on nested user namespaces is 0: the launcher's clone is refused
    // just as on a host with user namespaces turned off.
    const script = `echo 0 > /proc/sys/user/max_user_namespaces && exec "${process.execPath}" "${cliPath}" -- echo ran`;
    const argv = asTestUser(['unshare', '--user', '--map-root-user', 'sh', '-c', script]);
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', cwd: repoRoot });
    expect(r.stdout).not.toContain('ran');
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/user namespace.*(sysctl|AppArmor)/);
  });
});

describe('interactive use', () => {
  it('runs an interactive shell with job control under a pseudo-terminal', () => {
    const input = ['sleep 30 &\n', 'jobs\n', 'kill %1\n', 'echo "tty=$(tty)"\n', 'exit 7\n'];
    const argv = asTestUser(['python3', join(repoRoot, 'test', 'helpers', 'pty-run.py'), process.execPath, cliPath, '--', 'bash', '--norc', '-i']);
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, PTY_INPUT: JSON.stringify(input) }, timeout: 60_000 });
    const result = JSON.parse(r.stdout) as { code: number; output: string };
    expect(result.output).toMatch(/\[1\]\+?\s+Running\s+sleep 30 &/);
    expect(result.output).toMatch(/tty=\/dev\/console/); // its own pty, found by ttyname() in the minimal /dev
    expect(result.output).not.toMatch(/no job control/);
    expect(result.code).toBe(7);
  });
});

describe('fail closed', () => {
  it('kills the whole sandbox when the supervisor is killed, leaving no process behind', async () => {
    // A sleep with a duration no other process has: its command line finds it.
    const marker = `sleep 999.${process.pid}`;
    const argv = asTestUser([process.execPath, cliPath, '--net', 'tap', '--', 'sh', '-c', `echo ready; exec ${marker}`]);
    const tmpBefore = readdirSync(tmpdir()).sort();
    const mountsBefore = readFileSync('/proc/self/mounts', 'utf8');
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    expect(liveProcesses(marker)).not.toEqual([]);
    process.kill(supervisorPid(child.pid!), 'SIGKILL');
    await new Promise((r) => child.on('exit', r));
    await new Promise((r) => setTimeout(r, 500));
    expect(liveProcesses(marker)).toEqual([]);
    expect(liveProcesses(`tapbox-launcher.*${marker}`, testIds.uid)).toEqual([]);
    expect(readdirSync(tmpdir()).sort()).toEqual(tmpBefore);
    expect(readFileSync('/proc/self/mounts', 'utf8')).toBe(mountsBefore);
  });
});

describe('tap0 belongs to the supervisor', () => {
  it('refuses a process in the sandbox that attaches to tap0, even with /dev/net/tun bound in', async () => {
    // tap0 is persistent (its teardown is left to the namespace's end), so the queue the supervisor
    // holds is what keeps anyone else from reading the sandbox's frames: a second attach must fail —
    // EBUSY where the command may administer the sandbox's network (here, 6.1), EPERM where not (6.12).
    const attach = [
      'import errno, fcntl, os, struct',
      'fd = os.open("/mnt/tun", os.O_RDWR)',
      'try:',
      '    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tap0", 0x0002 | 0x1000))',
      '    print("attached")',
      'except OSError as e:',
      '    print(errno.errorcode[e.errno])',
    ].join('\n');
    const r = await tapbox(['--net', 'tap', '-e', '/mnt', '-M', '/dev/net/tun:/mnt/tun', '--', 'python3', '-c', attach]);
    expect(r.stderr).toBe('');
    expect(['EBUSY\n', 'EPERM\n']).toContain(r.stdout);
  });
});

/** Processes whose command line contains `pattern`, zombies left out (they are gone, only not yet reaped). */
function liveProcesses(pattern: string, uid?: number): number[] {
  const args = uid === undefined ? ['-f', pattern] : ['-u', String(uid), '-f', pattern];
  const pids = spawnSync('pgrep', args, { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
  return pids.filter((pid) => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  });
}

/** The node process of the CLI (runuser's child when the tests run as root). */
function supervisorPid(pid: number): number {
  if (!isRoot) return pid;
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return Number(r.stdout.trim().split('\n')[0]);
}
