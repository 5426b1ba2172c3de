// Ask mode: a lookup or a connection no rule allows is held and asked about, through the library's
// onRequest and on a terminal. The test host's DNS server logs every query it gets: it proves that a
// held name never went upstream before the yes, whatever shape the sandbox asks it in meanwhile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { asTestUser, cliPath, repoRoot, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const driver = join(repoRoot, 'test', 'helpers', 'ask-driver.mjs');
const probe = join(repoRoot, 'test', 'helpers', 'clients', 'ask-probe.py');
const ptyRun = join(repoRoot, 'test', 'helpers', 'pty-run.py');
type Line = Record<string, unknown> & { event: string };

describe.runIf(canMakeTestHost)('ask mode', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  let queries: string[] = [];

  beforeAll(async () => {
    scratch = userTempDir('tapbox-ask-');
    host = new TestHost();
    const zoneFile = join(scratch.dir, 'zone.json');
    const zone = Object.fromEntries(['once', 'deny', 'run', 'odd'].map((n) => [`${n}.ask.test`, { A: [host.ip4] }]));
    writeFileSync(zoneFile, JSON.stringify(zone));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--tcp-echo', '7'], (line) => queries.push((JSON.parse(line) as { query: string }).query.toLowerCase()));
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });
  const upstreamAsked = (name: string) => queries.filter((q) => q.replace(/\.$/, '') === name).length;

  /**
   * Runs the library driver; `answer(request, lines)` is called for each request once the probe said
   * "sent" (so every shape of the question was asked), and returns the line to answer with.
   */
  function drive(args: string[], options: object, answer: (request: Line) => string): Promise<Line[]> {
    const argv = asTestUser([process.execPath, driver, JSON.stringify({ command: 'python3', args: [probe, ...args], options: { dnsUpstream: [host.ip4], allow: ['unrelated.ask.test'], ...options } })]);
    return new Promise((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines: Line[] = [];
      let sent = false;
      const waiting: Line[] = [];
      const reply = () => {
        while (sent && waiting.length) child.stdin!.write(`${answer(waiting.shift()!)}\n`);
      };
      createInterface({ input: child.stdout! }).on('line', (text) => {
        const line = JSON.parse(text) as Line;
        lines.push(line);
        if (line.event === 'request') waiting.push(line);
        if (line.event === 'out' && line.line === 'sent') sent = true;
        reply();
      });
      child.on('close', () => resolve(lines));
    });
  }
  const outcome = (lines: Line[]) => JSON.parse(String(lines.filter((l) => l.event === 'out').at(-1)!.line)) as Record<string, unknown>;

  it('holds a lookup until onRequest says yes, in whatever shape it is asked, then a connection until the next yes', async () => {
    queries = [];
    const seen: [unknown, number][] = [];
    const lines = await drive(['once.ask.test', '7'], {}, (request) => {
      seen.push([request.kind, upstreamAsked('once.ask.test')]);
      return 'allow-once';
    });
    // Nothing went upstream before the yes to the lookup (then the answer did: 3 shapes, TXT filtered).
    expect(seen[0]).toEqual(['dns', 0]);
    const requests = lines.filter((l) => l.event === 'request');
    // Questions for the name (the shapes that arrived while it was held share one), then the connection.
    expect(requests[0]).toMatchObject({ kind: 'dns', name: 'once.ask.test', rule: 'once.ask.test', by: { exe: expect.stringMatching(/python3/) } });
    expect(requests.filter((r) => r.kind === 'flow')).toMatchObject([{ kind: 'flow', name: 'once.ask.test', proto: 'tcp', addr: host.ip4, port: 7, rule: 'tcp:once.ask.test:7' }]);
    expect(outcome(lines)).toEqual({ addrs: [host.ip4], echo: true });
    expect(upstreamAsked('once.ask.test')).toBeGreaterThan(0);
    expect(new Set(lines.filter((l) => l.event === 'ask').map((l) => l.note))).toEqual(new Set(['allowed once when asked']));
    // Once is once: no rule was added.
    expect(lines.filter((l) => l.event === 'policy')).toEqual([]);
  });

  it('never sends a name upstream when onRequest says no, throws, answers nonsense or never answers', async () => {
    for (const [answer, note] of [
      ['deny', 'denied when asked'],
      ['throw', /^no valid answer \(failed: the program failed\)$/],
      ['yes please', /^no valid answer/],
      ['never', 'no answer within 2 s'],
    ] as const) {
      queries = [];
      const lines = await drive(['deny.ask.test'], { askTimeout: 2 }, () => answer);
      expect(outcome(lines), answer).toEqual({ lookup: 'gaierror' });
      // One question (the answer stands for the rest of the lookup); every answer given is that one.
      const notes = lines.filter((l) => l.event === 'ask').map((l) => l.note);
      expect(notes.length).toBeGreaterThan(0);
      for (const n of notes) expect(n).toEqual(note instanceof RegExp ? expect.stringMatching(note) : note);
      expect(upstreamAsked('deny.ask.test'), answer).toBe(0);
      expect(lines.filter((l) => l.event === 'dns' && l.name === 'deny.ask.test').every((l) => l.verdict === 'deny')).toBe(true);
    }
  });

  it('adds the rule for the run on "allow", so the same question is not asked again', async () => {
    const argv = ['-c', 'import socket\nfor i in range(3): print(socket.gethostbyname("run.ask.test"), flush=True)'];
    const lines = await new Promise<Line[]>((resolve) => {
      const spec = { command: 'python3', args: argv, options: { dnsUpstream: [host.ip4], allow: ['unrelated.ask.test'] } };
      const child = spawn(...(([a, ...rest]) => [a!, rest] as const)(asTestUser([process.execPath, driver, JSON.stringify(spec)])), { stdio: ['pipe', 'pipe', 'inherit'] });
      const seen: Line[] = [];
      createInterface({ input: child.stdout! }).on('line', (text) => {
        const line = JSON.parse(text) as Line;
        seen.push(line);
        if (line.event === 'request') child.stdin!.write('allow\n');
      });
      child.on('close', () => resolve(seen));
    });
    expect(lines.filter((l) => l.event === 'request')).toHaveLength(1);
    expect(lines.filter((l) => l.event === 'out').map((l) => l.line)).toEqual([host.ip4, host.ip4, host.ip4]);
    expect(lines.filter((l) => l.event === 'policy')).toMatchObject([{ action: 'allow', rule: 'run.ask.test', origin: 'ask: allow for this run' }]);
  });

  it('does not ask about a name a deny rule refuses, nor in audit mode (a usage error)', async () => {
    queries = [];
    const lines = await drive(['odd.ask.test'], { allow: ['!odd.ask.test'] }, () => 'allow');
    expect(lines.filter((l) => l.event === 'request')).toEqual([]);
    expect(outcome(lines)).toEqual({ lookup: 'gaierror' });
    expect(upstreamAsked('odd.ask.test')).toBe(0);
    const usage = await drive(['odd.ask.test'], { audit: true }, () => 'allow');
    expect(usage).toContainEqual({ event: 'error', message: '--ask and --audit contradict each other (audit mode allows everything, so nothing would be asked); give one.' });
  });
});

