// `npm run bench:attribution`: what naming the process behind each flow costs. The connection-rate
// client (clients/connrate.mjs: connect, small request, response, close; 8 at once) runs in tapbox with
// attribution on (the default) and off (--no-attribution), in enforcing and in audit mode, the runs
// interleaved; prints conn/s for each, their ratio, and the supervisor's own count of lookups and the
// time they took (from its debug log). Needs root to make the test host, like bench/run.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientResult } from './peer-run.js';
import { TestHost } from '../test/helpers/testhost.js';
import { asTestUser, cliPath, isRoot, repoRoot, testIds } from '../test/helpers/tapbox.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Run {
  rate: number;
  lookups: number;
  lookupMs: number;
}

function measure(host: string, flags: string[], logFile: string): Run {
  const argv = asTestUser([process.execPath, cliPath, '--no-summary', '--log-level', 'debug', '--log-format', 'json', '--log-file', logFile, ...flags, '--', process.execPath, join(repoRoot, 'bench', 'clients', 'connrate.mjs'), host, '8080', String(SECONDS)]);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: (SECONDS + 60) * 1000, cwd: '/tmp' });
  if (r.status !== 0) throw new Error(`tapbox ${flags.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`);
  const { ops, seconds } = clientResult(r.stdout);
  const stats = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"attribution"'))
    .map((l) => (JSON.parse(l) as { attribution: { lookups: number; totalMs: number } }).attribution)[0];
  return { rate: ops / seconds, lookups: stats?.lookups ?? 0, lookupMs: stats?.totalMs ?? 0 };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench needs root to create its test host (a network namespace); run it with sudo.');
  const host = new TestHost();
  const dir = mkdtempSync(join(tmpdir(), 'tapbox-bench-'));
  if (isRoot) chownSync(dir, testIds.uid, testIds.gid);
  try {
    await host.start('services.mjs', ['--http', '8080']);
    const modes: [string, string[]][] = [
      ['--audit (attribution all)', ['--audit']],
      ['--audit --no-attribution', ['--audit', '--no-attribution']],
      ['enforcing, --attribution all', ['--allow', '198.18.0.0/15', '--attribution', 'all']],
      ['enforcing (denied only)', ['--allow', '198.18.0.0/15']],
    ];
    const runs = new Map<string, Run[]>(modes.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      modes.forEach(([name, flags], m) => runs.get(name)!.push(measure(host.ip4, flags, join(dir, `log-${round}-${m}.json`))));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`connection rate, ${SECONDS} s per run, median of ${ROUNDS} interleaved runs (8 concurrent connect/request/close loops)`);
    for (let i = 0; i < modes.length; i += 2) {
      const [on, off] = [modes[i]![0], modes[i + 1]![0]];
      const a = runs.get(on)!;
      const b = runs.get(off)!;
      const lookups = a.reduce((n, r) => n + r.lookups, 0);
      const ms = a.reduce((n, r) => n + r.lookupMs, 0);
      console.log(`  ${on.padEnd(30)} ${median(a.map((r) => r.rate)).toFixed(0).padStart(6)} conn/s   (runs: ${a.map((r) => r.rate.toFixed(0)).join(', ')})`);
      console.log(`  ${off.padEnd(30)} ${median(b.map((r) => r.rate)).toFixed(0).padStart(6)} conn/s   (runs: ${b.map((r) => r.rate.toFixed(0)).join(', ')})`);
      console.log(`    ratio on/off ${(median(a.map((r) => r.rate)) / median(b.map((r) => r.rate))).toFixed(2)}; ${lookups} lookups took ${(ms / Math.max(1, lookups) * 1000).toFixed(0)} µs each on average in the supervisor`);
    }
  } finally {
    host.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
});
