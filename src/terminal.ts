// Interactive use: the command gets a pseudo-terminal of its own, never the caller's terminal. The
// launcher makes the pty slave the controlling terminal of the command's new session, so job control
// works inside while TIOCSTI can only push input into the sandbox's own pty. The supervisor relays
// bytes between the caller's terminal (in raw mode) and the pty master, and copies window size changes.
import { closeSync, writeSync } from 'node:fs';
import tty from 'node:tty';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const Winsize = koffi.struct('tapbox_winsize', { ws_row: 'uint16', ws_col: 'uint16', ws_xpixel: 'uint16', ws_ypixel: 'uint16' });
const openpty = libc.func('int openpty(_Out_ int *master, _Out_ int *slave, void *name, void *termp, const tapbox_winsize *winp)');
const ioctl = libc.func('int ioctl(int fd, unsigned long request, ...)');
const TIOCSWINSZ = 0x5414;

export interface Pty {
  master: number;
  slave: number;
}

function winsize(rows: number, cols: number) {
  return { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
}

export function openPty(rows: number, cols: number): Pty {
  const master = [0];
  const slave = [0];
  if (openpty(master, slave, null, null, winsize(rows, cols)) !== 0) throw new Error('openpty failed');
  return { master: master[0]!, slave: slave[0]! };
}

function resize(fd: number, rows: number, cols: number): void {
  ioctl(fd, TIOCSWINSZ, koffi.pointer(Winsize), winsize(rows, cols));
}

/**
 * Relays the caller's terminal to the pty master until the sandbox side closes. Returns a function that
 * stops the relay and restores the caller's terminal; `done` resolves when the sandbox's output ended.
 */
export function relayTerminal(pty: Pty): { done: Promise<void>; restore: () => void } {
  const stdin = process.stdin as tty.ReadStream;
  const stdout = process.stdout as tty.WriteStream;
  const master = new tty.ReadStream(pty.master);
  const onResize = () => resize(pty.master, stdout.rows, stdout.columns);
  let diverted: ((chunk: Buffer) => void) | null = null;
  const onInput = (chunk: Buffer) => {
    // Ask mode's prompt has the keyboard: what is typed goes to it, never to the sandbox.
    if (diverted) return diverted(chunk);
    try {
      writeSync(pty.master, chunk);
    } catch {
      // The sandbox side is gone; its exit ends the run.
    }
  };
  stdin.setRawMode(true);
  stdin.on('data', onInput);
  stdin.resume();
  stdout.on('resize', onResize);
  const done = new Promise<void>((resolveDone) => {
    master.on('data', (chunk: Buffer) => stdout.write(chunk));
    // EIO on the master is how Linux says every slave fd closed: the normal end.
    master.on('error', () => resolveDone());
    master.on('end', () => resolveDone());
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
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    activeRelay = null;
    stdout.off('resize', onResize);
    stdin.off('data', onInput);
    stdin.setRawMode(false);
    stdin.pause();
    master.destroy();
  };
  return { done, restore };
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
