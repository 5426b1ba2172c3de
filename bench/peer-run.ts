// One run of a bench client in a peer (tapbox, slirp4netns, pasta), and what the peer's network process
// costs meanwhile, read from /proc by the bench (root): the CPU time and resident memory of tapbox's
// supervisor, slirp4netns or pasta, found among the descendants of the command the bench started.
// Sampled at the clients' marks (bench/clients/*.mjs print {"mark": NAME}), so that start-up is left
// out and a figure per operation can be taken from two samples.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { cliPath } from '../test/helpers/tapbox.js';

/** One sample of the network process(es): CPU seconds so far (user + system) and resident bytes. */
export interface ProcSample {
  cpuSeconds: number;
  rssBytes: number;
}

/** Which processes are a peer's network: its comm and command line. */
export const NETWORK_PROCESS: Record<string, (comm: string, cmdline: string) => boolean> = {
  // The supervisor (the CLI itself), not a node client running inside the sandbox.
  tapbox: (comm, cmdline) => comm === 'node' && cmdline.includes(cliPath),
  slirp4netns: (comm) => comm === 'slirp4netns',
  // pasta is passt by another name; Debian's execs passt.avx2 where the CPU has AVX2.
  pasta: (comm) => comm.startsWith('pasta') || comm.startsWith('passt'),
};

const TICKS_PER_SECOND = 100; // USER_HZ, what /proc/PID/stat counts in on Linux
const PAGE = 4096;

interface ProcEntry {
  pid: number;
  ppid: number;
  comm: string;
  cpuTicks: number;
}

function readStat(pid: number): ProcEntry | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may hold spaces or ')': the fields after it start at the last ')'.
    const close = text.lastIndexOf(')');
    const fields = text.slice(close + 2).split(' ');
    return { pid, ppid: Number(fields[1]), comm: text.slice(text.indexOf('(') + 1, close), cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null; // exited meanwhile
  }
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Sums the network processes of `peer` among `root`'s descendants; null when none is found. */
export function sampleNetworkProcess(peer: string, root: number): ProcSample | null {
  const entries = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => readStat(Number(n))).filter((e): e is ProcEntry => e !== null);
  const children = new Map<number, ProcEntry[]>();
  for (const e of entries) children.set(e.ppid, [...(children.get(e.ppid) ?? []), e]);
  const isNetwork = NETWORK_PROCESS[peer]!;
  let found = false;
  const sample: ProcSample = { cpuSeconds: 0, rssBytes: 0 };
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const e = queue.shift()!;
    queue.push(...(children.get(e.pid) ?? []));
    if (!isNetwork(e.comm, read(`/proc/${e.pid}/cmdline`).replace(/\0/g, ' '))) continue;
    found = true;
    sample.cpuSeconds += e.cpuTicks / TICKS_PER_SECOND;
    sample.rssBytes += Number(read(`/proc/${e.pid}/statm`).split(' ')[1] ?? 0) * PAGE;
  }
  return found ? sample : null;
}

/** A client's output, and the peer's network process sampled at each mark the client printed. */
export interface PeerRun {
  stdout: string;
  samples: Record<string, ProcSample | null>;
}

/** Runs argv (the peer's wrapper around a client, as the test user); rejects when it fails or takes longer than timeoutMs. */
export function runPeer(peer: string, argv: string[], timeoutMs: number): Promise<PeerRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: '/tmp', stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const samples: Record<string, ProcSample | null> = {};
    let stdout = '';
    let stderr = '';
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const mark = /^\{"mark":"([a-z]+)"\}$/.exec(line)?.[1];
      if (mark) samples[mark] = sampleNetworkProcess(peer, child.pid!);
      else stdout += `${line}\n`;
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, samples });
      else reject(new Error(`${peer}: ${argv.join(' ')} exited ${code}: ${stderr.slice(-500)}`));
    });
  });
}

/** The result a client printed: {"ops": N, "seconds": S, ...}. */
export function clientResult(stdout: string): { ops: number; seconds: number; errors?: number } {
  const line = stdout.trim().split('\n').find((l) => l.startsWith('{"ops"'));
  if (!line) throw new Error(`the client printed no result: ${stdout.slice(-300)}`);
  return JSON.parse(line) as { ops: number; seconds: number; errors?: number };
}
