// The C launcher driven directly, with launcher-driver.py playing the supervisor's side of fd 3.
// Runs as the unprivileged user: the launcher is rootless by design.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, chmodSync, chownSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const launcher = path.join(repoRoot, 'build/Release/tapbox-launcher');
const driver = path.join(repoRoot, 'test/integration/launcher-driver.py');
const runningAsRoot = process.getuid?.() === 0;
const TEST_USER = 'tapboxtest';
const NAMESPACES = ['user', 'mnt', 'pid', 'net', 'uts', 'ipc', 'cgroup'];
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFF_PERSIST = 0x0800; // the supervisor's close only detaches; the device goes with the namespace

interface SandboxResult {
  exitCode: number;
  messages: string[];
  tap: { name: string; flags: number } | null;
  stdout: string;
  stderr: string;
}

interface RunningSandbox {
  driverPid: number;
  launcherPid: number;
  result: Promise<SandboxResult>;
}

let workDir: string;
let sandboxUid: number;
let sandboxGid: number;

interface SandboxOptions {
  noGo?: boolean; // the driver closes the control socket instead of sending GO
  pty?: boolean; // stdin/stdout/stderr on a fresh pseudo-terminal, as for interactive use
  wrapper?: string[]; // runs the driver through this command (e.g. to change the host's limits)
}

function startSandbox(launcherArgs: string[], command: string[], options: SandboxOptions = {}): Promise<RunningSandbox> {
  const driverFlags = [...(options.noGo ? ['--no-go'] : []), ...(options.pty ? ['--pty'] : [])];
  const driverCommand = [...(options.wrapper ?? []), 'python3', driver, ...driverFlags, launcher, ...launcherArgs, '--', ...command];
  const child = runningAsRoot
    ? spawn('runuser', ['-u', TEST_USER, '--', ...driverCommand], { cwd: workDir })
    : spawn(driverCommand[0], driverCommand.slice(1), { cwd: workDir });
  let output = '';
  let errors = '';
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const lines = () => output.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));

  return new Promise((resolveStarted, rejectStarted) => {
    const result = new Promise<SandboxResult>((resolve, reject) => {
      child.on('close', () => {
        const exited = lines().find((event) => event.event === 'exited');
        if (exited) resolve(exited as SandboxResult);
        else reject(new Error(`the driver ended without a result: ${errors}`));
      });
    });
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const spawned = lines().find((event) => event.event === 'spawned');
      if (spawned) resolveStarted({ driverPid: spawned.driverPid, launcherPid: spawned.launcherPid, result });
    });
    child.on('close', () => rejectStarted(new Error(`the driver never started the launcher: ${errors}`)));
  });
}

async function runSandbox(launcherArgs: string[], command: string[], options: SandboxOptions = {}) {
  return (await startSandbox(launcherArgs, command, options)).result;
}

const sh = (script: string) => ['sh', '-c', script];
// Runs what follows in a user namespace of our own whose limit of nested user namespaces is 0.
const noUserNamespaces = ['unshare', '--user', '--map-root-user', 'sh', '-c', 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', 'sh'];

async function eventually(condition: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 400; attempt++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`still waiting for: ${what}`);
}

function processesWithArgument(argument: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(argument);
      } catch {
        return false; // exited while we looked
      }
    })
    .map(Number);
}

