// Runs inside the VM lane's guests: the network path on this kernel, each case in as few sandbox runs
// as possible (a run costs seconds under TCG). The TAP device, tap0's configuration and our stack are
// what the kernel touches; the policy's finer cases are test/integration/egress.test.ts's, on the host.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tapbox, userTempDir } from '../../helpers/tapbox.js';
import { TestHost } from '../../helpers/testhost.js';

describe('the network path on this kernel', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };
  const queries: string[] = [];

  beforeAll(async () => {
    scratch = userTempDir();
    host = new TestHost();
    const zone = join(scratch.dir, 'zone.json');
    writeFileSync(zone, JSON.stringify({ 'app.tapbox.test': { A: [host.ip4], AAAA: [host.ip6] }, 'other.tapbox.test': { A: [host.ip4] } }));
    await host.start('services.mjs', ['--dns', '53', zone, '--http', '8080', '--udp-echo', '7', '--tcp-source', '19', '--tcp-sink', '9'], (line) => {
      queries.push((JSON.parse(line) as { query: string }).query.toLowerCase());
    });
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  it('fetches an allowed name over IPv4 and IPv6 through the DNS proxy, refuses an unlisted IP at once, never asks upstream for an unlisted name', async () => {
    // The IP first: once the name is looked up, its address is pinned to it.
    const script = [
      `curl -sS -m 20 http://${host.ip4}:8080/by-ip 2>/dev/null; echo "refused [$?]"`,
      'curl -sS -m 20 -4 http://app.tapbox.test:8080/four; echo " [$?]"',
      'curl -sS -m 20 -6 http://app.tapbox.test:8080/six; echo " [$?]"',
      'curl -sS -m 20 http://other.tapbox.test:8080/ 2>/dev/null; echo "unresolved [$?]"',
    ].join('; ');
    const r = await tapbox(['--dns-upstream', host.ip4, '--allow', 'app.tapbox.test', '--no-summary', '--', 'sh', '-c', script], { timeoutMs: 240_000 });
    expect(r.stdout.split('\n')).toEqual([
      'refused [7]', // connection refused: the RST comes at once, no timeout
      'hello from the test host: /four [0]',
      'hello from the test host: /six [0]',
      'unresolved [6]', // NXDOMAIN from our proxy
      '',
    ]);
    expect(queries).toContain('app.tapbox.test');
    expect(queries).not.toContain('other.tapbox.test');
  });

  it('downloads byte-identical at --mtu 1500 over IPv4 and IPv6, in super-segments the kernel takes whole', async () => {
    // Below MTU 65520 tap0 has the virtio-net header, and the stack writes TCP super-segments (GSO,
    // NEEDS_CSUM): the sandbox's kernel must take them, the bytes arrive intact, its packets are larger
    // than the MTU on average.
    const size = 4 << 20;
    const download = (ip: string) => `${process.execPath} test/helpers/clients/net-probe.mjs tcp-download ${ip} 19 ${size}`;
    const script = `${download(host.ip4)} && ${download(host.ip6)} && ip -s -j link show tap0`;
    const r = await tapbox(['--mtu', '1500', '--allow', host.ip4, '--allow', host.ip6, '--no-summary', '--', 'sh', '-c', script], { timeoutMs: 240_000 });
    const [four, six, link] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(four).toMatchObject({ ok: true, bytes: size, sha256Match: true });
    expect(six).toMatchObject({ ok: true, bytes: size, sha256Match: true });
    const rx = (link as [{ stats64: { rx: { bytes: number; packets: number } } }])[0].stats64.rx;
    expect(rx.bytes / rx.packets).toBeGreaterThan(1514);
  });

  it('moves data byte-identical both ways at the default MTU on a tap0 with the virtio-net header', async () => {
    // At MTU 65520 too, tap0 has the header and TCP's checksums are left to the kernels both ways
    // (NEEDS_CSUM): this kernel must take ours as verified, and hand us its own partial.
    const size = 4 << 20;
    const probe = (what: string, ip: string, port: number) => `${process.execPath} test/helpers/clients/net-probe.mjs ${what} ${ip} ${port} ${size}`;
    const script = `${probe('tcp-download', host.ip4, 19)} && ${probe('tcp-upload', host.ip6, 9)} && ip -d -j link show tap0`;
    const r = await tapbox(['--allow', host.ip4, '--allow', host.ip6, '--no-summary', '--', 'sh', '-c', script], { timeoutMs: 240_000 });
    const [down, up, link] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(down).toMatchObject({ ok: true, bytes: size, sha256Match: true });
    expect(up).toMatchObject({ ok: true, bytes: size, sha256Match: true });
    expect((link as [{ mtu: number; linkinfo: { info_data: { vnet_hdr: boolean } } }])[0]).toMatchObject({ mtu: 65520, linkinfo: { info_data: { vnet_hdr: true } } });
  });

  it('relays UDP to an allowed port, and pings the gateway over IPv4 and IPv6', async () => {
    const script = `${process.execPath} test/helpers/clients/net-probe.mjs udp-echo ${host.ip4} 7 && ping -c1 -W5 10.0.2.2 >/dev/null && ping -c1 -W5 fd00::2 >/dev/null && echo pinged`;
    const r = await tapbox(['--allow', `udp:${host.ip4}:7`, '--no-summary', '--', 'sh', '-c', script], { timeoutMs: 240_000 });
    const [udp, pinged] = r.stdout.trim().split('\n');
    expect(JSON.parse(udp!)).toMatchObject({ ok: true });
    expect(pinged).toBe('pinged');
  });
});
