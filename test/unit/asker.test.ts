import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ManualClock } from '../../netstack/stack/manual-clock.js';
import { Asker, MAX_PENDING, MAX_WAITING, type Prompter } from '../../src/egress/ask/asker.js';
import { dnsRequest, flowRequest, type AskAnswer, type AskRequest } from '../../src/egress/ask/request.js';
import { Auditor } from '../../src/egress/audit/auditor.js';
import { EgressStats } from '../../src/egress/audit/summary.js';
import type { EgressForwarder } from '../../src/egress/forwarder/index.js';
import { LivePolicy } from '../../src/egress/live-policy.js';
import { Policy } from '../../src/egress/policy/policy.js';

function setup(opts: { timeoutMs?: number; saveFile?: string } = {}) {
  const policy = new Policy([], { clock: new ManualClock() });
  const events = new EventEmitter();
  const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), false);
  const live = new LivePolicy(policy, { relayedFlows: () => [] } as unknown as EgressForwarder, auditor);
  const asked: AskRequest[] = [];
  const answers: ((a: AskAnswer | 'invalid') => void)[] = [];
  const prompt: Prompter = (r) => {
    asked.push(r);
    return new Promise((resolve) => answers.push(resolve));
  };
  const asker = new Asker({ prompt, timeoutMs: opts.timeoutMs ?? 60_000, live, auditor, saveFile: opts.saveFile });
  const resolvable = (name: string) => () => policy.resolvable(name).allowed;
  const tick = () => new Promise((r) => setImmediate(r));
  return { policy, asker, asked, answers, resolvable, tick, events };
}

describe('Asker', () => {
  it('asks one question at a time, and the same question once for every request waiting on it', async () => {
    const { asker, asked, answers, resolvable, tick } = setup();
    const a1 = asker.ask(dnsRequest('a.example', null), resolvable('a.example'));
    const a2 = asker.ask(dnsRequest('a.example', null), resolvable('a.example'));
    const b = asker.ask(dnsRequest('b.example', null), resolvable('b.example'));
    await tick();
    expect(asked.map((r) => r.name)).toEqual(['a.example']); // b waits its turn
    answers[0]!('once');
    expect(await a1).toEqual({ allowed: true, note: 'allowed once when asked' });
    expect(await a2).toEqual({ allowed: true, note: 'allowed once when asked' });
    await tick();
    expect(asked.map((r) => r.name)).toEqual(['a.example', 'b.example']);
    answers[1]!('deny');
    expect(await b).toEqual({ allowed: false, note: 'denied when asked' });
  });

  it('does not ask again what an earlier "for this run" answer allowed', async () => {
    const { asker, asked, answers, resolvable, policy, tick } = setup();
    const first = asker.ask(dnsRequest('a.example', null), resolvable('a.example'));
    await tick();
    answers[0]!('run');
    expect(await first).toMatchObject({ allowed: true });
    expect(policy.resolvable('a.example').allowed).toBe(true);
    expect(await asker.ask(dnsRequest('a.example', null), resolvable('a.example'))).toMatchObject({ allowed: true });
    expect(asked).toHaveLength(1);
  });

  it('lets the answer about a name stand for the rest of its lookup (late A/AAAA, retries), not a connection', async () => {
    const { asker, asked, answers, tick } = setup();
    const first = asker.ask(dnsRequest('once.example', null), () => false);
    await tick();
    answers[0]!('once');
    await first;
    expect(await asker.ask(dnsRequest('ONCE.example', null), () => false)).toEqual({ allowed: true, note: 'allowed once when asked' });
    const flow = () => asker.ask(flowRequest('tcp', '192.0.2.1', 443, ['once.example'], null), () => false);
    const f1 = flow();
    await tick();
    answers[1]!('once');
    expect(await f1).toMatchObject({ allowed: true });
    void flow();
    await tick();
    expect(asked).toHaveLength(3); // a new connection is a new question
    asker.close();
  });

  it('denies on a timeout, an invalid answer, a save without a file, a prompter that throws, and past the cap', async () => {
    const { asker, answers, resolvable, tick } = setup({ timeoutMs: 20 });
    expect(await asker.ask(dnsRequest('t.example', null), resolvable('t.example'))).toEqual({ allowed: false, note: 'no answer within 0.02 s' });
    const invalid = asker.ask(dnsRequest('i.example', null), resolvable('i.example'));
    await tick();
    answers[1]!('invalid');
    expect(await invalid).toMatchObject({ allowed: false, note: expect.stringMatching(/^no valid answer/) });
    const save = asker.ask(dnsRequest('s.example', null), resolvable('s.example'));
    await tick();
    answers[2]!('save');
    expect(await save).toMatchObject({ allowed: false });
    const throwing = new Asker({ prompt: () => Promise.reject(new Error('boom')), timeoutMs: 1000, live: {} as LivePolicy, auditor: { ask() {}, limitHit() {} } as unknown as Auditor });
    expect(await throwing.ask(dnsRequest('x.example', null), () => false)).toEqual({ allowed: false, note: 'no valid answer (failed: boom)' });
    const { asker: full } = setup();
    for (let i = 0; i < MAX_PENDING; i++) void full.ask(dnsRequest(`n${i}.example`, null), () => false);
    expect(await full.ask(dnsRequest('over.example', null), () => false)).toEqual({ allowed: false, note: `more than ${MAX_PENDING} questions waiting` });
    full.close();
    // One question repeated: the requests waiting on it are bounded too.
    const { asker: one } = setup();
    const repeats = Array.from({ length: MAX_WAITING }, () => one.ask(dnsRequest('same.example', null), () => false));
    expect(await one.ask(dnsRequest('same.example', null), () => false)).toEqual({ allowed: false, note: `more than ${MAX_WAITING} requests waiting` });
    one.close();
    expect((await Promise.all(repeats)).every((o) => !o.allowed)).toBe(true);
  });

  it('on "save", adds the rule for the run and appends it to the file, with who asked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-ask-'));
    try {
      const saveFile = join(dir, 'saved.allow');
      const { asker, answers, policy, tick } = setup({ saveFile });
      const by = { pid: 7, exe: '/usr/bin/node', argv: ['node'], cwd: '/w', parents: [], package: null, label: 'node (evil\npostinstall)' };
      const flow = asker.ask(flowRequest('tcp', '192.0.2.5', 22, [], by), () => false);
      await tick();
      answers[0]!('save');
      expect(await flow).toEqual({ allowed: true, note: 'allowed and saved when asked' });
      expect(policy.decide({ proto: 'tcp', addr: '192.0.2.5', port: 22 }).verdict).toBe('allow');
      const text = readFileSync(saveFile, 'utf8');
      expect(text).toMatch(/^tcp:192\.0\.2\.5:22 {2}# allowed when asked on \S+; asked by node \(evil\\x0apostinstall\)\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('denies what waits when it closes', async () => {
    const { asker, resolvable, tick } = setup();
    const a = asker.ask(dnsRequest('a.example', null), resolvable('a.example'));
    const b = asker.ask(dnsRequest('b.example', null), resolvable('b.example'));
    await tick();
    asker.close();
    expect(await a).toMatchObject({ allowed: false });
    expect(await b).toMatchObject({ allowed: false, note: 'tapbox is shutting down' });
  });
});
