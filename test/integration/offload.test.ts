// The TAP offloads (virtio-net header: checksums left to us, TCP super-segments larger than the MTU
// both ways) with the Linux kernel as the peer: large transfers at --mtu 1500 arrive byte-identical both
// ways, over IPv4 and IPv6; the pcap shows the sandbox really handed over frames larger than the MTU,
// and tap0's counters in the sandbox that its kernel took ours; UDP, whose checksums the sandbox also
// leaves to us, still goes through. At the default MTU tap0 has the header too (TCP checksums left to
// the kernels both ways).
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

/** Lengths of the frames in a pcap file whose source MAC is (or is not) the sandbox's. */
function framesBySource(path: string, fromSandbox: boolean): number[] {
  const pcap = readFileSync(path);
  const lengths: number[] = [];
  for (let off = 24; off + 16 <= pcap.length; ) {
    const length = pcap.readUInt32LE(off + 8);
    const frame = pcap.subarray(off + 16, off + 16 + length);
    if (frame.subarray(6, 12).equals(Buffer.from([2, 0, 0, 0, 1, 0])) === fromSandbox) lengths.push(length);
    off += 16 + length;
  }
  return lengths;
}
const framesFromSandbox = (path: string) => framesBySource(path, true);
const framesToSandbox = (path: string) => framesBySource(path, false);

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

  for (const family of [4, 6] as const) {
    it(`downloads 50 MB byte-identical over IPv${family}, in super-segments the sandbox's kernel takes whole`, async () => {
      // tap0's counters, read in the sandbox: packets larger than the MTU on average (a pcap can't show
      // them: under --pcap the stack writes MTU-sized frames, as on a wire).
      const ip = family === 4 ? host.ip4 : host.ip6;
      const r = await tapbox([...FLAGS, '--', 'sh', '-c', '"$0" "$1" tcp-download "$2" 19 "$3" && ip -s -j link show tap0', process.execPath, probe, ip, String(SIZE)], { timeoutMs: 120_000 });
      expect(r.stderr).toBe('');
      const [result, link] = r.stdout.trim().split('\n').slice(-2).map((l) => JSON.parse(l) as unknown);
      expect(result).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
      const rx = (link as [{ stats64: { rx: { bytes: number; packets: number } } }])[0].stats64.rx;
      expect(rx.bytes / rx.packets).toBeGreaterThan(1514);
    });
  }

  it('downloads 50 MB byte-identical under --pcap, which sees MTU-sized frames only', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      const pcap = join(dir, 'tap0.pcap');
      expect(await inSandbox(['tcp-download', host.ip4, '19', String(SIZE)], ['--pcap', pcap])).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
      const toSandbox = framesToSandbox(pcap);
      expect(toSandbox.length).toBeGreaterThan(SIZE / 1514);
      expect(Math.max(...toSandbox)).toBeLessThanOrEqual(1514);
    } finally {
      cleanup();
    }
  });
});

describe.runIf(canMakeTestHost)('the TAP offloads at the default MTU (65520)', () => {
  let host: TestHost;
  beforeAll(async () => {
    host = new TestHost();
    await host.start('services.mjs', ['--tcp-sink', '9', '--tcp-source', '19']);
  });
  afterAll(() => host?.destroy());

  const DEFAULT_FLAGS = ['--allow', '198.18.0.0/15', '--allow', '2001:db8::/32', '--no-summary'];

  for (const family of [4, 6] as const) {
    it(`moves 50 MB each way byte-identical over IPv${family} on a tap0 with the virtio-net header, TCP checksums left to the kernels`, async () => {
      // Both kernels take the segments as verified: one whose checksum the other side neither computed
      // nor left partial correctly would be dropped, and the transfer would stall or differ.
      const ip = family === 4 ? host.ip4 : host.ip6;
      const script = '"$0" "$1" tcp-download "$2" 19 "$3" && "$0" "$1" tcp-upload "$2" 9 "$3" && ip -d -j link show tap0';
      const r = await tapbox([...DEFAULT_FLAGS, '--', 'sh', '-c', script, process.execPath, probe, ip, String(SIZE)], { timeoutMs: 120_000 });
      expect(r.stderr).toBe('');
      const [down, up, link] = r.stdout.trim().split('\n').slice(-3).map((l) => JSON.parse(l) as unknown);
      expect(down).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
      expect(up).toMatchObject({ ok: true, bytes: SIZE, sha256Match: true });
      expect((link as [{ mtu: number; linkinfo: { info_data: { vnet_hdr: boolean } } }])[0]).toMatchObject({ mtu: 65520, linkinfo: { info_data: { vnet_hdr: true } } });
    });
  }
});
