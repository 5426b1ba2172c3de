// The wait for a pinned flow's first bytes, shared by the TCP and UDP forwarders. A flow allowed only
// through a DNS pin goes on only once its first bytes named an allowed name (TCP: a TLS ClientHello or
// an HTTP request head; UDP: a QUIC Initial's ClientHello). The wait has three states:
//
//   waiting   nothing read yet. The deadline runs from the start, except on a port the rule names
//             explicitly (TCP), where the client may stay silent while the server speaks first;
//   reading   bytes read, no verdict yet: the deadline runs (started by the first bytes if need be);
//   settled   a verdict, or null: the flow went away (or tapbox is closing) before one. Once settled,
//             every later event is ignored, so each forwarder's handler runs exactly once.
import type { FlowDecision } from '../policy/policy.js';
import type { ForwarderContext } from './context.js';

/** The verdict on a pinned flow's first bytes: the name they carry, or why the flow is refused. */
export type Verdict = { ok: true; reason: string; name: string | null; protocol?: 'http' | 'tls' } | { ok: false; reason: string };

export type Allowed = FlowDecision & { verdict: 'allow' };

export interface FirstBytesHandlers {
  /** Start the deadline before any byte came (false: from the first byte). */
  deadlineFromStart: boolean;
  /** The verdict when the deadline passes (or the client ends its side) without one. */
  timedOut(bytesRead: number): Verdict;
  /** Called once, with the verdict, or null when the flow went away first. */
  settled(verdict: Verdict | null): void;
  /** Called after settled(null) when tapbox closes while the flow waits: end the sandbox's side. */
  abort(): void;
}

export class FirstBytesInspection {
  state: 'waiting' | 'reading' | 'settled' = 'waiting';
  /** Bytes read so far. */
  bytes = 0;
  private deadline: NodeJS.Timeout | undefined;
  private readonly onClose = () => {
    this.settle(null);
    this.handlers.abort();
  };

  constructor(
    private readonly ctx: ForwarderContext,
    private readonly handlers: FirstBytesHandlers,
  ) {
    if (handlers.deadlineFromStart) this.startDeadline();
    ctx.closers.add(this.onClose);
  }

  /** `length` more bytes were read (the caller judges them, then settles or not). */
  read(length: number): void {
    if (this.state === 'settled') return;
    this.state = 'reading';
    this.bytes += length;
    this.startDeadline();
  }

  /** The client ended its side, or the deadline passed: settles with the handlers' timedOut verdict. */
  timeOut(): void {
    if (this.state !== 'settled') this.settle(this.handlers.timedOut(this.bytes));
  }

  settle(verdict: Verdict | null): void {
    if (this.state === 'settled') return;
    this.state = 'settled';
    clearTimeout(this.deadline);
    this.ctx.closers.delete(this.onClose);
    this.handlers.settled(verdict);
  }

  private startDeadline(): void {
    this.deadline ??= setTimeout(() => this.timeOut(), this.ctx.inspectTimeoutMs);
  }
}
