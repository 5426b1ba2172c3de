// The egress firewall as a user meets it: names through our DNS proxy, pins, SNI checks, rebinding,
// deny rules, ports, learn mode. A test host runs a DNS server the test controls (it logs every query
// it sees), HTTP, TLS and UDP echo servers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tapbox, userTempDir } from '../helpers/tapbox.js';
import { canMakeTestHost, TestHost } from '../helpers/testhost.js';

const probe = join(repoRoot, 'test', 'helpers', 'clients', 'net-probe.mjs');

describe.runIf(canMakeTestHost)('egress policy against a test host', () => {
  let host: TestHost;
  let queries: string[] = [];
  let scratch: { dir: string; cleanup: () => void };
  let dnsFlags: string[];

  beforeAll(async () => {
    scratch = userTempDir();
    host = new TestHost();
    const zone = {
      'app.tapbox.test': { A: [host.ip4], AAAA: [host.ip6] },
      'other.tapbox.test': { A: [host.ip4] },
      'blocked.tapbox.test': { A: [host.ip4] },
      'alias.tapbox.test': { CNAME: 'app.tapbox.test' },
      'rebind.tapbox.test': { A: ['127.0.0.1', '169.254.169.254'], AAAA: ['::1'] },
    };
    const zoneFile = join(scratch.dir, 'zone.json');
    writeFileSync(zoneFile, JSON.stringify(zone));
    await host.start('services.mjs', ['--dns', '53', zoneFile, '--http', '8080', '--tls', '8443', '--tcp-echo', '7', '--udp-echo', '7'], (line) => {
      queries.push((JSON.parse(line) as { query: string }).query.toLowerCase());
    });
    dnsFlags = ['--dns-upstream', host.ip4, '--no-summary'];
  });
  afterAll(() => {
    host?.destroy();
    scratch?.cleanup();
  });

  const curl = (flags: string[], url: string, extra: string[] = []) =>
    tapbox([...dnsFlags, ...flags, '--', 'curl', '-sS', '-m', '10', ...extra, url], { timeoutMs: 30_000 });

  it('reaches an allowed name over IPv4 and IPv6', async () => {
    const four = await curl(['--allow', 'app.tapbox.test'], 'http://app.tapbox.test:8080/by-name', ['-4']);
    expect(four.stdout).toBe('hello from the test host: /by-name');
    const six = await curl(['--allow', 'app.tapbox.test'], 'http://app.tapbox.test:8080/by-name6', ['-6']);
    expect(six.stdout).toBe('hello from the test host: /by-name6');
  });

  it('answers NXDOMAIN for an unlisted name without asking the upstream', async () => {
    queries = [];
    const r = await curl(['--allow', 'app.tapbox.test'], 'http://other.tapbox.test:8080/');
    expect(r.code).toBe(6); // curl: could not resolve host
    expect(queries).not.toContain('other.tapbox.test');
  });

  it('refuses at once an IP no rule and no lookup allows', async () => {
    const r = await curl(['--allow', 'app.tapbox.test'], `http://${host.ip4}:8080/`);
    expect(r.code).toBe(7); // curl: failed to connect (connection refused)
    expect(r.stderr).toMatch(/Connection refused|Couldn't connect/);
  });

  it('follows a CNAME chain for an allowed name', async () => {
    const r = await curl(['--allow', 'alias.tapbox.test'], 'http://alias.tapbox.test:8080/cname', ['-4']);
    expect(r.stdout).toBe('hello from the test host: /cname');
  });

  it('checks TLS SNI against the name the IP was pinned for', async () => {
    const good = await curl(['--allow', 'app.tapbox.test'], 'https://app.tapbox.test:8443/', ['-k', '-4']);
    expect(good.stdout).toBe('tls hello app.tapbox.test\n');
    // Same IP, pinned by a lookup of app.tapbox.test, but the ClientHello names another site.
    const script = `getent hosts app.tapbox.test >/dev/null && curl -sS -m 10 -k --resolve other.tapbox.test:8443:${host.ip4} https://other.tapbox.test:8443/`;
    const bad = await tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--', 'sh', '-c', script]);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).not.toContain('tls hello');
  });

  it('checks the HTTP Host header the same way', async () => {
    const script = `getent hosts app.tapbox.test >/dev/null && curl -sS -m 10 -H 'Host: other.tapbox.test' http://app.tapbox.test:8080/host`;
    const r = await tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--', 'sh', '-c', script]);
    expect(r.stdout).not.toContain('hello from the test host');
    expect(r.code).not.toBe(0);
  });

  it('does not let an allowed name rebind to loopback or the metadata address', async () => {
    const r = await tapbox([...dnsFlags, '--allow', 'rebind.tapbox.test', '--', 'sh', '-c', 'getent ahosts rebind.tapbox.test; curl -sS -m 5 http://169.254.169.254/ ; echo curl=$?']);
    expect(r.stdout).not.toMatch(/127\.0\.0\.1|169\.254\.169\.254\s|::1/);
    expect(r.stdout).toMatch(/curl=(7|28)/);
  });

  it('lets a deny rule beat a wildcard allow', async () => {
    queries = [];
    const allowed = await curl(['--allow', '*.tapbox.test', '--allow', '!blocked.tapbox.test'], 'http://other.tapbox.test:8080/w', ['-4']);
    expect(allowed.stdout).toBe('hello from the test host: /w');
    const denied = await curl(['--allow', '*.tapbox.test', '--allow', '!blocked.tapbox.test'], 'http://blocked.tapbox.test:8080/');
    expect(denied.code).toBe(6);
    expect(queries).not.toContain('blocked.tapbox.test');
  });

  it('holds the port part of a rule', async () => {
    const flags = [...dnsFlags, '--allow', 'app.tapbox.test:8080'];
    const ok = await tapbox([...flags, '--', 'curl', '-sS', '-4', '-m', '10', 'http://app.tapbox.test:8080/port']);
    expect(ok.stdout).toBe('hello from the test host: /port');
    const r = await tapbox([...flags, '--', 'sh', '-c', `getent hosts app.tapbox.test >/dev/null && ${process.execPath} ${probe} tcp-connect ${host.ip4} 7`]);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: 'ECONNREFUSED' });
  });

  it('keeps ports other than 53 on the DNS address closed', async () => {
    const r = await tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--', process.execPath, probe, 'tcp-connect', '10.0.2.3', '80']);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: 'ECONNREFUSED' });
  });

  it('answers a DNS query sent to another server itself: it never escapes', async () => {
    queries = [];
    const r = await tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--', process.execPath, probe, 'dns-query', host.ip4, 'other.tapbox.test']);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: 'ENOTFOUND' });
    expect(queries).not.toContain('other.tapbox.test');
  });

  it('learns an allowlist that lets the same run pass and a new destination fail', async () => {
    const learned = join(scratch.dir, 'learned.allow');
    const run = ['sh', '-c', 'curl -sS -4 -m 10 http://app.tapbox.test:8080/learn'];
    const first = await tapbox([...dnsFlags, '--learn', learned, '--', ...run], { cwd: scratch.dir });
    expect(first.stdout).toBe('hello from the test host: /learn');
    const rules = readFileSync(learned, 'utf8');
    expect(rules).toMatch(/^tcp:app\.tapbox\.test:8080\b/m);
    expect(rules).not.toMatch(/^198\.18\.0\.2/m);
    const again = await tapbox([...dnsFlags, '-F', learned, '--', ...run], { cwd: scratch.dir });
    expect(again.stdout).toBe('hello from the test host: /learn');
    const other = await tapbox([...dnsFlags, '-F', learned, '--', 'curl', '-sS', '-m', '10', 'http://other.tapbox.test:8080/'], { cwd: scratch.dir });
    expect(other.code).toBe(6);
  });
});