beforeAll(() => {
  if (!existsSync(launcher)) throw new Error(`${launcher} is missing: build it with npx node-gyp rebuild`);
  workDir = mkdtempSync(path.join(tmpdir(), 'tapbox-launcher-'));
  if (runningAsRoot) {
    sandboxUid = Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8' }));
    sandboxGid = Number(execFileSync('id', ['-g', TEST_USER], { encoding: 'utf8' }));
    chownSync(workDir, sandboxUid, sandboxGid);
  } else {
    sandboxUid = process.getuid!();
    sandboxGid = process.getgid!();
  }
});

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('namespaces and identity', () => {
  it('runs the command in new namespaces of every kind', async () => {
    const script = NAMESPACES.map((ns) => `readlink /proc/self/ns/${ns}`).join('; ');
    const result = await runSandbox(['--net', 'none'], sh(script));
    expect(result.exitCode).toBe(0);
    const inside = result.stdout.trim().split('\n');
    NAMESPACES.forEach((ns, i) => {
      expect(inside[i]).toMatch(new RegExp(`^${ns}:\\[\\d+\\]$`));
      expect(inside[i]).not.toBe(readlinkSync(`/proc/self/ns/${ns}`));
    });
  });

  it('shares the host network namespace only under --net host', async () => {
    const result = await runSandbox(['--net', 'host'], ['readlink', '/proc/self/ns/net']);
    expect(result.stdout.trim()).toBe(readlinkSync('/proc/self/ns/net'));
  });

  it('is root inside by default, the invoking user with --same-uid, nobody with --nobody', async () => {
    const ids = sh('echo $(id -u) $(id -g)');
    expect((await runSandbox(['--net', 'none'], ids)).stdout.trim()).toBe('0 0');
    expect((await runSandbox(['--net', 'none', '--same-uid'], ids)).stdout.trim()).toBe(`${sandboxUid} ${sandboxGid}`);
    expect((await runSandbox(['--net', 'none', '--nobody'], ids)).stdout.trim()).toBe('65534 65534');
  });

  it('sets the hostname', async () => {
    expect((await runSandbox(['--net', 'none'], ['hostname'])).stdout.trim()).toBe('tapbox');
    expect((await runSandbox(['--net', 'none', '--hostname', 'builder'], ['hostname'])).stdout.trim()).toBe('builder');
  });

  it('runs the command as the only process besides PID 1', async () => {
    const result = await runSandbox(['--net', 'none'], sh('echo $$; ls /proc | grep -c "^[0-9]"'));
    const [ownPid, processCount] = result.stdout.trim().split('\n');
    expect(ownPid).toBe('2');
    expect(Number(processCount)).toBeLessThanOrEqual(4); // init, sh, ls, grep
  });
});

describe('network', () => {
  it('hands tap0 to the supervisor, configured with the default addresses, MTU, MAC and routes', async () => {
    const result = await runSandbox([], sh('ip addr show tap0; ip route; ip -6 route'));
    expect(result.exitCode).toBe(0);
    expect(result.messages).toEqual(['TAP']);
    expect(result.tap).toEqual({ name: 'tap0', flags: IFF_TAP | IFF_NO_PI | IFF_PERSIST });
    expect(result.stdout).toMatch(/tap0: <[^>]*\bUP\b[^>]*> mtu 65520 /);
    expect(result.stdout).toContain('link/ether 02:00:00:00:01:00');
    expect(result.stdout).toContain('inet 10.0.2.100/24');
    expect(result.stdout).toMatch(/inet6 fd00::100\/64 scope global nodad/);
    expect(result.stdout).toMatch(/^default via 10\.0\.2\.2 dev tap0/m);
    expect(result.stdout).toMatch(/^default via fd00::2 dev tap0/m);
  });

  it('applies --mtu, --mac, --ip4, --gw4, --ip6 and --gw6', async () => {
    const args = ['--mtu', '1500', '--mac', '02:aa:bb:cc:dd:ee', '--ip4', '198.18.7.10/24', '--gw4', '198.18.7.1',
      '--ip6', '2001:db8:7::10/64', '--gw6', '2001:db8:7::1'];
    const result = await runSandbox(args, sh('ip addr show tap0; ip route; ip -6 route'));
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/tap0: .* mtu 1500 /);
    expect(result.stdout).toContain('link/ether 02:aa:bb:cc:dd:ee');
    expect(result.stdout).toContain('inet 198.18.7.10/24');
    expect(result.stdout).toContain('inet6 2001:db8:7::10/64');
    expect(result.stdout).toMatch(/^default via 198\.18\.7\.1 dev tap0/m);
    expect(result.stdout).toMatch(/^default via 2001:db8:7::1 dev tap0/m);
  });

  it('asks for virtio-net headers only with --vnet-hdr', async () => {
    const result = await runSandbox(['--vnet-hdr'], ['true']);
    expect(result.tap?.flags).toBe(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_PERSIST);
  });

  it('leaves only lo, up, under --net none', async () => {
    const result = await runSandbox(['--net', 'none'], ['ip', '-o', 'link']);
    const links = result.stdout.trim().split('\n');
    expect(links).toHaveLength(1);
    expect(links[0]).toMatch(/^1: lo: <[^>]*\bUP\b/);
    expect(result.messages).toEqual([]);
  });

  it('points /etc/resolv.conf at the --resolv addresses', async () => {
    const result = await runSandbox(['--resolv', '10.0.2.3', '--resolv', 'fd00::3'], ['cat', '/etc/resolv.conf']);
    expect(result.stdout).toBe('nameserver 10.0.2.3\nnameserver fd00::3\n');
  });
});

