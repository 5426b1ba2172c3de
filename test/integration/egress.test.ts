// The egress firewall as a user meets it: names through our DNS proxy, pins, SNI checks, rebinding,
// deny rules, ports, learn mode. A test host runs a DNS server the test controls (it logs every query
// it sees), HTTP, TLS and UDP echo servers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chownSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { isRoot, repoRoot, tapbox, testIds, userTempDir } from '../helpers/tapbox.js';
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
      'web.tapbox.test': { A: [host.ip4] }, // as long as app.tapbox.test: a ClientHello rewritten to name it keeps its lengths
      'blocked.tapbox.test': { A: [host.ip4] },
      'alias.tapbox.test': { CNAME: 'app.tapbox.test' },
      'rebind.tapbox.test': { A: ['127.0.0.1', '169.254.169.254'], AAAA: ['::1'] },
      // The host side of the veth is in 198.18.0.0/15, but it is the host's own address.
      'hostside.tapbox.test': { A: [host.hostIp4, host.ip4] },
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

  it('keeps a pinned UDP session QUIC unless the rule names the port for UDP', async () => {
    const quic = (rule: string) => tapbox([...dnsFlags, '--allow', rule, '--', process.execPath, probe, 'quic-then', 'app.tapbox.test', '7']);
    // The Initial (and its retransmission) pass; a datagram of another protocol ends the session.
    const pinned = JSON.parse((await quic('app.tapbox.test')).stdout.trim());
    expect(pinned).toMatchObject({ echoes: 2, error: 'EHOSTUNREACH' }); // ICMP administratively prohibited
    // udp:NAME:PORT opens the port to any datagram.
    expect(JSON.parse((await quic('udp:app.tapbox.test:7')).stdout.trim())).toMatchObject({ echoes: 3 });
  });

  it('refuses a QUIC Initial under 1200 bytes, and reads every later Initial of the connection', async () => {
    const two = (first: string, second: string, short = false) =>
      tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--allow', 'web.tapbox.test', '--', process.execPath, probe, 'quic-two', first, second, '7', ...(short ? ['short'] : [])]);
    expect(JSON.parse((await two('app.tapbox.test', 'app.tapbox.test')).stdout.trim())).toMatchObject({ echoes: 2 });
    // A second Initial of the connection naming another allowed name (never looked up): its CRYPTO data contradicts the first's.
    expect(JSON.parse((await two('app.tapbox.test', 'web.tapbox.test')).stdout.trim())).toMatchObject({ echoes: 1, error: 'EHOSTUNREACH' });
    // A short Initial is never judged: a server would drop it.
    expect(JSON.parse((await two('app.tapbox.test', 'web.tapbox.test', true)).stdout.trim())).toMatchObject({ echoes: 0, error: 'EHOSTUNREACH' });
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

  it('checks the ClientHello a client sends after a HelloRetryRequest', async () => {
    // The server on 8444 asks every client offering X25519 first for a retry (test/helpers/servers/services.mjs).
    const retry = (second: string) =>
      tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--allow', 'web.tapbox.test', '--', 'sh', '-c', `getent ahostsv4 app.tapbox.test >/dev/null && ${process.execPath} ${probe} tls-retry ${host.ip4} 8444 app.tapbox.test ${second}`]);
    expect(JSON.parse((await retry('app.tapbox.test')).stdout.trim())).toMatchObject({ ok: true, hellos: 2, body: 'tls hello app.tapbox.test\n' });
    // web.tapbox.test is allowed but was never looked up: the second ClientHello must not reach the server.
    expect(JSON.parse((await retry('web.tapbox.test')).stdout.trim())).toMatchObject({ error: 'ECONNRESET', hellos: 2 });
  });

  it('checks the HTTP Host header the same way', async () => {
    const script = `getent hosts app.tapbox.test >/dev/null && curl -sS -m 10 -H 'Host: other.tapbox.test' http://app.tapbox.test:8080/host`;
    const r = await tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--', 'sh', '-c', script]);
    expect(r.stdout).not.toContain('hello from the test host');
    expect(r.code).not.toBe(0);
  });

  it('checks the ClientHello of a client that stays silent first on an explicitly opened port', async () => {
    const flags = [...dnsFlags, '--allow', 'app.tapbox.test:8443', '--allow', 'other.tapbox.test:8443'];
    const late = (sni: string) => tapbox([...flags, '--', 'sh', '-c', `getent ahostsv4 app.tapbox.test >/dev/null && ${process.execPath} ${probe} tls-late ${host.ip4} 8443 ${sni}`]);
    const good = JSON.parse((await late('app.tapbox.test')).stdout.trim());
    expect(good).toMatchObject({ ok: true, body: 'tls hello app.tapbox.test\n' });
    // other.tapbox.test is allowed but was never looked up: the address is pinned for app.tapbox.test only.
    const bad = JSON.parse((await late('other.tapbox.test')).stdout.trim());
    expect(bad).toMatchObject({ error: 'ECONNRESET' });
  });

  it('checks the Host of every request on a keep-alive connection', async () => {
    const two = (second: string) =>
      tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--allow', 'other.tapbox.test', '--', 'sh', '-c', `getent ahostsv4 app.tapbox.test >/dev/null && ${process.execPath} ${probe} http-two ${host.ip4} 8080 app.tapbox.test ${second}`]);
    const same = JSON.parse((await two('app.tapbox.test')).stdout.trim());
    expect(same.first).toContain('hello from the test host: /one');
    expect(same.second).toContain('hello from the test host: /two');
    const other = JSON.parse((await two('other.tapbox.test')).stdout.trim());
    expect(other.first).toContain('hello from the test host: /one');
    expect(other.second).not.toContain('hello from the test host');
    expect(other.error).toBe('ECONNRESET');
  });

  it('checks a request with a bare-LF head or a long method, even on an explicitly opened port', async () => {
    const raw = (rule: string, requests: string[]) =>
      tapbox([...dnsFlags, '--allow', rule, '--', 'sh', '-c', `getent ahostsv4 app.tapbox.test >/dev/null && ${process.execPath} ${probe} http-raw ${host.ip4} 8080 '${JSON.stringify(requests)}'`]);
    const lf = JSON.parse((await raw('app.tapbox.test', ['GET /one HTTP/1.1\r\nHost: app.tapbox.test\r\n\r\n', 'GET /two HTTP/1.1\nHost: other.tapbox.test\n\n'])).stdout.trim());
    expect(lf.responses).toHaveLength(1);
    expect(lf.responses[0]).toContain('hello from the test host: /one');
    expect(lf.error).toBe('ECONNRESET');
    const long = JSON.parse((await raw('app.tapbox.test:8080', ['VERYLONGMETHODNAME /x HTTP/1.1\r\nHost: other.tapbox.test\r\n\r\n'])).stdout.trim());
    expect(long).toMatchObject({ responses: [], error: 'ECONNRESET' });
  });

  it('refuses a GET with a body on a pinned flow, unless --http-allow-get-body', async () => {
    const raw = (flags: string[], requests: string[]) =>
      tapbox([...dnsFlags, ...flags, '--allow', 'app.tapbox.test', '--', 'sh', '-c', `getent ahostsv4 app.tapbox.test >/dev/null && ${process.execPath} ${probe} http-raw ${host.ip4} 8080 '${JSON.stringify(requests)}'`]);
    // A server that ignores GET bodies would read this one as a request for other.tapbox.test.
    const body = 'GET /two HTTP/1.1\r\nHost: other.tapbox.test\r\n\r\n';
    const request = `GET /one HTTP/1.1\r\nHost: app.tapbox.test\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    expect(JSON.parse((await raw([], [request])).stdout.trim())).toMatchObject({ responses: [], error: 'ECONNRESET' });
    const allowed = JSON.parse((await raw(['--http-allow-get-body'], [request])).stdout.trim());
    expect(allowed.responses).toHaveLength(1);
    expect(allowed.responses[0]).toContain('hello from the test host: /one');
  });

  it('dials a pinned address before accepting: a closed port is refused', async () => {
    const r = await tapbox([...dnsFlags, '--allow', 'app.tapbox.test', '--', 'sh', '-c', `getent ahostsv4 app.tapbox.test >/dev/null && ${process.execPath} ${probe} tcp-connect ${host.ip4} 81`]);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ error: 'ECONNREFUSED' });
  });

  it('does not let an allowed name rebind to loopback or the metadata address', async () => {
    const r = await tapbox([...dnsFlags, '--allow', 'rebind.tapbox.test', '--', 'sh', '-c', 'getent ahosts rebind.tapbox.test; curl -sS -m 5 http://169.254.169.254/ ; echo curl=$?']);
    expect(r.stdout).not.toMatch(/127\.0\.0\.1|169\.254\.169\.254\s|::1/);
    expect(r.stdout).toMatch(/curl=(7|28)/);
  });

  /** A TCP server on the host side of the veth (an address of the host itself), counting connections. */
  async function hostSideServer(): Promise<{ port: number; accepted: () => number; close: () => void }> {
    let accepted = 0;
    const server = net.createServer((s) => {
      accepted++;
      s.end();
    });
    await new Promise<void>((r) => server.listen(0, host.hostIp4, r));
    return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted, close: () => server.close() };
  }

  it('does not let an allowed name rebind to the host\'s own address inside the test ranges', async () => {
    const server = await hostSideServer();
    try {
      const script = `getent ahosts hostside.tapbox.test; ${process.execPath} ${probe} tcp-connect ${host.hostIp4} ${server.port}`;
      const r = await tapbox([...dnsFlags, '--allow', 'hostside.tapbox.test', '--', 'sh', '-c', script]);
      expect(r.stdout).toContain(host.ip4);
      expect(r.stdout.split('\n').filter((l) => l.startsWith(`${host.hostIp4} `))).toEqual([]);
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ error: 'ECONNREFUSED' });
      expect(server.accepted()).toBe(0);
    } finally {
      server.close();
    }
  });

  it('does not open the host\'s own addresses in audit mode; an explicit rule naming one does', async () => {
    const server = await hostSideServer();
    try {
      const connect = [process.execPath, probe, 'tcp-connect', host.hostIp4, String(server.port)];
      const audit = await tapbox([...dnsFlags, '--audit', '--', ...connect]);
      expect(JSON.parse(audit.stdout.trim())).toMatchObject({ error: 'ECONNREFUSED' });
      expect(server.accepted()).toBe(0);
      // The test host itself, a neighbour of that address, is open in audit mode.
      const neighbour = await tapbox([...dnsFlags, '--audit', '--', process.execPath, probe, 'tcp-connect', host.ip4, '7']);
      expect(JSON.parse(neighbour.stdout.trim())).toMatchObject({ ok: true });
      const explicit = await tapbox([...dnsFlags, '--audit', '--allow', `${host.hostIp4}:${server.port}`, '--', ...connect]);
      expect(JSON.parse(explicit.stdout.trim())).toMatchObject({ ok: true });
      expect(explicit.stderr).toMatch(/warning: --audit allows every destination/);
      expect(server.accepted()).toBe(1);
    } finally {
      server.close();
    }
  });

  it('refuses a DNS question that is not a host name and never learns it', async () => {
    // A raw query whose first label carries a newline and a rule: "x\n0.0.0.0/0 #".tapbox.test
    writeFileSync(
      join(scratch.dir, 'raw-dns.cjs'),
      `const d = require('dgram').createSocket('udp4');
const parts = [Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
for (const label of ['x\\n0.0.0.0/0 #', 'tapbox', 'test']) parts.push(Buffer.from([Buffer.byteLength(label)]), Buffer.from(label));
parts.push(Buffer.from([0, 0, 1, 0, 1]));
d.on('message', (m) => { console.log('rcode=' + (m[3] & 15)); d.close(); });
d.send(Buffer.concat(parts), 53, '10.0.2.3');
`,
    );
    queries = [];
    const learned = join(scratch.dir, 'injected.allow');
    const r = await tapbox([...dnsFlags, '--learn', learned, '--', 'sh', '-c', `${process.execPath} raw-dns.cjs; curl -sS -4 -m 10 http://app.tapbox.test:8080/x`], { cwd: scratch.dir });
    expect(r.stdout).toMatch(/^rcode=5\n/); // REFUSED
    expect(queries.filter((q) => q.includes('0.0.0.0'))).toEqual([]);
    const rules = readFileSync(learned, 'utf8');
    expect(rules).not.toMatch(/0\.0\.0\.0/);
    expect(rules.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([expect.stringMatching(/^tcp:app\.tapbox\.test:8080 +# 1 connection; by curl$/)]);
  });

  it('--learn replaces a symlink the sandbox planted at its path, never the file it points to', async () => {
    const outside = userTempDir();
    try {
      const precious = join(outside.dir, 'precious.txt');
      writeFileSync(precious, 'precious\n', { mode: 0o644 });
      if (isRoot) chownSync(precious, testIds.uid, testIds.gid); // writable by the tapbox user: only the fix protects it
      const learned = join(scratch.dir, 'planted.allow');
      const r = await tapbox([...dnsFlags, '--learn', learned, '--', 'sh', '-c', `ln -s ${precious} planted.allow && curl -sS -4 -m 10 http://app.tapbox.test:8080/planted`], { cwd: scratch.dir });
      expect(r.stdout).toBe('hello from the test host: /planted');
      expect(readFileSync(precious, 'utf8')).toBe('precious\n');
      expect(lstatSync(learned).isFile()).toBe(true);
      expect(readFileSync(learned, 'utf8')).toMatch(/^tcp:app\.tapbox\.test:8080\b/m);
    } finally {
      outside.cleanup();
    }
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

describe('allow rules on the command line', () => {
  let scratch: { dir: string; cleanup: () => void };
  beforeAll(() => {
    scratch = userTempDir();
  });
  afterAll(() => scratch?.cleanup());

  it.each([
    ['a bad --allow rule', ['--allow', '*.com'], /^tapbox: --allow: bad rule "\*\.com": .*public suffix.*$/],
    ['a bad rule in a -F file', ['-F', 'bad.allow'], /^tapbox: bad\.allow:2: bad rule "not a rule": .*$/],
    ['a -F file that does not exist', ['-F', '/nonexistent/x.allow'], /^tapbox: cannot read allowlist \/nonexistent\/x\.allow: .*; check the path given to -F\.$/],
    ['an unknown curated list', ['-F', '@nosuchlist'], /^tapbox: no curated allowlist @nosuchlist; the shipped ones are .*\.$/],
  ])('refuses %s with one sentence and exit 2, like a bad flag; nothing runs', async (_, flags, sentence) => {
    writeFileSync(join(scratch.dir, 'bad.allow'), 'ok.example\nnot a rule\n');
    const marker = join(scratch.dir, `ran-${Math.random().toString(36).slice(2)}`);
    const r = await tapbox(['--no-summary', ...flags, '--', 'touch', marker], { cwd: scratch.dir });
    expect(r.stderr.trim()).toMatch(sentence);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.code).toBe(2);
    expect(() => lstatSync(marker)).toThrow();
  });

  it('warns in one line that --audit and --learn do not enforce allow rules; deny-only rules get no warning', async () => {
    const audit = await tapbox(['--no-summary', '--audit', '-F', '@npm', '--', 'true'], { cwd: scratch.dir });
    expect(audit.code).toBe(0);
    expect(audit.stderr.split('\n').filter((l) => l.includes('warning'))).toEqual([
      'tapbox: warning: --audit allows every destination, so the allow rules of -F and --allow are not enforced (deny rules, "!", still are).',
    ]);
    const learn = await tapbox(['--no-summary', '--learn', join(scratch.dir, 'w.allow'), '--allow', 'example.com', '--', 'true'], { cwd: scratch.dir });
    expect(learn.stderr).toMatch(/^tapbox: warning: --learn allows every destination/m);
    const denyOnly = await tapbox(['--no-summary', '--audit', '--allow', '!evil.example', '--', 'true'], { cwd: scratch.dir });
    expect(denyOnly.stderr).not.toMatch(/warning/);
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
