// The command never gets the caller's terminal: wherever the caller's stdin, stdout or stderr is a
// terminal, the command gets the slave of a pseudo-terminal of its own instead (the others stay as
// they are). Handed the caller's terminal, it could reopen it through /proc/self/fd/N with another
// access mode (read what the user types from an fd given for writing) or change its settings. The
// launcher makes the pty slave the controlling terminal of the command's new session when it is the
// command's stdin, so job control works while TIOCSTI can only push input into the sandbox's own pty.
//
// The supervisor relays: what is typed on a terminal stdin (put in raw mode: the pty's own line
// discipline echoes and edits) goes to the pty master; what the pty outputs goes to the caller's
// stdout if it is a terminal, else stderr, else stdin's terminal (where the echo of typing shows).
// The pty takes the window size of that terminal, and follows it on SIGWINCH.
import { closeSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import tty from 'node:tty';
import type Koffi from 'koffi';
import { TapboxError } from '../errors.js';

/** libc's terminal calls, bound through koffi on first use: a run without a pty never loads koffi (start-up time). */
function bindLibc() {
  const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
  const libc = koffi.load('libc.so.6');
  koffi.struct('tapbox_winsize', { ws_row: 'uint16', ws_col: 'uint16', ws_xpixel: 'uint16', ws_ypixel: 'uint16' });
  koffi.struct('tapbox_pollfd', { fd: 'int', events: 'short', revents: 'short' });
  return {
    openpty: libc.func('int openpty(_Out_ int *master, _Out_ int *slave, void *name, void *termp, const tapbox_winsize *winp)'),
    setWinsize: libc.func('int ioctl(int fd, unsigned long request, const tapbox_winsize *winp)'),
    getWinsize: libc.func('int ioctl(int fd, unsigned long request, _Out_ tapbox_winsize *winp)'),
    fcntl: libc.func('int fcntl(int fd, int cmd, int arg)'),
    poll: libc.func('int poll(_Inout_ tapbox_pollfd *fds, unsigned long nfds, int timeout)'),
    tcgetpgrp: libc.func('int tcgetpgrp(int fd)'),
    getpgrp: libc.func('int getpgrp(void)'),
  };
}
let bound: ReturnType<typeof bindLibc> | null = null;
const libc = () => (bound ??= bindLibc());
const POLLIN = 1;
const [F_DUPFD_CLOEXEC, F_SETFD, F_GETFL, F_SETFL, FD_CLOEXEC, O_NONBLOCK] = [1030, 2, 3, 4, 1, 0o4000];
const TIOCGWINSZ = 0x5413;
const TIOCSWINSZ = 0x5414;

export interface Pty {
  master: number;
  slave: number;
}

/** For fds 0, 1 and 2: whether it is a terminal (then the command gets the pty slave in its place). */
export type Terminals = readonly [boolean, boolean, boolean];

export function terminalFds(): Terminals {
  return [tty.isatty(0), tty.isatty(1), tty.isatty(2)];
}

/** The caller's terminal the pty's output goes to, and whose size it takes. */
function outputFd(terminals: Terminals): 0 | 1 | 2 {
  return terminals[1] ? 1 : terminals[2] ? 2 : 0;
}

interface Winsize {
  ws_row: number;
  ws_col: number;
  ws_xpixel: number;
  ws_ypixel: number;
}

/** fd's window size, or 24x80 when it has none (a terminal that never set one). */
function windowSize(fd: number): Winsize {
  const size: Winsize = { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
  if (libc().getWinsize(fd, TIOCGWINSZ, size) !== 0 || size.ws_row === 0 || size.ws_col === 0) return { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
  return size;
}

/** A pty for the command, the size of the caller's terminal it will be relayed to. */
export function openPty(terminals: Terminals): Pty {
  const master = [0];
  const slave = [0];
  if (libc().openpty(master, slave, null, null, windowSize(outputFd(terminals))) !== 0) {
    // Never the caller's terminal instead: nothing runs.
    throw new TapboxError('EINTERNAL', 'cannot open a pseudo-terminal for the command (/dev/ptmx refused one); close some terminals or raise kernel.pty.max, or redirect its stdin, stdout and stderr away from the terminal.');
  }
  // Neither leaks into the launcher under its own number: it gets the slave as its stdio only.
  libc().fcntl(master[0]!, F_SETFD, FD_CLOEXEC);
  libc().fcntl(slave[0]!, F_SETFD, FD_CLOEXEC);
  return { master: master[0]!, slave: slave[0]! };
}

/** Sizes a pty opened elsewhere (`tapbox exec -t`: in the box) to the caller's terminal it will be relayed to. */
export function sizePty(master: number, terminals: Terminals): void {
  libc().setWinsize(master, TIOCSWINSZ, windowSize(outputFd(terminals)));
}

/**
 * Writes to a non-blocking fd without ever blocking the event loop: what the fd can't take now
 * (EAGAIN) waits, in order, and is retried shortly. Any other error drops it all (the reader is gone).
 */
function queuedWriter(fd: number): { write: (chunk: Buffer) => void; stop: () => void } {
  let queue: Buffer[] = [];
  let retry: NodeJS.Timeout | null = null;
  const flush = () => {
    retry = null;
    while (queue.length > 0) {
      const chunk = queue[0]!;
      let n: number;
      try {
        n = writeSync(fd, chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') retry = setTimeout(flush, 10);
        else queue = [];
        return;
      }
      if (n < chunk.length) queue[0] = chunk.subarray(n);
      else queue.shift();
    }
  };
  return {
    write: (chunk) => {
      queue.push(chunk);
      if (!retry) flush();
    },
    stop: () => {
      if (retry) clearTimeout(retry);
      queue = [];
    },
  };
}

export interface Relay {
  /** Resolves once the sandbox's output ended: every slave closed, all it wrote relayed. */
  done: Promise<void>;
  /** Resolves at `done`, or once the pty had nothing to read and no hang-up for idleMs (a slave fd kept open somewhere). */
  settled(idleMs: number): Promise<void>;
  /** Stops the relay and restores the caller's terminal. */
  restore(): void;
}

/** Relays between the caller's terminals and the pty master until the sandbox side closes. */
export function relayTerminal(pty: Pick<Pty, 'master'>, terminals: Terminals): Relay {
  const out = outputFd(terminals);
  // A tty stdout or stderr writes synchronously; stdin's terminal (when neither is one) takes the
  // echo of what is typed (none if that fd was opened for reading only).
  const echo = out === 0 ? queuedWriter(0) : null;
  const writeOut = out === 1 ? (chunk: Buffer) => process.stdout.write(chunk) : out === 2 ? (chunk: Buffer) => process.stderr.write(chunk) : echo!.write;
  const write = (chunk: Buffer) => {
    outputObserver?.(chunk);
    writeOut(chunk);
  };
  // Non-blocking: typing into a command that does not read must not stall the event loop, and with
  // it the output relay (the command, blocked on its output, would never read: a deadlock).
  libc().fcntl(pty.master, F_SETFL, libc().fcntl(pty.master, F_GETFL, 0) | O_NONBLOCK);
  const input = queuedWriter(pty.master);
  // libuv ends a stream at the hang-up (every slave closed) once a read came back short, which a pty
  // read always does: what the command wrote last may still be in the pty. A second descriptor of it
  // reads that rest; the kernel says EIO only once nothing is left.
  const rest = libc().fcntl(pty.master, F_DUPFD_CLOEXEC, 0);
  const readRest = () => {
    const buffer = Buffer.allocUnsafe(65536);
    for (;;) {
      let n: number;
      try {
        n = readSync(rest, buffer, 0, buffer.length, null);
      } catch {
        return; // EIO: all read (or the relay was stopped)
      }
      if (n <= 0) return;
      write(Buffer.from(buffer.subarray(0, n)));
    }
  };
  const master = new tty.ReadStream(pty.master);
  const onResize = () => libc().setWinsize(pty.master, TIOCSWINSZ, windowSize(out));
  // First, so that the pty has its new size before the CLI forwards SIGWINCH to the command.
  process.prependListener('SIGWINCH', onResize);
  // Typing is relayed only while we are the terminal's foreground job: a background job that set its
  // mode or read it would be stopped (SIGTTOU, SIGTTIN). Brought to the foreground (fg sends SIGCONT),
  // we start.
  const stdin = terminals[0] ? (process.stdin as tty.ReadStream) : null;
  let relaying = false;
  let diverted: ((chunk: Buffer) => void) | null = null;
  // Ask mode's prompt has the keyboard: what is typed goes to it, never to the sandbox.
  const onInput = (chunk: Buffer) => (diverted ? diverted(chunk) : input.write(chunk));
  const startInput = () => {
    if (relaying || !stdin || libc().tcgetpgrp(0) !== libc().getpgrp()) return;
    relaying = true;
    stdin.setRawMode(true);
    stdin.on('data', onInput);
    stdin.resume();
  };
  startInput();
  if (stdin) process.on('SIGCONT', startInput);
  const done = new Promise<void>((resolveDone) => {
    master.on('data', write);
    // EIO on the master is how Linux says every slave fd closed: the normal end.
    master.on('error', () => resolveDone());
    master.on('end', () => {
      readRest();
      resolveDone();
    });
    master.on('close', () => resolveDone());
  });
  activeRelay = {
    takeTerminal(onKey) {
      diverted = onKey;
      master.pause(); // the sandbox can't draw over the prompt: its output waits
      return () => {
        diverted = null;
        master.resume();
      };
    },
  };
  // Asked of the kernel, not of our 'data' events: a write blocked on a slow terminal delays those.
  const pending = () => libc().poll({ fd: pty.master, events: POLLIN, revents: 0 }, 1, 0) > 0; // output, or every slave closed
  const settled = (idleMs: number) =>
    new Promise<void>((resolveSettled) => {
      const check = () => (pending() ? (timer = setTimeout(check, idleMs)) : resolveSettled());
      let timer = setTimeout(check, idleMs);
      void done.then(() => {
        clearTimeout(timer);
        resolveSettled();
      });
    });
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    activeRelay = null;
    process.off('SIGWINCH', onResize);
    process.off('SIGCONT', startInput);
    if (stdin && relaying) {
      stdin.off('data', onInput);
      stdin.setRawMode(false);
      stdin.pause();
    }
    input.stop();
    echo?.stop();
    master.destroy();
    if (rest >= 0) closeSync(rest);
  };
  return { done, settled, restore };
}

let outputObserver: ((chunk: Buffer) => void) | null = null;

/** `observer` is called before each chunk of the sandbox's output is written to the terminal (null: none). */
export function observeTerminalOutput(observer: ((chunk: Buffer) => void) | null): void {
  outputObserver = observer;
}

/** The relay running now, if any: ask mode's prompt takes the keyboard (and holds the sandbox's output) through it. */
export interface TerminalRelay {
  /** Sends what is typed to `onKey` instead of the sandbox, and holds the sandbox's output, until the returned function is called. */
  takeTerminal(onKey: (chunk: Buffer) => void): () => void;
}
let activeRelay: TerminalRelay | null = null;

export function terminalRelay(): TerminalRelay | null {
  return activeRelay;
}

export function closePtySlave(pty: Pty): void {
  closeSync(pty.slave);
}
