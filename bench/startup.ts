// Start-up time (issue 14): how long `tapbox ... -- true` takes from exec to exit, next to `node -e 0`
// (the floor of any Node program) and `pasta --config-net -- true` (a C peer that also sets up a
// network namespace). Each command runs as the unprivileged test user, RUNS times, interleaved (one
// run of each per round) so that the machine's load drifts over all alike; the median is kept.
import { spawnSync } from 'node:child_process';
import { asTestUser, cliPath } from '../test/helpers/tapbox.js';

const RUNS = 15;

export interface StartupFigure {
  name: string;
  /** Median wall-clock milliseconds of the tapbox command. */
  ms: number;
  /** The same for `node -e 0` and `pasta --config-net -- true` (NaN when pasta fails here). */
  node: number;
  pasta: number;
}

const TAPBOX: [string, string[]][] = [
  ['start-up, --net tap -- true', ['--net', 'tap', '--no-summary', '--', 'true']],
  ['start-up, --net none -- true', ['--net', 'none', '--', 'true']],
  ['start-up, --help', ['--help']],
];

/** Wall-clock milliseconds of one run of argv as the test user, or NaN when it fails. */
function once(argv: string[]): number {
  const full = asTestUser(argv);
  const start = process.hrtime.bigint();
  const r = spawnSync(full[0]!, full.slice(1), { stdio: 'ignore', cwd: '/tmp', timeout: 30_000 });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  return r.status === 0 ? ms : NaN;
}

function median(xs: number[]): number {
  if (xs.some((x) => Number.isNaN(x))) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1]!;
}

export function measureStartup(): StartupFigure[] {
  const commands: [string, string[]][] = [
    ['node', [process.execPath, '-e', '0']],
    ['pasta', ['pasta', '--quiet', '--config-net', '--', 'true']],
    ...TAPBOX.map(([name, args]): [string, string[]] => [name, [process.execPath, cliPath, ...args]]),
  ];
  // runuser itself is part of every figure; it cancels out in the ratios.
  const times = new Map<string, number[]>(commands.map(([name]) => [name, []]));
  for (let round = 0; round < RUNS; round++) {
    for (const [name, argv] of commands) times.get(name)!.push(once(argv));
  }
  const node = median(times.get('node')!);
  const pasta = median(times.get('pasta')!);
  return TAPBOX.map(([name]) => ({ name, ms: median(times.get(name)!), node, pasta }));
}
