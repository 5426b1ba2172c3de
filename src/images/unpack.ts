// Applies a tar stream (a rootfs tarball or one image layer) onto a directory, never writing outside it.
//
// The archive is the attacker. Every member name is made relative (a leading "/" is dropped, as GNU
// tar and docker do) and refused if it has a ".." component. Every directory on the way to a member is
// checked with lstat, component by component, as it is at that moment: a symlink there (planted by an
// earlier member or layer) refuses the archive rather than being followed, so no write goes through
// one. The member itself is created with O_EXCL|O_NOFOLLOW after whatever stood at its path was
// removed (a symlink is unlinked, never followed). Hard links must name a member already inside the
// root. Nothing else writes into the store while we unpack (it is private to the user, 0700), so
// these checks and the writes that follow them see the same tree.
//
// Refused (the whole import fails, and its partial directory is removed): ".." members, a write
// through a symlink, a hard link to something not in the root, files that would leave less than 1 GiB
// free on the disk (a compression bomb: each file's size is in its header). Skipped with a warning: device nodes
// and fifos (a rootless user can't create devices; the sandbox gets tapbox's own /dev). Modes keep
// their permission bits; setuid and setgid are dropped (inside the sandbox no_new_privs makes them
// inert anyway, and on the host they must not exist); directories also get u+rwx so that the owner can
// fill them. Every member is written as the user (root inside the sandbox); the owner its header gives
// is noted in options.owners, which gives it once the last layer is in (owners.ts).
import { closeSync, constants, fchmodSync as fchmod, futimesSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, rmSync, statfsSync, symlinkSync, writeSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { TapboxError } from '../errors.js';
import type { Owners } from './owners.js';

export interface ApplyOptions {
  /** The archive, as the user knows it (for messages). */
  source: string;
  /** Treat `.wh.NAME` and `.wh..wh..opq` as OCI/docker whiteouts (image layers), not as files. */
  whiteouts: boolean;
  /** Called once per skipped member (a device node, a fifo, an unknown type). */
  onSkip?: (name: string, why: string) => void;
  /** Bytes the archive may write (default: the free space of root's filesystem less KEEP_FREE). */
  spaceLeft?: (root: string) => number;
  /** Notes each member's owner (and forgets those of members removed), across the layers of one image. */
  owners?: Owners;
}

/** What unpacking leaves free on the disk: a layer that is a compression bomb must not fill it. */
const KEEP_FREE = 1024 ** 3;

function freeSpace(root: string): number {
  const fs = statfsSync(root);
  return fs.bavail * fs.bsize - KEEP_FREE;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Refuses the archive: one sentence naming the member, what it tried, and what to do. */
function refuse(source: string, member: string, what: string): never {
  throw new TapboxError('EUSAGE', `refusing ${source}: its member "${member}" ${what}; an image must stay inside its own root, so get a clean one from its publisher.`);
}

/** A path's components under the root ("/" and "./" prefixes dropped), or null if it has a ".." component. */
function partsOf(name: string): string[] | null {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return parts.includes('..') ? null : parts;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * The directory that holds parts' last component, each directory on the way checked with lstat (and
 * created when `create` and missing). Returns null when a directory is missing and not created.
 */
function parentOf(root: string, parts: string[], member: string, source: string, create: boolean): string | null {
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const next = join(dir, parts[i]!);
    const st = lstatOrNull(next);
    if (st === null) {
      if (!create) return null;
      mkdirSync(next, { mode: 0o755 });
    } else if (st.isSymbolicLink()) {
      refuse(source, member, `would be written through the symlink "${parts.slice(0, i + 1).join('/')}"`);
    } else if (!st.isDirectory()) {
      refuse(source, member, `is under "${parts.slice(0, i + 1).join('/')}", which is not a directory`);
    }
    dir = next;
  }
  return dir;
}

/** Removes whatever is at path (a symlink itself, never its target), and its owner's note: rel is path under the root. */
function clear(path: string, rel: string, owners: Owners | undefined, directory = true): void {
  rmSync(path, { recursive: true, force: true });
  owners?.removed(rel, directory);
}

const fileMode = (mode: number | undefined) => (mode ?? 0o644) & 0o777;
const dirMode = (mode: number | undefined) => ((mode ?? 0o755) & 0o1777) | 0o700;

/** Reads a member's data to its end without keeping it. */
async function drain(entry: Readable): Promise<void> {
  entry.resume();
  await finished(entry);
}

/** Applies the tar stream `input` onto root (which exists). Resolves when the stream is fully applied. */
export async function applyTar(input: Readable, root: string, options: ApplyOptions): Promise<void> {
  const { source } = options;
  const extract = tar.extract();
  const feeding = pipeline(input, extract);
  // Paths this layer wrote, for opaque whiteouts: they hide what lower layers put in a directory only.
  const written = new Set<string>();
  // Each file's size is in its header before its bytes are read: one that would not fit refuses the archive.
  let budget = (options.spaceLeft ?? freeSpace)(root);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const parts = partsOf(h.name) ?? refuse(source, h.name, 'has a ".." component');
      const rel = parts.join('/');
      const base = parts.at(-1);
      if (base === undefined) {
        await drain(entry); // the root itself: its mode stays ours
        continue;
      }
      if (options.whiteouts && base.startsWith(WHITEOUT)) {
        await drain(entry);
        const parent = parentOf(root, parts, h.name, source, false);
        if (parent === null) continue;
        const hidden = base.slice(WHITEOUT.length);
        const dirRel = parts.slice(0, -1).join('/');
        if (base === OPAQUE) hideLower(parent, dirRel, written, options.owners);
        else if (hidden === '' || hidden === '.' || hidden === '..') refuse(source, h.name, 'is a whiteout of no file (it would remove its own directory or the one above)');
        else if (!hidden.startsWith(WHITEOUT)) clear(join(parent, hidden), dirRel === '' ? hidden : `${dirRel}/${hidden}`, options.owners);
        continue; // other .wh..wh.* names are aufs bookkeeping, not files
      }
      const parent = parentOf(root, parts, h.name, source, true)!;
      const path = join(parent, base);
      const existing = lstatOrNull(path);
      const replace = () => clear(path, rel, options.owners, existing!.isDirectory());
      switch (h.type) {
        case 'directory':
          if (existing && !existing.isDirectory()) replace();
          if (!existing || !existing.isDirectory()) mkdirSync(path, { mode: 0o700 });
          // chmod through an fd opened without following: path was just checked or created as a directory.
          withFd(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW, (fd) => fchmod(fd, dirMode(h.mode)));
          await drain(entry);
          break;
        case 'file':
        case 'contiguous-file': {
          budget -= h.size ?? 0;
          if (budget < 0) {
            throw new TapboxError('EUSAGE', `unpacking ${source} stopped at "${h.name}": it would fill the disk (tapbox keeps 1 GiB free); free some space, or use a smaller image.`);
          }
          if (existing) replace();
          const fd = openSync(path, NEW_FILE, 0o600);
          try {
            for await (const chunk of entry as AsyncIterable<Buffer>) writeSync(fd, chunk);
            fchmod(fd, fileMode(h.mode));
            if (h.mtime) futimesSync(fd, h.mtime, h.mtime);
          } finally {
            closeSync(fd);
          }
          break;
        }
        case 'symlink':
          await drain(entry);
          if (!h.linkname) refuse(source, h.name, 'is a symlink to nothing');
          if (existing) replace();
          // Its target is kept as it is: it is read inside the sandbox, never followed here.
          symlinkSync(h.linkname, path);
          if (h.mtime) lutimesSync(path, h.mtime, h.mtime);
          break;
        case 'link': {
          await drain(entry);
          const target = partsOf(h.linkname ?? '') ?? refuse(source, h.name, `is a hard link to "${h.linkname}", which leaves the image`);
          const targetParent = target.length > 0 ? parentOf(root, target, h.name, source, false) : null;
          const targetPath = targetParent === null ? null : join(targetParent, target.at(-1)!);
          const st = targetPath === null ? null : lstatOrNull(targetPath);
          if (st === null || st.isDirectory()) refuse(source, h.name, `is a hard link to "${h.linkname}", which is not a file inside the image`);
          if (targetPath === path) break;
          if (existing) replace();
          linkSync(targetPath!, path); // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed
          break;
        }
        case 'character-device':
        case 'block-device':
        case 'fifo':
          await drain(entry);
          options.onSkip?.(rel, h.type === 'fifo' ? 'a fifo' : 'a device node');
          continue;
        default:
          await drain(entry);
          options.onSkip?.(rel, `an entry of type ${h.type ?? 'unknown'}`);
          continue;
      }
      written.add(rel);
      options.owners?.written(rel, h.uid, h.gid);
    }
    await feeding;
  } catch (err) {
    extract.destroy();
    await feeding.catch(() => undefined);
    if (err instanceof TapboxError) throw err;
    // A damaged archive (a bad header, truncated gzip) or a failing disk: not a bug of ours.
    throw new TapboxError('EUSAGE', `unpacking ${source} failed (${(err as Error).message}); pass a complete .tar or .tar.gz archive, and check that the disk has room.`);
  }
}

/** An opaque whiteout: removes what lower layers put under dir, keeping what this layer wrote there. */
function hideLower(dir: string, rel: string, written: Set<string>, owners: Owners | undefined): void {
  for (const name of readdirSync(dir)) {
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const child = join(dir, name);
    const st = lstatSync(child);
    const hasWrittenBelow = [...written].some((p) => p.startsWith(`${childRel}/`));
    if (hasWrittenBelow && st.isDirectory()) hideLower(child, childRel, written, owners);
    else if (!written.has(childRel)) clear(child, childRel, owners, st.isDirectory());
  }
}

function withFd(path: string, flags: number, fn: (fd: number) => void): void {
  const fd = openSync(path, flags);
  try {
    fn(fd);
  } finally {
    closeSync(fd);
  }
}
