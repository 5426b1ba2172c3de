// `npm run soak`: a mixed workload (bulk both ways, many short connections, DNS lookups, UDP sessions)
// from inside one tapbox sandbox against a test host (a netns on a veth pair, 198.18.0.0/15), for
// SOAK_SECONDS (default 600). The supervisor logs a stats line every SOAK_SAMPLE_MS (default 5000;
// TAPBOX_STATS_MS, src/egress/audit/stats.ts): its RSS, open fds, event-loop delay and the stack's gauges.
// Prints the curve, then start / mid / end and the growth, and the workload's counters. Exits non-zero
// if the workload saw an error or the supervisor's fds grew between mid and end.
// Needs root (the test host); tapbox runs as the unprivileged test user. SOAK_OUT=FILE also writes the
// samples as JSON.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestHost } from '../test/helpers/testhost.js';
import { asTestUser, cliPath, repoRoot } from '../test/helpers/tapbox.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_MS ?? 5000);
const NAMES = 200;

interface Stats {
  time: number;
  rssBytes: number;
  heapUsedBytes: number;
  fds: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  tcpConnections?: number;
  udpSessions?: number;
  tcpBufferedBytes?: number;
}

const mib = (n: number) => (n / 2 ** 20).toFixed(1);

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('soak: run as root (it makes a test host: a network namespace and a veth pair); tapbox itself runs as the test user.');
    return 2;
  }
  const work = mkdtempSync(join(tmpdir(), 'tapbox-soak-'));
  chmodSync(work, 0o777);
  const zone: Record<string, { A: string[] }> = {};
  const host = new TestHost();
  try {
    for (let i = 0; i < NAMES; i++) zone[`n${i}.soak.test`] = { A: [host.ip4] };
    writeFileSync(join(work, 'zone.json'), JSON.stringify(zone));
    await host.start('services.mjs', ['--dns', '53', join(work, 'zone.json'), '--tcp-echo', '7', '--udp-echo', '7', '--tcp-sink', '9', '--tcp-source', '19']);
    const log = join(work, 'audit.log');
    const argv = asTestUser([
      'env',
      `TAPBOX_STATS_MS=${SAMPLE_MS}`,
      process.execPath,
      cliPath,
      '--allow', '198.18.0.0/15',
      '--allow', '*.soak.test',
      '--dns-upstream', host.ip4,
      '--log-format', 'json',
      '--log-file', log,
      '--no-summary',
      '--',
      process.execPath,
      join(repoRoot, 'bench', 'clients', 'soak-load.mjs'),
      host.ip4,
      String(SECONDS),
      String(NAMES),
    ]);
    console.log(`soak: ${SECONDS} s of bulk + short connections + DNS + UDP against ${host.ip4}, a sample every ${SAMPLE_MS / 1000} s`);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], cwd: work });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((r) => child.on('close', r));

    const samples: Stats[] = readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"event":"stats"'))
      .map((l) => JSON.parse(l) as Stats);
    const counters = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const last = counters[counters.length - 1] ?? {};
    const t0 = samples[0]?.time ?? 0;
    console.log('    t(s)  rss(MiB)  heap(MiB)  fds  loop p99(ms)  loop max(ms)  tcp conns  udp sessions  tcp buffered(MiB)');
    for (const s of samples) {
      console.log(
        `${String(Math.round((s.time - t0) / 1000)).padStart(8)}  ${mib(s.rssBytes).padStart(8)}  ${mib(s.heapUsedBytes).padStart(9)}  ${String(s.fds).padStart(3)}  ${String(s.loopDelayP99Ms).padStart(12)}  ${String(s.loopDelayMaxMs).padStart(12)}  ${String(s.tcpConnections ?? '-').padStart(9)}  ${String(s.udpSessions ?? '-').padStart(12)}  ${(s.tcpBufferedBytes === undefined ? '-' : mib(s.tcpBufferedBytes)).padStart(17)}`,
      );
    }
    // Start: the first sample with the workload running; mid and end: the middle and the last during it
    // (the very last line is logged at shutdown).
    const running = samples.slice(1, -1);
    const pick = running.length ? [running[0]!, running[Math.floor(running.length / 2)]!, running[running.length - 1]!] : [];
    const names = ['start', 'mid', 'end'];
    pick.forEach((s, i) => console.log(`soak ${names[i]}: t=${Math.round((s.time - t0) / 1000)} s rss ${mib(s.rssBytes)} MiB, heap ${mib(s.heapUsedBytes)} MiB, ${s.fds} fds, loop delay p99 ${s.loopDelayP99Ms} ms`));
    const maxRss = Math.max(...samples.map((s) => s.rssBytes));
    const maxP99 = Math.max(...samples.map((s) => s.loopDelayP99Ms));
    console.log(`soak peak: rss ${mib(maxRss)} MiB, loop delay p99 ${maxP99} ms`);
    console.log(`soak workload: ${JSON.stringify(last)}`);
    console.log(`soak: the command exited ${code}`);
    if (process.env.SOAK_OUT) writeFileSync(process.env.SOAK_OUT, JSON.stringify({ seconds: SECONDS, samples, workload: last }, null, 2));
    let failed = code !== 0;
    if (pick.length === 3 && pick[2]!.fds > pick[1]!.fds + 16) {
      console.error(`soak: the supervisor's open fds grew from ${pick[1]!.fds} (mid) to ${pick[2]!.fds} (end)`);
      failed = true;
    }
    return failed ? 1 : 0;
  } finally {
    host.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`soak: ${e.message}`);
    process.exit(1);
  },
);
