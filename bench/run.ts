// `npm run bench`: tapbox against slirp4netns and pasta, in one run, on the same test host and MTU.
// Each peer runs the same clients in its own rootless network namespace as the unprivileged test
// user; the test host is a network namespace on a veth pair (198.18.0.0/15), so traffic never leaves
// the machine. Prints tapbox's figure and its ratio to each peer; the CPU its network process (tapbox's
// supervisor, slirp4netns, pasta) spent per GB, connection or round trip (bench/peer-run.ts); that
// process's memory with 1,000 idle connections open; then start-up times (bench/startup.ts).
// Needs root (to make the test host) and installs slirp4netns, passt and iperf3 from Debian when they
// are missing.
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TestHost } from '../test/helpers/testhost.js';
import { asTestUser, cliPath, repoRoot } from '../test/helpers/tapbox.js';
import { measureStartup } from './startup.js';
import { clientResult, runPeer, type PeerRun } from './peer-run.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const MTU = 65520;

type Wrap = (argv: string[]) => string[];

const peers: Record<string, Wrap> = {
  tapbox: (argv) => [process.execPath, cliPath, '--net', 'tap', '--mtu', String(MTU), '--no-summary', '--allow', '198.18.0.0/15', '--', ...argv],
  slirp4netns: (argv) => ['sh', join(repoRoot, 'bench', 'slirp4netns.sh'), String(MTU), ...argv],
  pasta: (argv) => ['pasta', '--quiet', '--config-net', '--mtu', String(MTU), '--', ...argv],
};