describe.runIf(canMakeTestHost)('ask mode on a terminal', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  let queries: string[] = [];

  beforeAll(async () => {
    scratch = userTempDir('tapbox-ask-tty-');
    host = new TestHost();
    const zoneFile = join(scratch.dir, 'zone.json');
    const zone = Object.fromEntries(['once', 'save', 'deny', 'late', 'inside'].map((n) => [`${n}.tty.test`, { A: [host.ip4] }]));
    writeFileSync(zoneFile, JSON.stringify(zone));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--tcp-echo', '7'], (line) => queries.push((JSON.parse(line) as { query: string }).query.toLowerCase()));
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });
  const upstreamAsked = (name: string) => queries.filter((q) => q.replace(/\.$/, '') === name).length;

  /** Runs `tapbox FLAGS -- COMMAND` on a pty; at each step's prompt `atStep(n)` runs before the keys are typed. */
  function onTerminal(flags: string[], command: string[], steps: [string, string][], atStep: (n: number) => void = () => {}): Promise<{ code: number; output: string }> {
    const argv = asTestUser(['python3', ptyRun, process.execPath, cliPath, '--dns-upstream', host.ip4, '--allow', 'unrelated.tty.test', '--no-summary', ...flags, '--', ...command]);
    return new Promise((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], cwd: scratch.dir, env: { ...process.env, PTY_STEPS: JSON.stringify(steps) } });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      createInterface({ input: child.stderr! }).on('line', (line) => {
        if (!line.startsWith('{"step"')) return;
        atStep((JSON.parse(line) as { step: number }).step);
        child.stdin!.write('\n');
      });
      child.on('close', () => resolve(JSON.parse(out) as { code: number; output: string }));
    });
  }
  const probeResult = (output: string) => JSON.parse(/^\{"(?:addrs|lookup)".*$/m.exec(output)![0]) as Record<string, unknown>;

  it('asks on the terminal, naming the process; "o" allows the lookup once, then the connection once', async () => {
    queries = [];
    const before: number[] = [];
    const r = await onTerminal(['--ask'], ['python3', probe, 'once.tty.test', '7'], [['look up once\\.tty\\.test', 'o'], ['connect to tcp once\\.tty\\.test:7', 'o']], () => before.push(upstreamAsked('once.tty.test')));
    expect(before[0]).toBe(0); // held: nothing went upstream before the first "o"
    expect(r.output).toMatch(/tapbox: the sandbox asks to look up once\.tty\.test/);
    expect(r.output).toMatch(/asked by python3[.\d]*, pid \d+, in /);
    expect(r.output).toMatch(/\[o\] allow once {3}\[r\] allow for this run {3}\[d\] deny/);
    expect(probeResult(r.output)).toEqual({ addrs: [host.ip4], echo: true });
    expect(r.code).toBe(0);
  });

  it('"a" allows for the run and adds the rule to the --ask-save file', async () => {
    const saveFile = join(scratch.dir, 'saved.allow');
    const r = await onTerminal(['--ask', '--ask-save', saveFile], ['python3', probe, 'save.tty.test'], [['look up save\\.tty\\.test', 'a']]);
    expect(r.output).toMatch(/\[a\] allow and add to .*saved\.allow/);
    expect(probeResult(r.output)).toEqual({ addrs: [host.ip4] });
    expect(readFileSync(saveFile, 'utf8')).toMatch(/^save\.tty\.test {2}# allowed when asked on \S+; asked by python3/);
  });

  it('"d" denies, and no answer in time denies: the name never goes upstream', async () => {
    queries = [];
    const denied = await onTerminal(['--ask'], ['python3', probe, 'deny.tty.test'], [['look up deny\\.tty\\.test', 'd']]);
    expect(probeResult(denied.output)).toEqual({ lookup: 'gaierror' });
    const late = await onTerminal(['--ask', '--ask-timeout', '2'], ['python3', probe, 'late.tty.test'], [['look up late\\.tty\\.test', '']]);
    expect(late.output).toMatch(/\(no answer: deny\)/);
    expect(probeResult(late.output)).toEqual({ lookup: 'gaierror' });
    expect(upstreamAsked('deny.tty.test') + upstreamAsked('late.tty.test')).toBe(0);
  });

  it('cannot be answered from inside the sandbox, by typing on its terminal or pushing keys into it', async () => {
    queries = [];
    // While the question waits, the sandbox writes "r" answers to its terminal and tries TIOCSTI.
    const attacker = `import fcntl, os, subprocess, sys, termios, time
p = subprocess.Popen([sys.executable, "${probe}", "inside.tty.test"])
tty = os.open("/dev/tty", os.O_RDWR)
pushed = 0
while p.poll() is None:
    os.write(tty, b"r\\r\\na\\r\\n")
    try:
        fcntl.ioctl(tty, termios.TIOCSTI, b"r")
        pushed += 1
    except OSError:
        pass
    time.sleep(0.05)
print("pushed", pushed, flush=True)
`;
    const r = await onTerminal(['--ask', '--ask-timeout', '2'], ['python3', '-c', attacker], [['look up inside\\.tty\\.test', '']]);
    expect(r.output).toMatch(/\(no answer: deny\)/);
    expect(probeResult(r.output)).toEqual({ lookup: 'gaierror' });
    expect(r.output).toMatch(/pushed 0/);
    expect(upstreamAsked('inside.tty.test')).toBe(0);
  });

  it('is a usage error without a terminal, naming the fix', async () => {
    const argv = asTestUser(['setsid', '-w', process.execPath, cliPath, '--ask', '--', 'true']);
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(r.stderr).toBe('tapbox: --ask asks on your terminal, and tapbox has none here; run it from a terminal (or, in the library, answer with onRequest).\n');
    expect(r.code).toBe(2);
  });
});
