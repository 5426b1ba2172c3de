// A box's output log: the command's stdout and stderr as they come, in one file with a size cap. At
// the cap the file becomes FILE.1 (the one before is dropped) and a new FILE starts, so a box that
// talks forever keeps at most twice the cap on disk. Readers see FILE.1 then FILE.
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';

export const LOG_CAP_BYTES = 8 * 1024 * 1024;

/** Appends every chunk of `streams` to `path`, rotating at `cap` bytes. */
export function captureOutput(path: string, streams: Readable[], cap = LOG_CAP_BYTES): void {
  let fd = openSync(path, 'a', 0o600);
  let size = statSync(path).size;
  for (const stream of streams) {
    stream.on('data', (chunk: Buffer) => {
      if (size > 0 && size + chunk.length > cap) {
        closeSync(fd);
        renameSync(path, `${path}.1`);
        fd = openSync(path, 'a', 0o600);
        size = 0;
      }
      writeSync(fd, chunk);
      size += chunk.length;
    });
  }
}

/** The log so far (FILE.1 then FILE), its last `tail` lines when given. */
export function readLog(path: string, tail?: number): string {
  const text = [`${path}.1`, path].filter((p) => existsSync(p)).map((p) => readFileSync(p, 'utf8')).join('');
  if (tail === undefined) return text;
  const lines = text.split('\n');
  const last = lines.at(-1) === '' ? lines.slice(0, -1) : lines;
  const kept = last.slice(Math.max(0, last.length - tail));
  return kept.length ? `${kept.join('\n')}\n` : '';
}

/**
 * Writes what is appended to `path` from byte `from` on, until `done()` says the writer is gone (then
 * the rest). A rotation (a new file at the path) is followed from its start. Polls: the log is a file.
 */
export async function followLog(path: string, from: number, write: (chunk: Buffer) => void, done: () => boolean, signal?: AbortSignal): Promise<void> {
  let offset = from;
  let inode = existsSync(path) ? statSync(path).ino : 0;
  for (;;) {
    const last = done();
    if (existsSync(path)) {
      const st = statSync(path);
      if (st.ino !== inode || st.size < offset) [inode, offset] = [st.ino, 0];
      if (st.size > offset) {
        const fd = openSync(path, 'r');
        const buf = Buffer.alloc(st.size - offset);
        const n = readSyncAll(fd, buf, offset);
        closeSync(fd);
        offset += n;
        write(buf.subarray(0, n));
      }
    }
    if (last || signal?.aborted) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function readSyncAll(fd: number, buf: Buffer, position: number): number {
  let n = 0;
  while (n < buf.length) {
    const got = readSync(fd, buf, n, buf.length - n, position + n);
    if (got === 0) break;
    n += got;
  }
  return n;
}
