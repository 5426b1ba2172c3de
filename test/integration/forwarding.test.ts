// TCP and UDP through our stack, with the Linux kernel as the peer: real programs in the sandbox (curl,
// iperf3, a Node client) against servers on a test host the test makes (198.18.0.0/15, 2001:db8::/32).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');
const ALLOW_TEST_HOST = ['--allow', '198.18.0.0/15', '--allow', '2001:db8::/32', '--no-summary'];

interface ProbeResult {
  ok?: boolean;
  error?: string;
  bytes?: number;
  sha256Match?: boolean;
  completed?: number;
  ms: number;
}

async function inSandbox(args: string[], flags = ALLOW_TEST_HOST): Promise<ProbeResult> {
  const r = await tapbox([...flags, '--', process.execPath, probe, ...args], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`probe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ProbeResult;
}

describe.runIf(canMakeTestHost)('forwarding through the stack to a test host', () => {
  let host: TestHost;
  beforeAll(async () => {
    host = new TestHost();
    await host.start('services.mjs', ['--http', '8080', '--tcp-echo', '7', '--udp-echo', '7', '--tcp-sink', '9', '--tcp-source', '19', '--tcp-stall-sink', '10']);
    host.spawnInside(['iperf3', '-s', '-p', '5201']);
  });
  afterAll(() => host?.destroy());

  it('curl fetches a page over IPv4 and IPv6', async () => {
    const r = await tapbox([...ALLOW_TEST_HOST, '--', 'sh', '-c', `curl -sS -m 10 http://${host.ip4}:8080/four && echo && curl -sS -m 10 "http://[${host.ip6}]:8080/six"`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hello from the test host: /four\nhello from the test host: /six');
  });

  it('uploads 200 MB byte-identical', async () => {
    const r = await inSandbox(['tcp-upload', host.ip4, '9', String(200 << 20)]);
    expect(r).toMatchObject({ ok: true, bytes: 200 << 20, sha256Match: true });
  });

  it('uploads 64 MB of random bytes byte-identical to a host that keeps stalling its reads', async () => {
    // The sandbox's bytes go from the stack's receive ring straight into the host socket while Node has
    // nothing queued for it, and through the stream (copied) when it has: the stalls make the relay
    // switch between the two all the time. A view of the ring kept past its batch (queued without its
    // copy) changes the hash: random bytes, no two segments alike.
    const r = await inSandbox(['tcp-upload', host.ip4, '10', String(64 << 20), 'random']);
    expect(r).toMatchObject({ ok: true, bytes: 64 << 20, sha256Match: true });
  });

  it('downloads 200 MB byte-identical, over IPv6', async () => {
    const r = await inSandbox(['tcp-download', host.ip6, '19', String(200 << 20)]);
    expect(r).toMatchObject({ ok: true, bytes: 200 << 20, sha256Match: true });
  });

  it('keeps a half-closed connection open the other way (the sink answers after our FIN)', async () => {
    const r = await inSandbox(['tcp-upload', host.ip4, '9', '12345']);
    expect(r).toMatchObject({ ok: true, bytes: 12345, sha256Match: true });
  });

  it('completes 500 concurrent connections', async () => {
    const r = await inSandbox(['tcp-many', host.ip4, '7', '500']);
    expect(r).toMatchObject({ ok: true, completed: 500 });
  });

  it('gives ECONNREFUSED for a closed port upstream', async () => {
    expect(await inSandbox(['tcp-connect', host.ip4, '1'])).toMatchObject({ error: 'ECONNREFUSED' });
  });

  it('gives ECONNREFUSED at once for a destination no rule allows', async () => {
    expect(await inSandbox(['tcp-connect', host.ip4, '8080'], ['--net', 'tap', '--no-summary'])).toMatchObject({ error: 'ECONNREFUSED' });
  });

  it('gives an error, not a hang, for a host that does not answer', async () => {
    // An address on the veth's subnet that nobody owns: ARP fails on the host.
    const r = await inSandbox(['tcp-connect', host.unusedIp4, '80']);
    expect(r.error).toMatch(/EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ECONNREFUSED/);
  });

  it('relays UDP both ways over IPv4 and IPv6', async () => {
    expect(await inSandbox(['udp-echo', host.ip4, '7'])).toMatchObject({ ok: true });
    expect(await inSandbox(['udp-echo', host.ip6, '7'])).toMatchObject({ ok: true });
  });

  it('passes the host\'s ICMP port unreachable back for UDP', async () => {
    expect(await inSandbox(['udp-echo', host.ip4, '9999'])).toMatchObject({ error: 'ECONNREFUSED' });
  });

  it('runs iperf3 both ways', async () => {
    const r = await tapbox([...ALLOW_TEST_HOST, '--', 'sh', '-c', `iperf3 -c ${host.ip4} -t 2 -J > /tmp/up.json && iperf3 -c ${host.ip4} -t 2 -R -J > /tmp/down.json && cat /tmp/up.json /tmp/down.json`]);
    expect(r.code).toBe(0);
    const [up, down] = r.stdout.split(/\n(?=\{)/).map((j) => JSON.parse(j) as { end: { sum_received: { bytes: number } } });
    expect(up!.end.sum_received.bytes).toBeGreaterThan(0);
    expect(down!.end.sum_received.bytes).toBeGreaterThan(0);
  });

  it('writes a pcap of tap0 that tcpdump reads', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      const pcap = join(dir, 'tap0.pcap');
      const r = await tapbox([...ALLOW_TEST_HOST, '--pcap', pcap, '--', 'curl', '-sS', '-m', '10', `http://${host.ip4}:8080/pcap`]);
      expect(r.code).toBe(0);
      const dump = spawnSync('tcpdump', ['-nn', '-r', pcap], { encoding: 'utf8' });
      expect(dump.status).toBe(0);
      expect(dump.stdout).toMatch(new RegExp(`10\\.0\\.2\\.100\\.\\d+ > ${host.ip4.replace(/\./g, '\\.')}\\.8080: Flags \\[S\\]`));
      expect(dump.stdout).toMatch(/HTTP|length [1-9]/);
    } finally {
      cleanup();
    }
  });
});
