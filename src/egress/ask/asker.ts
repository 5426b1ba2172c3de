// Ask mode's one question at a time (README "Ask mode"). A lookup or flow that no rule allows is held
// while the prompter (the user's terminal, or the library's onRequest) answers; no answer within the
// timeout is a no. Requests that are the same question (A and AAAA of one name, a retransmitted query,
// the same name in other letter case) wait for the one answer. A question whose answer arrives after an
// earlier "for this run" already allowed it is not asked again. Never fail open: a prompter that
// throws, or anything but a known answer, is a no; at most MAX_PENDING questions and MAX_WAITING
// requests wait, past that no.
import { appendFile } from 'node:fs/promises';
import type { Auditor } from '../audit/auditor.js';
import { printable } from '../dns/names.js';
import type { LivePolicy } from '../live-policy.js';
import { answerOf, type AskAnswer, type AskRequest, type RequestDecision } from './request.js';

/** Asks one question; resolves with the answer; `signal` aborts it (timeout, shutdown). */
export type Prompter = (request: AskRequest, signal: AbortSignal) => Promise<AskAnswer | 'invalid'>;

/** The library's onRequest as a prompter. */
export function callbackPrompter(onRequest: (request: AskRequest) => RequestDecision | Promise<RequestDecision>): Prompter {
  return async (request) => answerOf(await onRequest(structuredClone(request)));
}

export interface AskerOptions {
  prompt: Prompter;
  timeoutMs: number;
  live: LivePolicy;
  auditor: Auditor;
  /** The allowlist file "allow and save" appends the rule to (--ask-save). */
  saveFile?: string;
}

export interface AskOutcome {
  allowed: boolean;
  /** For the log and the event: "allowed for this run when asked", "no answer within 30 s", ... */
  note: string;
}

/** Questions held at most; past it, new ones are denied at once. */
export const MAX_PENDING = 64;
/** Requests waiting at most, all questions together (a sandbox repeating one question can't pile up more). */
export const MAX_WAITING = 1024;
/**
 * One lookup is several queries (A and AAAA, retries, other resolvers' shapes), some arriving after the
 * answer: for this long the answer to a name stands for them too, "once" and "no" alike.
 */
export const LOOKUP_ANSWER_MS = 5000;

export interface AskEvent {
  request: AskRequest;
  answer: AskAnswer;
  note: string;
}

export class Asker {
  private readonly pending = new Map<string, Promise<AskOutcome>>();
  private waiting = 0;
  /** The latest answers about names, standing for the rest of their lookup (LOOKUP_ANSWER_MS). */
  private readonly lookupAnswers = new Map<string, { outcome: AskOutcome; until: number }>();
  private turn: Promise<unknown> = Promise.resolve();
  private readonly aborts = new Set<AbortController>();
  private closed = false;

  constructor(private readonly o: AskerOptions) {}

  /**
   * Asks about `request` (held until answered); `allowedNow` tells whether an earlier answer already
   * allowed it. Resolves with whether this request may go on.
   */
  ask(request: AskRequest, allowedNow: () => boolean): Promise<AskOutcome> {
    const key = `${request.kind} ${request.rule.toLowerCase()}`;
    if (this.waiting >= MAX_WAITING) {
      this.o.auditor.limitHit('ask-pending', MAX_WAITING, 'requests waiting for an answer at the cap: new one denied');
      return Promise.resolve({ allowed: false, note: `more than ${MAX_WAITING} requests waiting` });
    }
    const same = this.pending.get(key);
    if (same) return this.counted(same);
    const answered = this.lookupAnswers.get(key);
    if (answered && answered.until > Date.now()) return Promise.resolve(answered.outcome);
    if (this.closed) return Promise.resolve({ allowed: false, note: 'tapbox is shutting down' });
    if (this.pending.size >= MAX_PENDING) {
      this.o.auditor.limitHit('ask-pending', MAX_PENDING, 'questions waiting for an answer at the cap: new one denied');
      return Promise.resolve({ allowed: false, note: `more than ${MAX_PENDING} questions waiting` });
    }
    const outcome = this.queue(() => this.settle(request, allowedNow));
    this.pending.set(key, outcome);
    void outcome.then((o) => {
      this.pending.delete(key);
      if (request.kind === 'dns') this.rememberLookupAnswer(key, o);
    });
    return this.counted(outcome);
  }

  private rememberLookupAnswer(key: string, outcome: AskOutcome): void {
    const now = Date.now();
    if (this.lookupAnswers.size >= MAX_PENDING) for (const [k, a] of this.lookupAnswers) if (a.until <= now) this.lookupAnswers.delete(k);
    if (this.lookupAnswers.size < MAX_PENDING) this.lookupAnswers.set(key, { outcome, until: now + LOOKUP_ANSWER_MS });
  }

  /** `outcome`, counted among the waiting requests until it settles. */
  private counted(outcome: Promise<AskOutcome>): Promise<AskOutcome> {
    this.waiting++;
    return outcome.finally(() => this.waiting--);
  }

  /** Denies every question still waiting and ends the prompt on screen. */
  close(): void {
    this.closed = true;
    for (const a of this.aborts) a.abort();
  }

  private queue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.turn.then(job, job);
    this.turn = run.catch(() => undefined);
    return run;
  }

  private async settle(request: AskRequest, allowedNow: () => boolean): Promise<AskOutcome> {
    if (allowedNow()) return { allowed: true, note: 'allowed by an earlier answer' };
    if (this.closed) return { allowed: false, note: 'tapbox is shutting down' };
    const abort = new AbortController();
    this.aborts.add(abort);
    let timer: NodeJS.Timeout | undefined;
    let answer: AskAnswer;
    let note: string;
    try {
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.o.timeoutMs)));
      const aborted = new Promise<'aborted'>((resolve) => abort.signal.addEventListener('abort', () => resolve('aborted'), { once: true }));
      const got = await Promise.race([this.o.prompt(request, abort.signal), timeout, aborted]).catch((e: unknown) => `failed: ${(e as Error)?.message ?? e}` as const);
      if (got === 'once' || got === 'run' || got === 'deny' || (got === 'save' && this.o.saveFile)) {
        answer = got;
        note = NOTES[got];
      } else {
        answer = 'deny';
        note = got === 'timeout' ? `no answer within ${this.o.timeoutMs / 1000} s` : got === 'aborted' ? 'tapbox is shutting down' : `no valid answer (${printable(String(got))})`;
      }
    } finally {
      clearTimeout(timer);
      abort.abort();
      this.aborts.delete(abort);
    }
    if (answer === 'run' || answer === 'save') {
      this.o.live.allow(request.rule, answer === 'run' ? 'ask: allow for this run' : 'ask: allow and save');
      if (answer === 'save') note += await this.save(request);
    }
    this.o.auditor.ask({ request, answer, note });
    return { allowed: answer !== 'deny', note };
  }

  /** Appends the rule to the --ask-save file; "" or why it failed (the rule holds for this run anyway). */
  private async save(request: AskRequest): Promise<string> {
    const who = request.by ? `; asked by ${printable(request.by.label)}` : '';
    try {
      await appendFile(this.o.saveFile!, `${request.rule}  # allowed when asked on ${new Date().toISOString()}${who}\n`, { mode: 0o644 });
      return '';
    } catch (e) {
      return ` (not saved: ${(e as Error).message})`;
    }
  }
}

const NOTES: Record<AskAnswer, string> = {
  once: 'allowed once when asked',
  run: 'allowed for this run when asked',
  save: 'allowed and saved when asked',
  deny: 'denied when asked',
};
