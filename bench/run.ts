// `npm run bench`: tapbox against slirp4netns and pasta, in one run, on the same test host and MTU.
// Each peer runs the same clients in its own rootless network namespace as the unprivileged test
// user; the test host is a network namespace on a veth pair (198.18.0.0/15), so traffic never leaves
// the machine. Prints tapbox's figure and its ratio to each peer, then start-up times (bench/startup.ts).
// Needs root (to make the test host) and installs slirp4netns, passt and iperf3 from Debian when they
// are missing.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TestHost } from '../test/helpers/testhost.js';
import { asTestUser, cliPath, repoRoot } from '../test/helpers/tapbox.js';
import { measureStartup } from './startup.js';

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

function runIn(peer: string, argv: string[]): string {
  const full = asTestUser(peers[peer]!(argv));
  const r = spawnSync(full[0]!, full.slice(1), { encoding: 'utf8', timeout: (SECONDS + 30) * 1000, cwd: '/tmp' });
  if (r.status !== 0) throw new Error(`${peer}: ${argv.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`);
  return r.stdout;
}

function iperf(peer: string, host: string, reverse: boolean): number {
  const out = runIn(peer, ['iperf3', '-c', host, '-t', String(SECONDS), '-J', ...(reverse ? ['-R'] : [])]);
  const json = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return json.end.sum_received.bits_per_second / 1e9;
}

/** Runs a client in `peer` for SECONDS: SCRIPT ARGS... SECONDS MORE... */
function client(peer: string, script: string, args: string[], more: string[] = []): number {
  const out = runIn(peer, [process.execPath, join(repoRoot, 'bench', 'clients', script), ...args, String(SECONDS), ...more]);
  const r = JSON.parse(out.trim().split('\n').pop()!) as { ops: number; seconds: number };
  return r.ops / r.seconds;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench needs root to create its test host (a network namespace); run it with sudo.');
  ensureTools();
  // BENCH_ONLY=UDP runs only the metrics whose name contains it (case-insensitive), for quick A/B runs.
  const only = process.env.BENCH_ONLY?.toLowerCase();
  const chosen = (name: string) => !only || name.toLowerCase().includes(only);
  const host = new TestHost();
  const all: [string, string, (peer: string) => number][] = [
    ['TCP sandbox→host', 'Gbit/s', (p) => iperf(p, host.ip4, false)],
    ['TCP host→sandbox', 'Gbit/s', (p) => iperf(p, host.ip4, true)],
    ['TCP connections', 'conn/s', (p) => client(p, 'connrate.mjs', [host.ip4, '8080'])],
    ['TCP connections, server closes', 'conn/s', (p) => client(p, 'connrate.mjs', [host.ip4, '8080'], ['8', 'server'])],
    ['UDP request/response', 'rr/s', (p) => client(p, 'udprr.mjs', [host.ip4, '7'])],
  ];
  const metrics = all.filter(([name]) => chosen(name));
  if (metrics.length > 0) {
    try {
      await host.start('services.mjs', ['--http', '8080', '--udp-echo', '7']);
      host.spawnInside(['iperf3', '-s', '-p', '5201']);
      await new Promise((r) => setTimeout(r, 500));
      const rows: string[][] = [];
      for (const [name, unit, measure] of metrics) {
        const figures: Record<string, number> = {};
        for (const peer of Object.keys(peers)) {
          try {
            figures[peer] = measure(peer);
          } catch (e) {
            console.error(`bench: ${(e as Error).message}`);
            figures[peer] = NaN;
          }
        }
        const t = figures.tapbox!;
        rows.push([name, `${fmt(t)} ${unit}`, ...['slirp4netns', 'pasta'].map((p) => `${fmt(figures[p]!)} (${fmt(t / figures[p]!)}x)`)]);
      }
      printTable(['metric (MTU ' + MTU + ', ' + SECONDS + ' s each)', 'tapbox', 'slirp4netns (tapbox ratio)', 'pasta (tapbox ratio)'], rows);
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
    if (metrics.length > 0) console.log('');
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
