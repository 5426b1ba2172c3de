// The TAP offloads (virtio-net header: checksums left to us, TCP super-segments larger than the MTU)
// with the Linux kernel as the peer: large transfers at --mtu 1500 arrive byte-identical both ways,
// over IPv4 and IPv6, and the pcap shows the sandbox really handed over frames larger than the MTU;
// UDP, whose checksums the sandbox also leaves to us, still goes through.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');
const FLAGS = ['--mtu', '1500', '--allow', '198.18.0.0/15', '--allow', '2001:db8::/32', '--no-summary'];
const SIZE = 50 << 20;

async function inSandbox(args: string[], extra: string[] = []): Promise<Record<string, unknown>> {
  const r = await tapbox([...FLAGS, ...extra, '--', process.execPath, probe, ...args], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`probe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

/** Lengths of the frames the sandbox sent (source MAC: the sandbox's) in a pcap file. */
function framesFromSandbox(path: string): number[] {
  const pcap = readFileSync(path);
  const lengths: number[] = [];
  for (let off = 24; off + 16 <= pcap.length; ) {
    const length = pcap.readUInt32LE(off + 8);
    const frame = pcap.subarray(off + 16, off + 16 + length);
    if (frame.subarray(6, 12).equals(Buffer.from([2, 0, 0, 0, 1, 0]))) lengths.push(length);
    off += 16 + length;
  }
  return lengths;
}

describe.runIf(canMakeTestHost)('the TAP offloads at --mtu 1500', () => {
  let host: TestHost;
  beforeAll(async () => {
    host = new TestHost();
    await host.start('services.mjs', ['--tcp-sink', '9', '--tcp-source', '19', '--udp-echo', '7']);
  });
  afterAll(() => host?.destroy());

  for (const family of [4, 6] as const) {
    it(`uploads 50 MB byte-identical over IPv${family}, in super-segments larger than the MTU`, async () => {
      const { dir, cleanup } = userTempDir();
      try {
        const pcap = join(dir, 'tap0.pcap');
        const r = await inSandbox(['tcp-upload', family === 4 ? host.ip4 : host.ip6, '9', String(SIZE)], ['--pcap', pcap]);
        expect(r).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
        expect(Math.max(...framesFromSandbox(pcap))).toBeGreaterThan(1514);
      } finally {
        cleanup();
      }
    });
  }

  it('relays UDP both ways over IPv4 and IPv6', async () => {
    expect(await inSandbox(['udp-echo', host.ip4, '7'])).toMatchObject({ ok: true });
    expect(await inSandbox(['udp-echo', host.ip6, '7'])).toMatchObject({ ok: true });
  });

  it('downloads 50 MB byte-identical, over IPv4 and IPv6', async () => {
    expect(await inSandbox(['tcp-download', host.ip4, '19', String(SIZE)])).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
    expect(await inSandbox(['tcp-download', host.ip6, '19', String(SIZE)])).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
  });
});
