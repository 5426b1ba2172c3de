// UDP through a real sandbox, as the test user, with the native relay (native/addon/udp_relay.cc) on —
// the default on a plain TAP — and off (--pcap must see every frame, so its flows stay on the stack's
// path): the same cases must give the same answers and the same byte counts in the report, and the
// stats lines say which path carried the datagrams. The frame-level attacks (spoofed source, changed
// port, fragments, a frame for a revoked flow) are in test/unit/udp-relay.test.ts, where the test
// writes the sandbox's frames itself: inside a sandbox no one has CAP_NET_RAW over tap0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { asTestUser, isRoot, repoRoot, tapbox, testIds, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

// Inside the sandbox. echo HOST PORT COUNT SIZE: one socket, COUNT datagrams of SIZE bytes, each
// answer awaited -> {"answered"}. flows HOST PORT COUNT: COUNT sockets send one datagram each ->
// {"answered", "refused"}. steps HOST PORT: for the live-policy driver, three echoes, a step, one more.
const CLIENT = `import json, socket, sys
def sock(host):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    return s
def ask(s, host, port, data):
    try:
        s.sendto(data, (host, port))
        return "answered" if s.recv(65535) == data else "wrong"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "echo":
    s = sock(host)
    results = [ask(s, host, port, bytes([65 + i % 26]) * int(sys.argv[5])) for i in range(int(sys.argv[4]))]
    print(json.dumps({"answered": results.count("answered"), "other": [r for r in results if r != "answered"]}))
elif mode == "flows":
    socks = [sock(host) for _ in range(int(sys.argv[4]))]
    results = [ask(s, host, port, b"hello") for s in socks]
    print(json.dumps({"answered": results.count("answered"), "refused": len(results) - results.count("answered")}))
elif mode == "steps":
    s = sock(host)
    first = [ask(s, host, port, b"one") for _ in range(3)]  # the second and third through the relay
    print("first", first[-1], flush=True)
    sys.stdin.readline()
    print("after", ask(s, host, port, b"two"), flush=True)
`;

interface LogLine {
  event?: string;
  udpRelayedIn?: number;
  udpRelayedOut?: number;
}

describe.runIf(canMakeTestHost)('UDP through the native relay and through the stack', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  let client: string;

  beforeAll(async () => {
    scratch = userTempDir('tapbox-udp-relay-');
    client = join(scratch.dir, 'client.py');
    writeFileSync(client, CLIENT);
    if (isRoot) chownSync(client, testIds.uid, testIds.gid);
    host = new TestHost();
    await host.start('services.mjs', ['--udp-echo', '7', '--udp-echo', '9']);
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  /** Runs the client under tapbox with `flags`; its JSON lines, the report's destinations and the stats lines. */
  async function run(flags: string[], script: string) {
    const { dir, cleanup } = userTempDir();
    try {
      // --pcap takes the capture's path here.
      if (flags.at(-1) === '--pcap') flags = [...flags, join(dir, 'tap0.pcap')];
      const report = join(dir, 'report.json');
      const log = join(dir, 'audit.log');
      const r = await tapbox(['--log-format', 'json', '--log-file', log, '--report', report, '--no-summary', ...flags, '--', 'sh', '-c', script], {
        timeoutMs: 120_000,
        cwd: scratch.dir,
        env: { ...process.env, TAPBOX_STATS_MS: '200' },
      });
      expect(r.code, r.stderr).toBe(0);
      const out = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const { destinations } = JSON.parse(readFileSync(report, 'utf8')) as { destinations: { destination: string; bytesUp: number; bytesDown: number; verdict: string }[] };
      const stats = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine).filter((l) => l.event === 'stats');
      return { out, destinations, relayedIn: stats.at(-1)?.udpRelayedIn ?? 0, relayedOut: stats.at(-1)?.udpRelayedOut ?? 0 };
    } finally {
      cleanup();
    }
  }

  for (const [path, extra] of [
    ['native relay', [] as string[]],
    // Below MTU 65520 the TAP has the virtio-net header: the sandbox's kernel leaves UDP checksums to us.
    ['native relay at --mtu 1500 (partial checksums)', ['--mtu', '1500']],
    ['stack (--pcap)', ['--pcap']],
  ] as const) {
    it(`echoes both ways over IPv4 and IPv6 with the bytes counted in the report: ${path}`, async () => {
      const allow = ['--allow', `udp:${host.ip4}:7`, '--allow', `udp:[${host.ip6}]:7`];
      const r = await run([...allow, ...extra], `python3 client.py echo ${host.ip4} 7 20 100 && python3 client.py echo ${host.ip6} 7 20 1000`);
      expect(r.out).toEqual([
        { answered: 20, other: [] },
        { answered: 20, other: [] },
      ]);
      expect(r.destinations).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ destination: host.ip4, bytesUp: 2000, bytesDown: 2000 }),
          expect.objectContaining({ destination: host.ip6, bytesUp: 20000, bytesDown: 20000 }),
        ]),
      );
      if (extra[0] !== '--pcap') {
        // All but each flow's first datagram went through C; every answer was built there.
        expect(r.relayedIn).toBe(38);
        expect(r.relayedOut).toBe(40);
      } else {
        expect(r.relayedIn + r.relayedOut).toBe(0);
      }
    }, 150_000);
  }

  it('never relays to a port no rule allows, and holds --max-flows', async () => {
    const r = await run(
      ['--allow', `udp:${host.ip4}:7`, '--max-flows', '100'],
      `python3 client.py echo ${host.ip4} 9 1 10 && python3 client.py flows ${host.ip4} 7 101`,
    );
    expect(r.out[0]).toMatchObject({ answered: 0 });
    expect(r.out[1]).toEqual({ answered: 100, refused: 1 });
    expect(r.relayedIn).toBe(0); // one datagram per flow: each went through the stack first
  }, 150_000);

  it('stops a relayed flow at once when a live deny rule revokes it', async () => {
    const driver = join(repoRoot, 'test', 'helpers', 'live-policy.mjs');
    const spec = {
      command: 'python3',
      args: ['client.py', 'steps', host.ip4, '7'],
      options: { cwd: scratch.dir, allow: [`udp:${host.ip4}:7`] },
      steps: { 'first answered': [{ call: 'deny', rule: `udp:${host.ip4}:7`, resetFlows: true }] },
    };
    const argv = asTestUser([process.execPath, driver, JSON.stringify(spec)]);
    const lines = await new Promise<Record<string, unknown>[]>((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], cwd: scratch.dir });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.on('close', () => resolve(out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)));
    });
    expect(lines.filter((l) => l.event === 'out').map((l) => l.line)).toEqual(['first answered', expect.stringMatching(/^after (OSError|ConnectionRefusedError|timeout|\w+Error)$/)]);
    expect(lines.find((l) => l.event === 'policy')).toMatchObject({ action: 'deny', reset: 1 });
  }, 150_000);
});
