import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TapboxError } from '../../src/errors.js';
import { CURATED_LISTS, load, parse } from '../../src/egress/policy/allowlist.js';
import { parseRule } from '../../src/egress/policy/rule.js';

function policyError(fn: () => unknown): TapboxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TapboxError);
    expect((err as TapboxError).code).toBe('EPOLICY');
    return err as TapboxError;
  }
  throw new Error('expected a TapboxError');
}

describe('allowlist rules', () => {
  it('parses every documented form', () => {
    const { rules } = parse(
      [
        '# comment line',
        '',
        '  registry.npmjs.org   ',
        '*.githubusercontent.com',
        'api.example.com:443 # trailing comment',
        'ports.example.com:8000-8100',
        '93.184.216.34',
        '10.0.0.0/8',
        '2001:db8::1',
        '[2001:db8::1]:443',
        '2001:db8::/32',
        'udp:time.example.com:123',
        'TCP:Upper.Example.COM.',
        '!tracker.example.com',
      ].join('\n'),
      'rules.txt',
    );
    expect(rules.map((r) => [r.deny, r.proto, r.target.kind, r.ports])).toEqual([
      [false, null, 'name', null],
      [false, null, 'wildcard', null],
      [false, null, 'name', { from: 443, to: 443 }],
      [false, null, 'name', { from: 8000, to: 8100 }],
      [false, null, 'subnet', null],
      [false, null, 'subnet', null],
      [false, null, 'subnet', null],
      [false, null, 'subnet', { from: 443, to: 443 }],
      [false, null, 'subnet', null],
      [false, 'udp', 'name', { from: 123, to: 123 }],
      [false, 'tcp', 'name', null],
      [true, null, 'name', null],
    ]);
    expect(rules[10].target).toEqual({ kind: 'name', name: 'upper.example.com' });
    expect(rules[1].target).toEqual({ kind: 'wildcard', suffix: 'githubusercontent.com' });
    expect(rules[2].origin).toBe('rules.txt:5');
  });

  it('names the file, the line and the problem of a bad line', () => {
    const err = policyError(() => parse('good.example.com\nbad host name!\n', 'my.allow'));
    expect(err.message).toMatch(/^my\.allow:2: bad rule "bad host name!": .*not a valid host name/);
    expect(policyError(() => parse('a.example.com:70000', 'f')).message).toMatch(/f:1: .*"70000" is not a port/);
    expect(policyError(() => parse('a.example.com:443-80', 'f')).message).toMatch(/not a port/);
    expect(policyError(() => parse('10.0.0.0/33', 'f')).message).toMatch(/not a valid IP address or subnet/);
    expect(policyError(() => parse('2001:db8::zz', 'f')).message).toMatch(/bracketed/);
    expect(policyError(() => parse('a.*.example.com', 'f')).message).toMatch(/only as the first label/);
    expect(policyError(() => parse('icmp:example.com', 'f')).message).toMatch(/f:1:/);
  });

  it('refuses allow rules as wide as a public suffix', () => {
    for (const rule of ['*', '*.com', '*.co.uk', '*.github.io', '*.com.au']) {
      expect(policyError(() => parseRule(rule, '--allow')).message).toMatch(/^--allow: bad rule/);
    }
    expect(policyError(() => parseRule('*.com', '--allow')).message).toMatch(/public suffix/);
    expect(parseRule('*.example.co.uk', 'x').target).toEqual({ kind: 'wildcard', suffix: 'example.co.uk' });
    // A deny rule may be as wide as it likes.
    expect(parseRule('!*.xyz', 'x').deny).toBe(true);
  });

  it('loads a mini-tapbox file unchanged, its first-line number becoming the flow limit', () => {
    const list = parse('25\ngoogle.com\n142.250.0.1\n10.1.0.0/16\n', 'mini.txt');
    expect(list.maxFlows).toBe(25);
    expect(list.rules.map((r) => r.text)).toEqual(['google.com', '142.250.0.1', '10.1.0.0/16']);
    expect(parse('google.com\n', 'x').maxFlows).toBeUndefined();
  });

  it('loads an srt settings file', () => {
    const list = parse(JSON.stringify({ network: { allowedDomains: ['github.com', '*.npmjs.org'], deniedDomains: ['evil.github.com'] } }), 'srt.json');
    expect(list.rules.map((r) => [r.deny, r.text])).toEqual([
      [false, 'github.com'],
      [false, '*.npmjs.org'],
      [true, '!evil.github.com'],
    ]);
    expect(policyError(() => parse('{"network": {"allowedDomains": ["*.com"]}}', 'srt.json')).message).toMatch(/srt\.json: network\.allowedDomains\[0\]/);
    expect(policyError(() => parse('{"network": ', 'srt.json')).message).toMatch(/not valid JSON/);
  });

  it('loads files and the curated lists', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-allow-'));
    writeFileSync(join(dir, 'a.txt'), 'example.com\n');
    expect((await load(join(dir, 'a.txt'))).rules[0].origin).toBe(`${join(dir, 'a.txt')}:1`);
    await expect(load(join(dir, 'missing.txt'))).rejects.toThrow(/cannot read allowlist .*missing\.txt: no such file/);
    await expect(load('@nope')).rejects.toThrow(/no curated allowlist @nope/);
    for (const name of CURATED_LISTS) {
      const list = await load(`@${name}`);
      expect(list.rules.length, name).toBeGreaterThan(0);
      expect(list.rules.every((r) => !r.deny)).toBe(true);
    }
    const npm = await load('@npm');
    expect(npm.rules.some((r) => r.target.kind === 'name' && r.target.name === 'registry.npmjs.org')).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });
});
