// Changing the policy of a running sandbox through the library: a denied name opens without a
// restart, a new deny stops new flows at once, and resets the open ones only when asked to.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { asTestUser, isRoot, repoRoot, testIds, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const driver = join(repoRoot, 'test', 'helpers', 'live-policy.mjs');
type Line = Record<string, unknown> & { event: string };

// Inside the sandbox: each step prints a line, then waits for the driver's "go" on stdin.
const CLIENT = `import socket, sys
def step(name):
    print(name, flush=True)
    sys.stdin.readline()
def connect():
    try:
        return socket.create_connection(("late.live.test", 7), timeout=5)
    except OSError as e:
        print("refused", type(e).__name__, flush=True)
def echo(s):
    try:
        s.sendall(b"\\x00ping")  # neither TLS nor HTTP: passes on the port the rule names
        return s.recv(5) == b"\\x00ping"
    except OSError as e:
        return type(e).__name__
assert connect() is None
step("blocked")
a, b = connect(), connect()
print("echo", echo(a), echo(b), flush=True)
step("connected")
print("echo", echo(a), echo(b), flush=True)
assert connect() is None
step("denied without reset")
print("echo", echo(a), echo(b), flush=True)
`;

describe.runIf(canMakeTestHost)('live policy changes on a running sandbox', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };

  beforeAll(async () => {
    scratch = userTempDir('tapbox-live-');
    host = new TestHost();
    const zoneFile = join(scratch.dir, 'zone.json');
    writeFileSync(zoneFile, JSON.stringify({ 'late.live.test': { A: [host.ip4] } }));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--tcp-echo', '7']);
    writeFileSync(join(scratch.dir, 'client.py'), CLIENT);
    if (isRoot) chownSync(join(scratch.dir, 'client.py'), testIds.uid, testIds.gid);
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  function drive(spec: object): Promise<Line[]> {
    const argv = asTestUser([process.execPath, driver, JSON.stringify(spec)]);
    return new Promise((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], cwd: scratch.dir });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.on('close', () => resolve(out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line)));
    });
  }

  it('opens a denied name without a restart, then denies it: new flows at once, open ones only when asked to reset', async () => {
    const lines = await drive({
      command: 'python3',
      args: ['client.py'],
      options: { cwd: scratch.dir, allow: ['other.live.test'], dnsUpstream: [host.ip4] },
      steps: {
        // A port the rule names: the echo protocol is neither TLS nor HTTP, whose name could be checked.
        blocked: [{ call: 'allow', rule: 'late.live.test:7' }],
        connected: [{ call: 'deny', rule: 'late.live.test' }],
        'denied without reset': [{ call: 'deny', rule: 'late.live.test', resetFlows: true }],
      },
    });
    const out = lines.filter((l) => l.event === 'out').map((l) => l.line);
    expect(out).toEqual([
      'refused gaierror', // not in the allowlist: the name does not resolve
      'blocked',
      'echo True True', // allowed without a restart
      'connected',
      'echo True True', // a deny without resetFlows leaves open flows alone...
      'refused gaierror', // ...but a new lookup is refused at once
      'denied without reset',
      'echo ConnectionResetError ConnectionResetError', // reset when asked
    ]);
    const changes = lines.filter((l) => l.event === 'policy');
    expect(changes).toEqual([
      { event: 'policy', action: 'allow', rule: 'late.live.test:7', origin: 'sandbox.allow', replaced: [], reset: 0 },
      { event: 'policy', action: 'deny', rule: '!late.live.test', origin: 'sandbox.deny', replaced: [], reset: 0 },
      { event: 'policy', action: 'deny', rule: '!late.live.test', origin: 'sandbox.deny', replaced: [], reset: 2 },
    ]);
    expect(lines.find((l) => l.event === 'close')).toMatchObject({ code: 0, rules: ['other.live.test', 'late.live.test:7', '!late.live.test'] });
  });

  it('refuses a bad rule with one sentence naming the fix, and changes nothing', async () => {
    const lines = await drive({
      command: 'python3',
      args: ['-c', 'import sys; print("ready", flush=True); sys.stdin.readline()'],
      options: { cwd: scratch.dir, allow: ['other.live.test'] },
      steps: { ready: [{ call: 'allow', rule: '*.com' }, { call: 'allow', rule: '!x.live.test' }] },
    });
    const called = lines.filter((l) => l.event === 'called');
    expect(called[0]!.error).toMatch(/^sandbox\.allow: bad rule "\*\.com": .*; name the domain, e\.g\. \*\.example\.com\.$/);
    expect(called[1]!.error).toBe('sandbox.allow: "!x.live.test" is a deny rule; give it to deny() instead.');
    expect(lines.filter((l) => l.event === 'policy')).toEqual([]);
    expect(lines.find((l) => l.event === 'close')).toMatchObject({ rules: ['other.live.test'] });
  });
});