function ensureTools(): void {
  const missing = ['slirp4netns', 'pasta', 'iperf3'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length === 0) return;
  const pkgs = missing.map((t) => (t === 'pasta' ? 'passt' : t));
  console.error(`bench: installing ${pkgs.join(' ')}`);
  execFileSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** One peer's figure for a metric, and its network process's cost per unit of work (see peer-run.ts). */
interface Figure {
  value: number;
  /** CPU seconds of the network process per unit (per GB, connection, round trip); NaN when not sampled. */
  cpuPerUnit: number;
}

/** Runs a client in `peer` as the test user, its descriptor limit raised alike for every peer (1,000 idle connections need it). */
function runIn(peer: string, argv: string[]): Promise<PeerRun> {
  const full = asTestUser(['sh', '-c', 'ulimit -n 4096 && exec "$@"', 'sh', ...peers[peer]!(argv)]);
  return runPeer(peer, full, (SECONDS + 30) * 1000);
}

/** CPU seconds of the network process between the client's start and end marks. */
function cpuBetween(run: PeerRun, from = 'start', to = 'end'): number {
  const [a, b] = [run.samples[from], run.samples[to]];
  return a && b ? b.cpuSeconds - a.cpuSeconds : NaN;
}

// iperf3 between marks, so that the network process's CPU is read around the transfer only.
const IPERF_MARKED = `echo '{"mark":"start"}'; iperf3 "$@"; status=$?; echo '{"mark":"end"}'; sleep 0.3; exit $status`;

async function iperf(peer: string, host: string, reverse: boolean): Promise<Figure> {
  const run = await runIn(peer, ['sh', '-c', IPERF_MARKED, 'sh', '-c', host, '-t', String(SECONDS), '-J', ...(reverse ? ['-R'] : [])]);
  const json = JSON.parse(run.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
  const { bits_per_second: bps, bytes } = json.end.sum_received;
  return { value: bps / 1e9, cpuPerUnit: cpuBetween(run) / (bytes / 1e9) };
}

/** Runs a client in `peer` for SECONDS: SCRIPT ARGS... SECONDS MORE...; per unit: per operation. */
async function client(peer: string, script: string, args: string[], more: string[] = []): Promise<Figure> {
  const run = await runIn(peer, [process.execPath, join(repoRoot, 'bench', 'clients', script), ...args, String(SECONDS), ...more]);
  const r = clientResult(run.stdout);
  // Operations that failed or stalled for 5 s are left out of the rate; say how many there were.
  if (r.errors) console.error(`bench: ${peer}: ${r.errors} of ${r.ops + r.errors} operations of ${script} ${more.join(' ')} failed or stalled`);
  return { value: r.ops / r.seconds, cpuPerUnit: cpuBetween(run) / r.ops };
}

const IDLE_CONNECTIONS = 1000;

/** The network process's resident memory (MB) with IDLE_CONNECTIONS relayed TCP connections open. */
async function idleMemory(peer: string, host: string): Promise<number> {
  const run = await runIn(peer, [process.execPath, join(repoRoot, 'bench', 'clients', 'idle-conns.mjs'), host, '7', String(IDLE_CONNECTIONS)]);
  const r = clientResult(run.stdout);
  if (r.errors) throw new Error(`${peer}: ${r.errors} of ${IDLE_CONNECTIONS} idle connections failed`);
  return (run.samples.open?.rssBytes ?? NaN) / 2 ** 20;
}

/** Each peer's figure, or NaN (said on stderr) where it failed. */
async function byPeer<T>(measure: (peer: string) => Promise<T>, failed: T): Promise<Record<string, T>> {
  const figures: Record<string, T> = {};
  for (const peer of Object.keys(peers)) {
    try {
      figures[peer] = await measure(peer);
    } catch (e) {
      console.error(`bench: ${(e as Error).message}`);
      figures[peer] = failed;
    }
  }
  return figures;
}

const OTHERS = ['slirp4netns', 'pasta'];

// Each connection run dials HTTP ports of its own, PORTS_PER_RUN of them in turn. A run whose side
// closes first leaves a socket in TIME_WAIT for each connection (60 s), in the sandbox's namespace and
// the network process's alike; connect() may not reuse a source port while it holds one towards the same
// address and port, and it prefers even ports, so after ~14,000 connections to one port every connect()
// searches the rest of the range (seen: 8 s runs gave tapbox and slirp4netns the same ~2,100 conn/s,
// the search's kernel CPU, where 3 s runs gave 3,500 and 4,900). With one port per run a 5 s run met that
// wall after 3-4 s and measured it as much as the network process; spread over four ports, a run stays
// below it. Runs never share a port, or which peer ran after which would decide the figures.
const PORTS_PER_RUN = 4;
const HTTP_PORTS = Array.from({ length: 6 * PORTS_PER_RUN }, (_, i) => 8080 + i);
let httpRuns = 0;
function nextHttpPorts(): string {
  const ports = HTTP_PORTS.slice(httpRuns * PORTS_PER_RUN, ++httpRuns * PORTS_PER_RUN);
  if (ports.length < PORTS_PER_RUN) throw new Error('bench: more connection runs than HTTP_PORTS has room for');
  return ports.join(',');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench needs root to create its test host (a network namespace); run it with sudo.');
  ensureTools();
  // BENCH_ONLY=UDP runs only the metrics whose name contains it (case-insensitive), for quick A/B runs.
  const only = process.env.BENCH_ONLY?.toLowerCase();
  const chosen = (name: string) => !only || name.toLowerCase().includes(only);
  const host = new TestHost();
  // Name, unit, per-unit cost's unit and scale (CPU seconds per unit × scale), measure.
  const all: [string, string, string, number, (peer: string) => Promise<Figure>][] = [
    ['TCP sandbox→host', 'Gbit/s', 's/GB', 1, (p) => iperf(p, host.ip4, false)],
    ['TCP host→sandbox', 'Gbit/s', 's/GB', 1, (p) => iperf(p, host.ip4, true)],
    ['TCP connections', 'conn/s', 'µs/conn', 1e6, (p) => client(p, 'connrate.mjs', [host.ip4, nextHttpPorts()])],
    ['TCP connections, server closes', 'conn/s', 'µs/conn', 1e6, (p) => client(p, 'connrate.mjs', [host.ip4, nextHttpPorts()], ['8', 'server'])],
    ['UDP request/response', 'rr/s', 'µs/rr', 1e6, (p) => client(p, 'udprr.mjs', [host.ip4, '7'])],
  ];
  const metrics = all.filter(([name]) => chosen(name));
  const memory = chosen('memory');
  if (metrics.length > 0 || memory) {
    try {
      await host.start('services.mjs', [...HTTP_PORTS.flatMap((p) => ['--http', String(p)]), '--udp-echo', '7', '--tcp-echo', '7']);
      host.spawnInside(['iperf3', '-s', '-p', '5201']);
      await new Promise((r) => setTimeout(r, 500));
      const rows: string[][] = [];
      const cpuRows: string[][] = [];
      for (const [name, unit, cpuUnit, scale, measure] of metrics) {
        const figures = await byPeer(measure, { value: NaN, cpuPerUnit: NaN });
        const t = figures.tapbox!;
        rows.push([name, `${fmt(t.value)} ${unit}`, ...OTHERS.map((p) => `${fmt(figures[p]!.value)} (${fmt(t.value / figures[p]!.value)}x)`)]);
        const cpu = (p: string) => figures[p]!.cpuPerUnit * scale;
        cpuRows.push([name, `${fmt(cpu('tapbox'))} ${cpuUnit}`, ...OTHERS.map((p) => `${fmt(cpu(p))} (${fmt(cpu('tapbox') / cpu(p))}x)`)]);
      }
      if (rows.length > 0) {
        printTable(['metric (MTU ' + MTU + ', ' + SECONDS + ' s each)', 'tapbox', 'slirp4netns (tapbox ratio)', 'pasta (tapbox ratio)'], rows);
        console.log('');
        printTable(['CPU of the network process (tapbox: its supervisor)', 'tapbox', 'slirp4netns (tapbox ÷ it)', 'pasta (tapbox ÷ it)'], cpuRows);
      }
      if (memory) {
        const mb = await byPeer((p) => idleMemory(p, host.ip4), NaN);
        if (rows.length > 0) console.log('');
        printTable(['memory of the network process (RSS)', 'tapbox', 'slirp4netns (tapbox ÷ it)', 'pasta (tapbox ÷ it)'], [
          [`${IDLE_CONNECTIONS} idle TCP connections open`, `${fmt(mb.tapbox!)} MB`, ...OTHERS.map((p) => `${fmt(mb[p]!)} MB (${fmt(mb.tapbox! / mb[p]!)}x)`)],
        ]);
      }
    } finally {
      host.destroy();
    }
  }
  if (chosen('start-up')) {
    const rows = measureStartup().map((f) => [
      f.name,
      `${fmt(f.ms)} ms`,
      `${fmt(f.node)} ms (${fmt(f.ms / f.node)}x)`,
      `${fmt(f.pasta)} ms (${fmt(f.ms / f.pasta)}x)`,
      `${fmt(f.cpu)} ms / ${fmt(f.nodeCpu)} ms (${fmt(f.cpu / f.nodeCpu)}x)`,
    ]);
    console.log('');
    printTable(['start-up (median of 15 runs)', 'tapbox', 'node -e 0 (tapbox ratio)', 'pasta --config-net -- true (tapbox ratio)', 'CPU: tapbox / node -e 0 (ratio)'], rows);
  }
}

function fmt(n: number): string {
  return Number.isFinite(n) ? (n >= 100 ? n.toFixed(0) : n.toFixed(2)) : 'failed';
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

main().catch((e: unknown) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
});