describe('filesystem (read-only mode)', () => {
  it('refuses writes outside the working directory and /tmp, submounts included', async () => {
    for (const target of ['/etc/tapbox-probe', '/usr/tapbox-probe', '/var/tapbox-probe']) {
      const result = await runSandbox(['--net', 'none'], ['touch', target]);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toContain('Read-only file system');
    }
    // /dev is the minimal one, its /dev/shm a private tmpfs: a write there stays inside.
    const shm = `/dev/shm/tapbox-probe-${process.pid}`;
    const result = await runSandbox(['--net', 'none'], ['touch', shm]);
    expect(result.exitCode).toBe(0);
    expect(existsSync(shm)).toBe(false);
  });

  it('can\'t be made writable again from inside, even by root', async () => {
    const script = 'mount -o remount,bind,rw /etc; umount -l /etc; umount -l /; ls /proc/1/root >/dev/null; touch /etc/tapbox-probe';
    const result = await runSandbox(['--net', 'none'], sh(script));
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/\/proc\/1\/root.*Permission denied/); // PID 1 can't be borrowed
    expect(result.stderr).toContain("cannot touch '/etc/tapbox-probe': Read-only file system");
  });

  it('keeps what the command writes in the working directory', async () => {
    const result = await runSandbox(['--net', 'none'], sh('echo kept > written-inside && cat written-inside'));
    expect(result.exitCode).toBe(0);
    expect(readFileSync(path.join(workDir, 'written-inside'), 'utf8')).toBe('kept\n');
  });

  it('gives the sandbox a private /tmp', async () => {
    const hostFile = path.join(tmpdir(), `tapbox-host-only-${process.pid}`);
    const innerName = `tapbox-inner-only-${process.pid}`;
    writeFileSync(hostFile, 'host');
    try {
      const result = await runSandbox(['--net', 'none'],
        sh(`test -e ${hostFile} && echo host-file-visible; echo x > /tmp/${innerName} && echo inner-written`));
      expect(result.stdout.trim()).toBe('inner-written');
      expect(existsSync(path.join(tmpdir(), innerName))).toBe(false);
    } finally {
      rmSync(hostFile, { force: true });
    }
  });

  it('applies --bind-ro, --bind-rw and --tmpfs', async () => {
    const writable = path.join(workDir, 'rw-sub');
    execFileSync('mkdir', ['-p', writable]);
    if (runningAsRoot) chownSync(writable, sandboxUid, sandboxGid);
    const result = await runSandbox(
      ['--net', 'none', '--tmpfs', '/mnt', '--bind-rw', `${writable}:/mnt/rw`, '--bind-ro', `${workDir}:/mnt/ro`],
      sh('echo via-rw > /mnt/rw/bound; cat /mnt/ro/rw-sub/bound; touch /mnt/ro/denied'),
    );
    expect(result.stdout).toBe('via-rw\n');
    expect(result.stderr).toContain('Read-only file system');
    expect(readFileSync(path.join(writable, 'bound'), 'utf8')).toBe('via-rw\n');
  });

  it('refuses a path bound both read-only and writable', async () => {
    const result = await runSandbox(['--net', 'none', '--bind-rw', `${workDir}:/mnt/rw`, '--bind-ro', `${workDir}:/mnt/ro`], ['true']);
    expect(result.exitCode).toBe(125);
    expect(result.messages.join('\n') + result.stderr).toContain('bound both read-only and writable');
  });

  it('starts in the working directory', async () => {
    expect((await runSandbox(['--net', 'none'], ['pwd'])).stdout.trim()).toBe(workDir);
  });
});