describe('a real npm install through -F @npm', () => {
  const registryReachable = spawnSync('npm', ['view', 'is-number', 'version'], { encoding: 'utf8', timeout: 30_000 }).status === 0;
  if (!registryReachable) console.warn('skipping the real npm install: the npm registry is not reachable from this host');

  it.runIf(registryReachable)('installs a small package under -x and nothing else is reachable', async () => {
    const { dir, cleanup } = userTempDir();
    try {
      // README's command: -x gives npm an empty, throw-away home for its cache.
      const env = { npm_config_update_notifier: 'false', npm_config_audit: 'false', npm_config_fund: 'false' };
      const manifest = JSON.stringify({ name: 'probe', version: '1.0.0', private: true });
      const script = `echo '${manifest}' > package.json; export ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}; npm install --no-package-lock is-number@7.0.0 && (curl -sS -m 5 https://example.com/ >/dev/null; echo other=$?)`;
      const r = await tapbox(['-x', '-F', '@npm', '--no-summary', '--', 'sh', '-c', script], { cwd: dir, timeoutMs: 180_000 });
      expect(r.stderr).not.toMatch(/npm error/);
      expect(r.code).toBe(0);
      expect(JSON.parse(readFileSync(join(dir, 'node_modules', 'is-number', 'package.json'), 'utf8'))).toMatchObject({ name: 'is-number', version: '7.0.0' });
      expect(r.stdout).toMatch(/other=6/); // example.com is not on the npm list: NXDOMAIN
    } finally {
      cleanup();
    }
  });
});
