// The caps set on the command line, in a real sandbox against a test host: `--max-flows 2` lets two
// connections stay open and refuses the third (the program sees ECONNREFUSED at once) with a 'flows'
// limit event carrying the value given; the two open ones keep working. The library's `caps` option
// does the same, seen through its 'limit' event.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { asTestUser, repoRoot, tapbox } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');
const driver = join(repoRoot, 'test', 'helpers', 'library-spawn.mjs');

/** spawn() of the library as the test user (test/helpers/library-spawn.mjs): the lines it printed. */
function library(command: string, args: string[], options: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  const argv = asTestUser([process.execPath, driver, JSON.stringify({ api: 'spawn', command, args, options })]);
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', () => resolve(out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)));
  });
}

interface LogLine {
  event?: string;
  limit?: string;
  value?: number;
  count?: number;
  verdict?: string;
  reason?: string;
  port?: number;
}

describe.runIf(canMakeTestHost)('caps from the command line and the library', () => {
  let host: TestHost;
  beforeAll(async () => {
    host = new TestHost();
    await host.start('services.mjs', ['--tcp-echo', '7']);
  });
  afterAll(() => host?.destroy());

  it('--max-flows 2 refuses the third concurrent connection with a flows limit event; the open two still echo', async () => {
    // Two connections held open on fds 3 and 4 (bash /dev/tcp), a third tried while they are, then a
    // line through each of the first two.
    const script = [
      `exec 3<>/dev/tcp/${host.ip4}/7 4<>/dev/tcp/${host.ip4}/7`,
      `${process.execPath} ${probe} tcp-connect ${host.ip4} 7`,
      'echo one >&3; read -r a <&3; echo two >&4; read -r b <&4; echo "$a $b"',
      'exec 3>&- 4>&-',
    ].join('\n');
    const r = await tapbox(['--no-summary', '--log-format', 'json', '--allow', '198.18.0.0/15', '--max-flows', '2', '--', 'bash', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const [third, echoed] = r.stdout.trim().split('\n');
    expect(JSON.parse(third!)).toMatchObject({ error: 'ECONNREFUSED' });
    expect(echoed).toBe('one two');
    const log = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as LogLine);
    expect(log.filter((l) => l.event === 'limit').map((l) => [l.limit, l.value, l.count])).toEqual([['flows', 2, 1]]);
    expect(log.filter((l) => l.event === 'flow' && l.verdict === 'deny')).toEqual([
      expect.objectContaining({ port: 7, reason: 'already 2 flows open (the connection limit)' }),
    ]);
  });

  it("the library's caps.flows: a second connection while one is open is refused, with a 'limit' event", async () => {
    const script = `exec 3<>/dev/tcp/${host.ip4}/7; ${process.execPath} ${probe} tcp-connect ${host.ip4} 7; exec 3>&-`;
    const lines = await library('bash', ['-c', script], { allow: ['198.18.0.0/15'], caps: { flows: 1 } });
    const close = lines.find((l) => l.event === 'close')!;
    expect(JSON.parse(String(close.stdout).trim())).toMatchObject({ error: 'ECONNREFUSED' });
    expect(lines.filter((l) => l.event === 'limit')).toEqual([{ event: 'limit', limit: 'flows', value: 1, count: 1, detail: expect.any(String) }]);
  });
});
