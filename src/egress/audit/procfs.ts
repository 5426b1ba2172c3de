// Reading a process's entries in procfs, boundedly and without throwing: what attribution.ts needs to
// know about the sandbox's processes. A file or link that can't be read (the process is gone, or not
// ours) is null; the caller decides what that means (for attribution: unknown, never a guess).
import { closeSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ENV_NAMES, type ProcessFacts } from './package-context.js';
import type { TableSearch } from './socket-table.js';

/** Command lines: this many arguments of at most ARG_CHARS characters, read from at most CMDLINE_BYTES. */
const MAX_ARGS = 16;
const ARG_CHARS = 200;
const CMDLINE_BYTES = 4096;
const ENVIRON_BYTES = 128 * 1024;
/** Bytes of one socket table read at most (a busy sandbox's TIME_WAITs included). */
const MAX_TABLE_BYTES = 64 * 1024 * 1024;

export interface Stat {
  ppid: number;
  startTime: string;
}

export class Procfs {
  /** One reusable buffer: a lookup reads a dozen small files, and no read allocates. */
  private readonly chunk = Buffer.allocUnsafe(256 * 1024);

  /** @param root where procfs is mounted (tests may point elsewhere). */
  constructor(readonly root = '/proc') {}

  /** A descriptor of a /proc file, or null when it can't be opened (the process is gone, not ours). */
  private open(path: string): number | null {
    try {
      return openSync(`${this.root}/${path}`, 'r');
    } catch {
      return null;
    }
  }

  /**
   * Feeds a table to `search` as the kernel writes it, whole lines at a time, until the search is done,
   * the table ends, MAX_TABLE_BYTES were read or `budgetMs` since `started` are spent; null when it can't be opened.
   */
  searchTable(path: string, search: TableSearch, started: number, budgetMs: number): true | null {
    const fd = this.open(path);
    if (fd === null) return null;
    try {
      let carry = '';
      for (let total = 0; total < MAX_TABLE_BYTES && !search.done && performance.now() - started < budgetMs; ) {
        const n = readSync(fd, this.chunk, 0, this.chunk.length, null);
        if (n <= 0) break;
        total += n;
        const text = carry + this.chunk.toString('latin1', 0, n);
        const lastNewline = text.lastIndexOf('\n');
        search.push(text.slice(0, lastNewline + 1));
        carry = text.slice(lastNewline + 1);
      }
      if (carry) search.push(carry);
      return true;
    } catch {
      return true;
    } finally {
      closeSync(fd);
    }
  }

  /** Who `pid` is: executable, argv (bounded), cwd, and the package managers' variables (withEnv). */
  facts(pid: number, withEnv = true): ProcessFacts | null {
    const cmdline = this.read(`${pid}/cmdline`, CMDLINE_BYTES);
    if (cmdline === null) return null;
    const args = cmdline.split('\0');
    // A program that set its title (npm does) leaves its cmdline padded with NULs.
    while (args.length && args[args.length - 1] === '') args.pop();
    const argv = args.slice(0, MAX_ARGS).map((a) => (a.length > ARG_CHARS ? `${a.slice(0, ARG_CHARS)}…` : a));
    const exe = this.link(`${pid}/exe`) ?? argv[0] ?? '';
    const cwd = this.link(`${pid}/cwd`) ?? '';
    const env = new Map<string, string>();
    if (withEnv) {
      for (const entry of (this.read(`${pid}/environ`, ENVIRON_BYTES) ?? '').split('\0')) {
        const eq = entry.indexOf('=');
        const name = entry.slice(0, eq);
        if (eq > 0 && (ENV_NAMES as readonly string[]).includes(name)) env.set(name, entry.slice(eq + 1, eq + 1 + ARG_CHARS));
      }
    }
    return { exe: exe.replace(/ \(deleted\)$/, ''), argv, cwd, env };
  }

  /** The pid in the sandbox's PID namespace (the last NSpid of /proc/PID/status). */
  nsPid(pid: number): number | null {
    const status = this.read(`${pid}/status`, 8192);
    const m = status && /^NSpid:\s*([\d\s]+)$/m.exec(status);
    const ids = m ? m[1]!.trim().split(/\s+/) : [];
    return ids.length ? Number(ids[ids.length - 1]) : null;
  }

  /** Its parent and start time (/proc/PID/stat). */
  stat(pid: number): Stat | null {
    const text = this.read(`${pid}/stat`, 4096);
    if (!text) return null;
    // The command name is in parentheses and may hold anything: fields follow its last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), startTime: f[19] ?? '' };
  }

  /** The entries of a directory under the root (fd/ of a process); null when gone. */
  list(path: string): string[] | null {
    try {
      return readdirSync(`${this.root}/${path}`);
    } catch {
      return null;
    }
  }

  /** Every process's pid. */
  pids(): number[] {
    try {
      return readdirSync(this.root).filter((n) => /^\d+$/.test(n)).map(Number);
    } catch {
      return [];
    }
  }

  /** A link under the root (ns/pid, fd/N, exe, cwd). */
  link(path: string): string | null {
    try {
      return readlinkSync(`${this.root}/${path}`);
    } catch {
      return null;
    }
  }

  /** At most `max` bytes of a /proc file, or null when it can't be read (gone, not ours). */
  read(path: string, max: number): string | null {
    const fd = this.open(path);
    if (fd === null) return null;
    try {
      // Into the one reusable buffer (a lookup reads a dozen small files): no allocation per read.
      const buf = this.chunk;
      let total = 0;
      while (total < Math.min(max, buf.length)) {
        const n = readSync(fd, buf, total, Math.min(buf.length, max) - total, null);
        if (n <= 0) break;
        total += n;
      }
      return buf.toString('utf8', 0, total);
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }
}
