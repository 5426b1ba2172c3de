import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowId, Refusal, TcpConn, TcpForwarderRequest, UdpConn, UdpForwarderRequest } from '../../netstack/index.js';
import type { FlowEvent } from '../../src/egress/audit/events.js';
import { formatLearnedAllowlist } from '../../src/egress/audit/learn.js';
import { createLogger, LOG_LEVELS } from '../../src/egress/audit/logger.js';
import { EgressStats, formatSummary } from '../../src/egress/audit/summary.js';
import { createEgress, writeOutput, type EgressOptions } from '../../src/egress/index.js';
import { TapboxError } from '../../src/errors.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';
import { repoRoot } from '../helpers/tapbox.js';

const SANDBOX = { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' };
const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

/** A temporary directory, removed after the test. */
function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tapbox-egress-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function flow(name: string | null, dst: string, port: number, proto: 'tcp' | 'udp' = 'tcp', verdict: 'allow' | 'deny' = 'allow'): FlowEvent {
  return { flowId: 1, proto, src: '10.0.2.100', srcPort: 5000, dst, port, name, verdict, reason: 'test' };
}

function id(dstAddr: string, dstPort: number): FlowId {
  return { family: 4, srcAddr: '10.0.2.100', srcPort: 41000, dstAddr, dstPort };
}

/** A TCP request that records only whether it was refused. */
function deniedRequest(dstAddr: string, dstPort: number): TcpForwarderRequest & { rejected: Refusal | null } {
  return {
    id: id(dstAddr, dstPort),
    rejected: null,
    accept(): TcpConn {
      throw new Error('unexpected accept');
    },
    reject(how: Refusal) {
      this.rejected = how;
    },
  };
}

/** A UDP DNS request to the resolver, collecting the replies. */
function dnsRequest(query: Buffer): UdpForwarderRequest & { replies: Buffer[] } {
  const replies: Buffer[] = [];
  return {
    id: id('10.0.2.3', 53),
    firstPayload: query,
    replies,
    accept(): UdpConn {
      const conn: UdpConn = {
        id: id('10.0.2.3', 53),
        send: (p) => replies.push(Buffer.from(p)),
        sendIcmp: () => {},
        close: () => {},
        onClose: null,
        onMessage: null,
      };
      queueMicrotask(() => conn.onMessage?.(query));
      return conn;
    },
    reject() {
      throw new Error('unexpected reject');
    },
  };
}

async function fakeUpstream(addr: string) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => {
    const q = dnsPacket.decode(m);
    const answers: dnsPacket.Answer[] = q.questions![0].type === 'A' ? [{ type: 'A', name: q.questions![0].name, ttl: 60, data: addr }] : [];
    s.send(dnsPacket.encode({ type: 'response', id: q.id, questions: q.questions, answers }), r.port, r.address);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  cleanups.push(() => s.close());
  return `127.0.0.1:${s.address().port}`;
}

function options(dir: string, o: Partial<EgressOptions>): EgressOptions {
  return {
    allowFiles: [],
    allow: [],
    dnsUpstream: [],
    sniCheck: true,
    audit: false,
    logLevel: 'info',
    logFormat: 'pretty',
    logFile: join(dir, 'egress.log'),
    summary: false,
    sandbox: SANDBOX,
    ...o,
  };
}

describe('summary', () => {
  it('counts connections, denials, lookups and bytes per destination', () => {
    const stats = new EgressStats();
    stats.flow(flow('registry.npmjs.org', '104.16.0.35', 443));
    stats.flow(flow('registry.npmjs.org', '104.16.0.35', 443));
    stats.flowEnd({ flowId: 1, proto: 'tcp', dst: '104.16.0.35', port: 443, name: 'registry.npmjs.org', bytesUp: 1000, bytesDown: 2_500_000, durationMs: 5 });
    stats.flow(flow(null, '198.51.100.7', 443, 'tcp', 'deny'));
    stats.dns({ name: 'evil.example', type: 'A', verdict: 'deny', rcode: 'NXDOMAIN', answers: [], dropped: [], transport: 'udp' });
    const s = stats.summary();
    expect(s.destinations).toEqual([
      { destination: '198.51.100.7', verdict: 'denied', connections: 0, denied: 1, lookups: 0, bytesUp: 0, bytesDown: 0 },
      { destination: 'evil.example', verdict: 'denied', connections: 0, denied: 0, lookups: 1, bytesUp: 0, bytesDown: 0 },
      { destination: 'registry.npmjs.org', verdict: 'allowed', connections: 2, denied: 0, lookups: 0, bytesUp: 1000, bytesDown: 2_500_000 },
    ]);
    expect(s.totals).toMatchObject({ connections: 2, denied: 1, deniedLookups: 1, bytesDown: 2_500_000 });
    const plain = formatSummary(s, false);
    expect(plain).toMatch(/^registry\.npmjs\.org\s+allowed\s+2\s+0\s+0\s+1000 B\s+2\.4 MiB$/m);
    expect(plain).not.toMatch(/[│┌]/);
    expect(formatSummary(s, true)).toMatch(/│ registry\.npmjs\.org +│ allowed │/);
  });
});

describe('learn', () => {
  it('writes an allowlist that loads with -F and allows what was used, nothing more', () => {
    const stats = new EgressStats();
    stats.flow(flow('registry.npmjs.org', '104.16.0.35', 443));
    stats.flow(flow('registry.npmjs.org', '104.16.0.36', 443));
    stats.flow(flow('time.example.org', '192.0.2.5', 123, 'udp'));
    stats.flow(flow(null, '2001:db8::7', 8443));
    stats.dns({ name: 'registry.npmjs.org', type: 'A', verdict: 'allow', rcode: 'NOERROR', answers: [], dropped: [], transport: 'udp' });
    stats.dns({ name: 'unused.example', type: 'A', verdict: 'allow', rcode: 'NOERROR', answers: [], dropped: [], transport: 'udp' });
    const text = formatLearnedAllowlist(stats.learnedFlows(), stats.lookedUp);
    expect(text).toMatch(/^tcp:registry\.npmjs\.org:443 +# 2 connections$/m);
    expect(text).toMatch(/^udp:time\.example\.org:123 +# 1 connection$/m);
    expect(text).toMatch(/^tcp:\[2001:db8::7\]:8443 +# 1 connection$/m);
    expect(text).toMatch(/^# unused\.example {2}# 1 lookup$/m);

    const policy = Policy.fromAllowlists([parse(text, 'learned.allow')]);
    expect(policy.rules).toHaveLength(3);
    policy.pin('registry.npmjs.org', '104.16.0.40', 60);
    expect(policy.decide({ proto: 'tcp', addr: '104.16.0.40', port: 443 }).verdict).toBe('allow');
    expect(policy.decide({ proto: 'tcp', addr: '104.16.0.40', port: 80 }).verdict).toBe('deny');
    expect(policy.decide({ proto: 'udp', addr: '104.16.0.40', port: 443 }).verdict).toBe('deny');
    expect(policy.decide({ proto: 'tcp', addr: '2001:db8::7', port: 8443 }).verdict).toBe('allow');
    expect(policy.resolvable('unused.example').allowed).toBe(false);
  });
});

describe('names the sandbox chose', () => {
  it('learns only names that parse back as the rule they mean: a planted newline writes nothing', () => {
    const stats = new EgressStats();
    const planted = 'x\n0.0.0.0/0 #.test';
    stats.flow(flow(planted, '198.51.100.1', 443));
    stats.flow(flow('a b.test', '198.51.100.2', 443));
    stats.flow(flow('*.wild.test', '198.51.100.3', 443));
    stats.flow(flow('ok.test', '198.51.100.4', 443));
    stats.dns({ name: planted, type: 'A', verdict: 'allow', rcode: 'NOERROR', answers: [], dropped: [], transport: 'udp' });
    stats.dns({ name: 'evil\x1b[2J.test', type: 'A', verdict: 'allow', rcode: 'NOERROR', answers: [], dropped: [], transport: 'udp' });
    stats.dns({ name: 'unused.test', type: 'A', verdict: 'allow', rcode: 'NOERROR', answers: [], dropped: [], transport: 'udp' });
    const text = formatLearnedAllowlist(stats.learnedFlows(), stats.lookedUp);
    expect(text).not.toMatch(/0\.0\.0\.0|a b|wild|evil|\x1b/);
    expect(text).toMatch(/^tcp:ok\.test:443 +# 1 connection$/m);
    expect(text).toMatch(/^# unused\.test {2}# 1 lookup$/m);
    const policy = Policy.fromAllowlists([parse(text, 'learned.allow')]);
    expect(policy.rules.map((r) => r.text)).toEqual(['tcp:ok.test:443']);
    expect(policy.decide({ proto: 'tcp', addr: '203.0.113.1', port: 443 }).verdict).toBe('deny');
  });

  it('escapes control characters in the pretty log (a CNAME target, an SNI)', () => {
    const dir = scratchDir();
    const logFile = join(dir, 'pretty.log');
    const logger = createLogger({ logLevel: 'info', logFormat: 'pretty', logFile });
    logger.warn({ event: 'dns' }, 'dns A ok.example: CNAME \x1b]0;pwned\x07evil.example');
    const text = readFileSync(logFile, 'utf8');
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    expect(text).toContain('tapbox: dns A ok.example: CNAME \\x1b]0;pwned\\x07evil.example');
  });

  it('knows the levels pino knows', () => {
    expect(LOG_LEVELS).toEqual(pino.levels.values);
    expect(() => createLogger({ logLevel: 'toString', logFormat: 'json' })).toThrow(/unknown log level "toString"/);
  });

  it('on stderr loads pino with the first line at or above the level, and writes it (start-up)', () => {
    const logger = pathToFileURL(join(repoRoot, 'dist', 'src', 'egress', 'audit', 'logger.js')).href;
    const script = `
      import { createRequire } from 'node:module';
      const { createLogger } = await import(${JSON.stringify(logger)});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.endsWith('/node_modules/pino/pino.js'));
      const log = createLogger({ logLevel: 'info', logFormat: 'json' });
      log.debug({ event: 'x' }, 'below the level');
      console.log(loaded());
      log.warn({ event: 'flow' }, 'denied tcp 198.51.100.7:443');
      console.log(loaded());`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stdout.trim().split('\n')).toEqual(['false', 'true']);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toMatchObject([{ level: 40, event: 'flow', msg: 'denied tcp 198.51.100.7:443' }]);
  });

  it('escapes control characters in the summary table', () => {
    const stats = new EgressStats();
    stats.flow(flow('\x1b]0;pwned\x07evil.test', '198.51.100.1', 443));
    stats.dns({ name: 'bell\x07\x9b31m.test', type: 'A', verdict: 'deny', rcode: 'NXDOMAIN', answers: [], dropped: [], transport: 'udp' });
    for (const terminal of [false, true]) {
      const table = formatSummary(stats.summary(), terminal);
      expect(table).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
      expect(table).toContain('\\x1b]0;pwned\\x07evil.test');
      expect(table).toContain('bell\\x07\\x9b31m.test');
    }
  });
});

describe('writing the report and the learned allowlist', () => {
  it('replaces a symlink planted at the path instead of writing through it', async () => {
    const dir = scratchDir();
    const precious = join(dir, 'precious.txt');
    writeFileSync(precious, 'keep me\n');
    mkdirSync(join(dir, 'cwd'));
    const learn = join(dir, 'cwd', 'build.allow');
    const report = join(dir, 'cwd', 'report.json');
    symlinkSync(precious, learn);
    symlinkSync(precious, report);
    const egress = await createEgress(options(dir, { learn, report, dnsUpstream: ['127.0.0.1:53'] }));
    await egress.close();
    expect(readFileSync(precious, 'utf8')).toBe('keep me\n');
    for (const p of [learn, report]) expect(lstatSync(p).isFile(), p).toBe(true);
    expect(readFileSync(learn, 'utf8')).toMatch(/^# Learned by tapbox --learn/);
    expect(JSON.parse(readFileSync(report, 'utf8'))).toMatchObject({ mode: 'audit' });
    expect(readdirSync(join(dir, 'cwd')).sort()).toEqual(['build.allow', 'report.json']);
  });

  it('writes nothing when a directory of the path became a symlink during the run', async () => {
    const dir = scratchDir();
    mkdirSync(join(dir, 'cwd', 'out'), { recursive: true });
    mkdirSync(join(dir, 'elsewhere'));
    const learn = join(dir, 'cwd', 'out', 'build.allow');
    const egress = await createEgress(options(dir, { learn, dnsUpstream: ['127.0.0.1:53'] }));
    // What the sandbox does in its writable cwd while it runs.
    rmSync(join(dir, 'cwd', 'out'), { recursive: true });
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'cwd', 'out'));
    await expect(egress.close()).rejects.toThrow(/cannot write the learned allowlist to .*build\.allow: its directory is no longer .*; nothing was written\./);
    expect(readdirSync(join(dir, 'elsewhere'))).toEqual([]);
  });

  it('refuses at once an output file whose directory does not exist', async () => {
    const dir = scratchDir();
    const err = await createEgress(options(dir, { report: join(dir, 'missing', 'r.json'), dnsUpstream: ['127.0.0.1:53'] })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EUSAGE', message: expect.stringMatching(/^--report .*r\.json: no such directory .*missing; create it first/) });
  });

  it('leaves no temporary file behind when it cannot write', async () => {
    const dir = scratchDir();
    mkdirSync(join(dir, 'taken'));
    writeFileSync(join(dir, 'taken', 'x'), '');
    await expect(writeOutput(join(dir, 'taken'), 'text\n', 'report')).rejects.toThrow(/cannot write the report to .*taken: /);
    expect(readdirSync(dir)).toEqual(['taken']);
    await expect(writeOutput(join(dir, 'missing', 'out'), 'text\n', 'report')).rejects.toThrow(/check that its directory exists/);
  });
});

describe('createEgress', () => {
  it('refuses a bad rule with EPOLICY before anything starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-egress-'));
    const err = await createEgress(options(dir, { allow: ['*.com'], dnsUpstream: ['127.0.0.1:53'] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TapboxError);
    expect((err as TapboxError).code).toBe('EPOLICY');
    expect((err as TapboxError).message).toMatch(/^--allow: bad rule "\*\.com"/);
  });

  it('logs one readable line per denial, emits events and writes the report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-egress-'));
    const report = join(dir, 'report.json');
    const egress = await createEgress(options(dir, { allow: ['good.example'], dnsUpstream: [await fakeUpstream('203.0.113.9')], report }));
    const denials: unknown[] = [];
    egress.on('deny', (e) => denials.push(e));
    const req = deniedRequest('198.51.100.7', 443);
    egress.forwarder.tcp(req);
    expect(req.rejected).toBe('reset');
    const lookup = dnsRequest(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'good.example', type: 'A' }] }));
    egress.forwarder.udp(lookup);
    await expect.poll(() => lookup.replies.length).toBe(1);
    expect(dnsPacket.decode(lookup.replies[0]).answers).toMatchObject([{ data: '203.0.113.9' }]);
    expect(egress.policy.decide({ proto: 'tcp', addr: '203.0.113.9', port: 443 }).verdict).toBe('allow');

    const summary = await egress.close();
    expect(denials).toHaveLength(1);
    const log = readFileSync(join(dir, 'egress.log'), 'utf8');
    expect(log).toMatch(/tapbox: denied tcp 198\.51\.100\.7:443: not in allowlist/);
    expect(log).not.toMatch(/good\.example/); // allowed lookups are debug-level when enforcing
    const written = JSON.parse(readFileSync(report, 'utf8'));
    expect(written).toEqual({ mode: 'enforce', ...JSON.parse(JSON.stringify(summary)), usage: null });
    expect(written.destinations.map((d: { destination: string }) => d.destination)).toEqual(['198.51.100.7', 'good.example']);
  });

  it('in learn mode allows everything, logs it as JSON and writes the learned allowlist', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-egress-'));
    const learn = join(dir, 'learned.allow');
    const egress = await createEgress(options(dir, { learn, logFormat: 'json', dnsUpstream: [await fakeUpstream('203.0.113.9')] }));
    const lookup = dnsRequest(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'any.example', type: 'A' }] }));
    egress.forwarder.udp(lookup);
    await expect.poll(() => lookup.replies.length).toBe(1);
    expect(egress.policy.decide({ proto: 'tcp', addr: '203.0.113.9', port: 443 })).toMatchObject({ verdict: 'allow', via: 'audit', names: ['any.example'] });
    await egress.close();
    const lines = readFileSync(join(dir, 'egress.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.find((l) => l.event === 'dns')).toMatchObject({ level: 30, name: 'any.example', type: 'A', verdict: 'allow', answers: ['A 203.0.113.9'] });
    expect(readFileSync(learn, 'utf8')).toMatch(/^# any\.example {2}# 1 lookup$/m);
  });
});
