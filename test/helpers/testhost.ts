// A test host the tests make themselves: a network namespace joined to the host by a veth pair, with
// addresses in 198.18.0.0/15 and 2001:db8::/32 (benchmarking / documentation ranges), and servers
// started inside it. Everything is removed by `destroy()`. Creating a namespace needs root (CI runs
// the suite as root; tapbox itself still runs as the unprivileged test user).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { repoRoot } from './tapbox.js';

export const canMakeTestHost = process.getuid?.() === 0;

function sh(...argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
}

export class TestHost {
  readonly ns: string;
  readonly hostIf: string;
  /** The test host's addresses, as the sandbox dials them. */
  readonly ip4: string;
  readonly ip6: string;
  /** The host side of the veth. */
  readonly hostIp4: string;
  readonly hostIp6: string;
  /** An address on the test host's subnet that nobody owns (ARP for it fails). */
  readonly unusedIp4: string;
  /** The test host's side of the veth, inside its namespace. */
  private readonly peerIf: string;
  private servers: ChildProcess[] = [];

  constructor() {
    const id = randomBytes(3).toString('hex');
    // A /24 of 198.18.0.0/15 and a /64 of 2001:db8::/32 of its own, so test hosts can coexist: one no
    // other test host holds (a host left behind by a killed run would otherwise take its traffic).
    const subnet = freeSubnet();
    this.ip4 = `198.18.${subnet}.2`;
    this.hostIp4 = `198.18.${subnet}.1`;
    this.unusedIp4 = `198.18.${subnet}.99`;
    this.ip6 = `2001:db8:${subnet.toString(16)}::2`;
    this.hostIp6 = `2001:db8:${subnet.toString(16)}::1`;
    this.ns = `tbth-${id}`;
    this.hostIf = `tbh${id}`;
    const peer = `tbp${id}`;
    this.peerIf = peer;
    sh('ip', 'netns', 'add', this.ns);
    sh('ip', 'link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', peer);
    sh('ip', 'link', 'set', peer, 'netns', this.ns);
    sh('ip', 'addr', 'add', `${this.hostIp4}/24`, 'dev', this.hostIf);
    sh('ip', '-6', 'addr', 'add', `${this.hostIp6}/64`, 'dev', this.hostIf, 'nodad');
    sh('ip', 'link', 'set', this.hostIf, 'up');
    sh('ip', 'netns', 'exec', this.ns, 'ip', 'addr', 'add', `${this.ip4}/24`, 'dev', peer);
    sh('ip', 'netns', 'exec', this.ns, 'ip', '-6', 'addr', 'add', `${this.ip6}/64`, 'dev', peer, 'nodad');
    sh('ip', 'netns', 'exec', this.ns, 'ip', 'link', 'set', peer, 'up');
    sh('ip', 'netns', 'exec', this.ns, 'ip', 'link', 'set', 'lo', 'up');
  }

  /**
   * Starts test/helpers/servers/SCRIPT inside the namespace and waits for its first stdout line
   * ("ready ..."). Later lines are passed to `onLine`.
   */
  async start(script: string, args: string[] = [], onLine?: (line: string) => void): Promise<ChildProcess> {
    const child = spawn('ip', ['netns', 'exec', this.ns, process.execPath, join(repoRoot, 'test', 'helpers', 'servers', script), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.servers.push(child);
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolveReady, reject) => {
      let ready = false;
      lines.on('line', (line) => {
        if (!ready) {
          ready = true;
          resolveReady();
        } else onLine?.(line);
      });
      child.on('exit', (code) => ready || reject(new Error(`${script} exited with ${code} before it was ready`)));
    });
    return child;
  }

  /** Runs a command inside the test host namespace (e.g. iperf3 -s). */
  spawnInside(argv: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns, ...argv], { stdio: 'ignore' });
    this.servers.push(child);
    return child;
  }

  /**
   * Makes the test host vanish without a word: its link goes down inside its namespace, so whatever is
   * sent to it is dropped and nothing comes back (no FIN, no RST, no ICMP from it).
   */
  blackHole(): void {
    sh('ip', 'netns', 'exec', this.ns, 'ip', 'link', 'set', this.peerIf, 'down');
  }

  destroy(): void {
    for (const s of this.servers) s.kill('SIGKILL');
    spawnSync('ip', ['link', 'del', this.hostIf]);
    spawnSync('ip', ['netns', 'del', this.ns]);
  }
}

/** A random third octet of 198.18.X.0/24 that no address of this network namespace is in. */
function freeSubnet(): number {
  const taken = new Set([...execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' }).matchAll(/inet 198\.18\.(\d+)\./g)].map((m) => Number(m[1])));
  const free = Array.from({ length: 250 }, (_, i) => i + 1).filter((n) => !taken.has(n));
  if (free.length === 0) throw new Error('no free /24 in 198.18.0.0/16 for a test host: remove the tbth-* namespaces left behind (ip netns del)');
  return free[randomBytes(1)[0]! % free.length]!;
}
