// Rule precedence with real datagrams (README "Rule precedence"; the full pair table is unit-tested in
// test/unit/rule-precedence.test.ts): a broader rule for a name never hides the narrower one that opens
// a port, and a deny rule wins whatever the order.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');

describe.runIf(canMakeTestHost)('rule precedence against a test host', () => {
  let host: TestHost;
  let scratch: { dir: string; cleanup: () => void };

  beforeAll(async () => {
    scratch = userTempDir('tapbox-prec-');
    host = new TestHost();
    const zoneFile = join(scratch.dir, 'zone.json');
    writeFileSync(zoneFile, JSON.stringify({ 'allowed.prec.test': { A: [host.ip4] } }));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--udp-echo', '9999']);
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  const udpEcho = async (rules: string[]) => {
    const allow = rules.flatMap((r) => ['--allow', r]);
    const r = await tapbox(['--dns-upstream', host.ip4, '--no-summary', ...allow, '--', process.execPath, probe, 'udp-echo', 'allowed.prec.test', '9999']);
    return JSON.parse(r.stdout.trim()) as { ok?: boolean; error?: string };
  };

  it('lets a plain datagram through when udp:NAME:PORT is listed, whether NAME comes before or after it', async () => {
    expect(await udpEcho(['allowed.prec.test', 'udp:allowed.prec.test:9999'])).toMatchObject({ ok: true });
    expect(await udpEcho(['udp:allowed.prec.test:9999', 'allowed.prec.test'])).toMatchObject({ ok: true });
    // Without the udp: rule the datagram is not QUIC, so its name can't be checked: refused.
    expect(await udpEcho(['allowed.prec.test'])).toMatchObject({ error: 'EHOSTUNREACH' });
  });

  it('lets a deny rule for the port win over both', async () => {
    expect(await udpEcho(['allowed.prec.test', 'udp:allowed.prec.test:9999', '!udp:allowed.prec.test:9999'])).toMatchObject({ error: 'EHOSTUNREACH' });
  });
});