describe('the command', () => {
  it('passes the exit code through', async () => {
    expect((await runSandbox(['--net', 'none'], sh('exit 5'))).exitCode).toBe(5);
  });

  it('exits 128+N when the command is killed by signal N', async () => {
    expect((await runSandbox(['--net', 'none'], sh('kill -KILL $$'))).exitCode).toBe(128 + 9);
  });

  it('forwards SIGTERM from the launcher to the command', async () => {
    const started = path.join(workDir, 'started-for-sigterm');
    const sandbox = await startSandbox(['--net', 'none'], sh(`touch ${started}; exec sleep 300`));
    await eventually(() => existsSync(started), 'the command to start');
    process.kill(sandbox.launcherPid, 'SIGTERM');
    expect((await sandbox.result).exitCode).toBe(128 + 15);
  });

  it('reports a missing command with ENOENT and exit 127', async () => {
    const result = await runSandbox(['--net', 'none'], ['tapbox-no-such-command']);
    expect(result.exitCode).toBe(127);
    expect(result.messages).toEqual(['ERR ENOENT command not found: tapbox-no-such-command']);
  });

  it('reports a command that is not executable with EACCES and exit 126', async () => {
    const script = path.join(workDir, 'not-executable.sh');
    writeFileSync(script, '#!/bin/sh\necho ran\n');
    chmodSync(script, 0o644);
    const result = await runSandbox(['--net', 'none'], [script]);
    expect(result.exitCode).toBe(126);
    expect(result.messages[0]).toMatch(/^ERR EACCES /);
    expect(result.stdout).toBe('');
  });

  it('makes a pseudo-terminal on stdin the controlling terminal of the command\'s own session', async () => {
    const result = await runSandbox(['--net', 'none'], sh('ps -o sid=,tpgid= -p $$; tty'), { pty: true });
    expect(result.exitCode).toBe(0);
    // The command (PID 2) leads its session and is the terminal's foreground process group; the
    // terminal shows as /dev/console in the minimal /dev.
    expect(result.stdout.trim()).toMatch(/^2\s+2\s*\r?\n\/dev\/console$/);
  });

  it('inherits no descriptor above 2', async () => {
    const result = await runSandbox([], sh('ls /proc/$$/fd'));
    expect(result.stdout.trim().split('\n').sort()).toEqual(['0', '1', '2']);
  });

  it('does not run the command when the supervisor closes the socket instead of GO', async () => {
    const marker = path.join(workDir, 'ran-without-go');
    const result = await runSandbox(['--net', 'none'], ['touch', marker], { noGo: true });
    expect(result.exitCode).toBe(125);
    expect(existsSync(marker)).toBe(false);
  });

  it('explains how to enable user namespaces when the kernel refuses them', async () => {
    const result = await runSandbox(['--net', 'none'], ['true'], { wrapper: noUserNamespaces });
    expect(result.exitCode).toBe(125);
    expect(result.messages).toEqual([
      'ERR EUSERNS user namespaces are disabled (user.max_user_namespaces=0); enable them with: sudo sysctl -w user.max_user_namespaces=15000',
    ]);
  });

  it('answers --probe with exit 0 when namespaces work, and the fix on stderr when they do not', () => {
    const probe = (wrapper: string[]) => {
      const command = [...wrapper, launcher, '--probe'];
      return runningAsRoot
        ? spawnSync('runuser', ['-u', TEST_USER, '--', ...command], { encoding: 'utf8', cwd: '/' })
        : spawnSync(command[0], command.slice(1), { encoding: 'utf8', cwd: '/' });
    };
    expect(probe([])).toMatchObject({ status: 0, stderr: '' });
    expect(probe(noUserNamespaces)).toMatchObject({
      status: 125,
      stderr: expect.stringContaining('enable them with: sudo sysctl -w user.max_user_namespaces=15000'),
    });
  });

  it('rejects an unknown flag with EUSAGE before doing anything', async () => {
    const result = await runSandbox(['--no-such-flag'], ['true']);
    expect(result.exitCode).toBe(125);
    expect(result.messages[0]).toMatch(/^ERR EUSAGE unknown option --no-such-flag/);
  });

  it('leaves no process behind when the launcher\'s parent is killed', async () => {
    const started = path.join(workDir, 'started-for-sigkill');
    const uniqueArgument = `${4000 + (process.pid % 1000)}.25`;
    const sandbox = await startSandbox(['--net', 'none'], sh(`touch ${started}; exec sleep ${uniqueArgument}`));
    const driverEnded = sandbox.result.catch(() => undefined); // it dies without a result, as intended
    await eventually(() => existsSync(started), 'the command to start');
    expect(processesWithArgument(uniqueArgument)).toHaveLength(1);
    process.kill(sandbox.driverPid, 'SIGKILL');
    await eventually(() => !existsSync(`/proc/${sandbox.launcherPid}`), 'the launcher to die with its parent');
    await eventually(() => processesWithArgument(uniqueArgument).length === 0, 'the command to die with the launcher');
    await driverEnded;
  });
});
