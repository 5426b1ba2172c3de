// --progress: while the sandbox runs, one status line on stderr when stderr is a terminal — flows
// open, bytes on tap0 each way, denials so far, memory in use (with a cgroup) — redrawn in place with
// \r and cleared when the command exits (before the summary table). Never on stdout; on anything but a terminal, nothing at all.
import type { WriteStream } from 'node:tty';
import type { Sandbox } from '../supervisor/sandbox.js';
import { observeTerminalOutput } from '../supervisor/terminal.js';
import { formatBytes } from '../units.js';

/** Redrawn this often (for the byte counts), and on each event, at most once per EVENT_MS. */
const REDRAW_MS = 250;
const EVENT_MS = 50;

export interface ProgressCounts {
  open: number;
  flows: number;
  denied: number;
  bytesUp: number;
  bytesDown: number;
  /** Memory the sandbox uses now, from its cgroup; undefined without one. */
  memoryBytes?: number;
}

/** The status line, cut to `columns - 1` characters so that it never wraps (a wrapped line can't be redrawn with \r). */
export function formatProgress(c: ProgressCounts, columns: number): string {
  const memory = c.memoryBytes === undefined ? '' : `, ${formatBytes(c.memoryBytes)} in use`;
  const line = `tapbox: ${c.open} open / ${c.flows} flows, ↑ ${formatBytes(c.bytesUp)} ↓ ${formatBytes(c.bytesDown)}, ${c.denied} denied${memory}`;
  return line.slice(0, Math.max(0, columns - 1));
}

export interface Progress {
  /** Clears the line and stops redrawing (also done on the sandbox's 'exit'). */
  stop(): void;
}

/**
 * Starts the status line on `stream` if it is a terminal and the sandbox has a network to report on;
 * else null. The command's terminal output reaches the terminal through this process (the supervisor
 * relays its pty, src/supervisor/terminal.ts): the line steps aside for it, cleared before each write
 * and drawn again only once the written line is complete.
 */
export function startProgress(sandbox: Sandbox, stream: NodeJS.WriteStream = process.stderr): Progress | null {
  if (stream.isTTY !== true || sandbox.options.net !== 'tap') return null;
  const tty = stream as WriteStream;
  const put = (text: string) => stream.write(text);
  const counts: ProgressCounts = { open: 0, flows: 0, denied: 0, bytesUp: 0, bytesDown: 0 };
  /** The status is on screen, the cursor at its end. */
  let shown = false;
  /** The command's output left a line unfinished: drawing now would wipe it. */
  let midLine = false;
  let lastDraw = 0;
  let trailing: NodeJS.Timeout | null = null;
  const draw = () => {
    if (midLine) return;
    const traffic = sandbox.traffic;
    if (traffic) [counts.bytesUp, counts.bytesDown] = [traffic.bytesUp, traffic.bytesDown];
    counts.memoryBytes = sandbox.usage()?.memoryBytes;
    put(`\r${formatProgress(counts, tty.columns || 80)}\x1b[K`);
    shown = true;
    lastDraw = Date.now();
  };
  const clear = () => {
    if (shown) put('\r\x1b[K');
    shown = false;
  };
  // An event shows at once, unless one was just drawn: then at the end of that short window.
  const changed = () => {
    if (trailing) return;
    const wait = lastDraw + EVENT_MS - Date.now();
    if (wait <= 0) return draw();
    trailing = setTimeout(() => {
      trailing = null;
      draw();
    }, wait);
    trailing.unref();
  };
  const onFlow = (e: { verdict: string }) => {
    if (e.verdict !== 'allow') return;
    counts.open++;
    counts.flows++;
    changed();
  };
  const onFlowEnd = () => {
    counts.open = Math.max(0, counts.open - 1);
    changed();
  };
  const onDeny = () => {
    counts.denied++;
    changed();
  };
  sandbox.on('flow', onFlow);
  sandbox.on('flowEnd', onFlowEnd);
  sandbox.on('deny', onDeny);
  const timer = setInterval(draw, REDRAW_MS);
  timer.unref();

  // The command's terminal output, relayed by the supervisor: the line steps aside for it.
  observeTerminalOutput((chunk) => {
    clear();
    if (chunk.length > 0) midLine = chunk[chunk.length - 1] !== 0x0a;
  });

  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    if (trailing) clearTimeout(trailing);
    sandbox.off('flow', onFlow);
    sandbox.off('flowEnd', onFlowEnd);
    sandbox.off('deny', onDeny);
    sandbox.off('exit', stop);
    observeTerminalOutput(null);
    clear();
  };
  sandbox.on('exit', stop);
  return { stop };
}
