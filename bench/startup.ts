// Start-up time (issue 14): how long `tapbox ... -- true` takes from exec to exit, next to `node -e 0`
// (the floor of any Node program) and `pasta --config-net -- true` (a C peer that also sets up a
// network namespace). Each command runs as the unprivileged test user, RUNS times, interleaved (one
// run of each per round) so that the machine's load drifts over all alike; the median is kept, of the
// wall clock and of the CPU time (steadier than the wall clock on a busy machine).
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
  /** Median CPU milliseconds (user + system, the command and all it waited for) of tapbox and `node -e 0`. */
  cpu: number;
  nodeCpu: number;
}

const TAPBOX: [string, string[]][] = [
  ['start-up, --net tap -- true', ['--net', 'tap', '--no-summary', '--', 'true']],
  ['start-up, --net none -- true', ['--net', 'none', '--', 'true']],
  ['start-up, --help', ['--help']],
];

// Node reports no CPU time of its children, so a few lines of Python fork, exec and wait4 the command
// (with the signals Python ignores set back to their defaults, as its subprocess module does: pasta
// refuses to run with SIGPIPE ignored).
const TIMED_RUN = `import os, signal, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ): signal.signal(sig, signal.SIG_DFL)
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2): os.dup2(null, fd)
    os.close(null)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print((time.perf_counter() - t) * 1000, (usage.ru_utime + usage.ru_stime) * 1000, os.waitstatus_to_exitcode(status))`;

/** Wall-clock and CPU milliseconds of one run of argv as the test user, or NaN when it fails. */
function once(argv: string[]): { ms: number; cpu: number } {
  const r = spawnSync('python3', ['-c', TIMED_RUN, ...asTestUser(argv)], { encoding: 'utf8', cwd: '/tmp', timeout: 30_000 });
  const [ms, cpu, status] = r.stdout.trim().split(' ').map(Number);
  return r.status === 0 && status === 0 ? { ms: ms!, cpu: cpu! } : { ms: NaN, cpu: NaN };
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
  const times = new Map<string, { ms: number; cpu: number }[]>(commands.map(([name]) => [name, []]));
  for (let round = 0; round < RUNS; round++) {
    for (const [name, argv] of commands) times.get(name)!.push(once(argv));
  }
  const wall = (name: string) => median(times.get(name)!.map((t) => t.ms));
  const cpu = (name: string) => median(times.get(name)!.map((t) => t.cpu));
  return TAPBOX.map(([name]) => ({ name, ms: wall(name), node: wall('node'), pasta: wall('pasta'), cpu: cpu(name), nodeCpu: cpu('node') }));
}
