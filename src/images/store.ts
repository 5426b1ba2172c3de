// The image store: $XDG_DATA_HOME/tapbox (default ~/.local/share/tapbox), private to the user (0700).
//
//   blobs/sha256/HEX   layers and image configs, named by the sha256 of their bytes (checked as
//                      they are written: a blob is only ever renamed into place once its digest matched)
//   rootfs/ID/         an image unpacked: the root a box runs in (ID: the hex of the image's id, so a
//                      name imported or pulled again points at a new root, and the old one stays as it is)
//   index.json         names -> image records
//   index.lock         flocked (exclusive) while the index is read, changed and written
//   work.lock          flocked shared by each import and pull while it writes content not yet indexed
//   tmp/               imports and downloads in progress (removed when they end)
//
// Content no name uses (a replaced image's root, the blobs of a failed pull, what a killed tapbox left
// in tmp/) is collected by collect(): only under work.lock taken exclusive, so never under an import or
// pull in progress, and a root only when no sandbox holds its lease (a shared flock on the root
// directory, held by the sandbox's supervisor while it runs: src/supervisor/root-lease.ts). Every lock
// is a flock: the kernel drops it when its holder dies, so a killed tapbox leaves none behind.
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { requireNative } from '../../native/addon/index.js';
import { TapboxError } from '../errors.js';
import { removeTree as removeOwnedTree } from '../idmap/launcher.js';

export interface ImageRecord {
  /** The name it is known by: as given to `import`, or the full reference it was pulled as. */
  name: string;
  /** sha256:HEX of its config and layer digests: images with the same content share one unpacked root. */
  id: string;
  /** The file or reference it came from. */
  source: string;
  /** The manifest's digest (pulled images). */
  digest?: string;
  /** The image config's digest (not for a plain rootfs tarball). */
  config?: string;
  /** Layer digests, bottom first (a rootfs tarball is one layer). */
  layers: string[];
  /** Bytes of the layers as stored (compressed, when they were). */
  size: number;
  /** When it was imported or pulled (ISO 8601). */
  created: string;
}

interface Index {
  images: Record<string, ImageRecord>;
}

const blobsOf = (r: ImageRecord) => [r.config, ...r.layers].filter((d): d is string => d !== undefined);

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const HEX = /^[0-9a-f]{64}$/;

/** The hex of a sha256 digest; anything else (another algorithm, a path) is refused. */
export function digestHex(digest: string, what: string): string {
  const m = DIGEST.exec(digest);
  if (!m) throw new TapboxError('EUSAGE', `${what} names the digest "${digest}", which is not sha256:<64 hex digits>; tapbox reads sha256 images only.`);
  return m[1]!;
}

export function defaultStoreRoot(): string {
  const data = process.env.XDG_DATA_HOME;
  return join(data && isAbsolute(data) ? data : join(homedir(), '.local', 'share'), 'tapbox');
}

/** A sha256 over data as it streams by, and its length. */
export class Digester {
  private readonly hash = createHash('sha256');
  size = 0;
  update(chunk: Buffer): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

export class ImageStore {
  private constructor(readonly root: string) {}

  /** Opens (creating, 0700) the store at root; refuses one that belongs to someone else. */
  static open(root = defaultStoreRoot()): ImageStore {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    const st = statSync(root);
    if (!st.isDirectory() || st.uid !== process.getuid!()) {
      throw new TapboxError('EUSAGE', `the image store ${root} is not a directory of yours; remove it or point $XDG_DATA_HOME elsewhere.`);
    }
    if ((st.mode & 0o077) !== 0) chmodSync(root, 0o700);
    for (const dir of ['blobs/sha256', 'rootfs', 'tmp']) mkdirSync(join(root, dir), { recursive: true, mode: 0o700 });
    return new ImageStore(root);
  }

  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', digestHex(digest, 'a blob'));
  }

  hasBlob(digest: string): boolean {
    return existsSync(this.blobPath(digest));
  }

  rootfsPath(id: string): string {
    return join(this.root, 'rootfs', digestHex(id, 'an image'));
  }

  /** A fresh directory under tmp/ (the caller removes it). */
  tempDir(prefix: string): string {
    return mkdtempSync(join(this.root, 'tmp', `${prefix}-`));
  }

  /**
   * Writes a blob from `chunks`, checking its digest (and size) when expected is given, and returns its
   * digest and size. The bytes go to tmp/ first and are renamed into blobs/ only once they match.
   */
  async writeBlob(chunks: AsyncIterable<Buffer> | Iterable<Buffer>, what: string, expected?: { digest: string; size?: number }): Promise<{ digest: string; size: number }> {
    if (expected) digestHex(expected.digest, what);
    const dir = this.tempDir('blob');
    const partial = join(dir, 'data');
    try {
      const d = new Digester();
      const fd = openSync(partial, 'wx', 0o600);
      try {
        for await (const chunk of chunks) {
          d.update(chunk);
          if (expected?.size !== undefined && d.size > expected.size) {
            throw new TapboxError('EUSAGE', `${what} is larger than the ${expected.size} bytes its descriptor gives; the image is corrupt or was tampered with, so fetch it again from a source you trust.`);
          }
          writeSync(fd, chunk);
        }
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const digest = d.digest();
      if (expected && (digest !== expected.digest || (expected.size !== undefined && d.size !== expected.size))) {
        throw new TapboxError('EUSAGE', `${what} does not match its digest ${expected.digest} (got ${digest}, ${d.size} bytes); the image is corrupt or was tampered with, so fetch it again from a source you trust.`);
      }
      renameSync(partial, this.blobPath(digest));
      return { digest, size: d.size };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  records(): ImageRecord[] {
    return Object.values(this.readIndex().images).sort((a, b) => a.name.localeCompare(b.name));
  }

  find(name: string): ImageRecord | undefined {
    const images = this.readIndex().images;
    return Object.hasOwn(images, name) ? images[name] : undefined;
  }

  /**
   * Adds or replaces the record under its name. What it replaced stays until collect(): a sandbox may
   * run on its root, and the import or pull that calls this holds work.lock.
   */
  save(record: ImageRecord): void {
    this.withLock(() => {
      const index = this.readIndex();
      index.images[record.name] = record;
      this.writeIndex(index);
    });
  }

  /**
   * Removes the name, then collects its root and blobs if no other name uses them. Refused while a
   * sandbox runs on the root that would go (a box started just after this check keeps it: collect()
   * skips a root whose lease is held, and removes it after the box).
   */
  remove(name: string): ImageRecord | undefined {
    return this.withLock(() => {
      const index = this.readIndex();
      if (!Object.hasOwn(index.images, name)) return undefined;
      const record = index.images[name]!;
      delete index.images[name];
      if (!Object.values(index.images).some((r) => r.id === record.id) && this.rootInUse(record.id)) {
        throw new TapboxError('EUSAGE', `the image ${name} is the root of a sandbox that is running; stop or remove that box first (tapbox ps lists them), or let the run end.`);
      }
      this.writeIndex(index);
      this.sweep(index);
      return record;
    });
  }

  /**
   * Runs an import or pull: fn writes blobs, tmp/ and a new root that no name uses until it saves its
   * record, so collecting waits for it (work.lock, shared). Afterwards, what the record replaced is collected.
   */
  async working<T>(fn: () => Promise<T>): Promise<T> {
    const fd = this.lockFile('work.lock', false, 60_000);
    if (fd === null) throw new TapboxError('EUSAGE', `the image store ${this.root} has been busy for a minute: another tapbox is removing unused images from it; try again once it is done.`);
    let result: T;
    try {
      result = await fn();
    } finally {
      closeSync(fd);
    }
    this.collect();
    return result;
  }

  /**
   * Removes what no name uses: roots no sandbox runs on (a root in use stays until its sandbox ends),
   * blobs (left by a failed pull, or by a replaced image), and everything in tmp/ (left by a killed
   * import or pull). Does nothing while an import or pull runs: it collects when it ends.
   */
  collect(): void {
    this.withLock(() => this.sweep(this.readIndex()));
  }

  /** collect() under the index lock, with the index as it is now. */
  private sweep(index: Index): void {
    const work = this.lockFile('work.lock', true, 0);
    if (work === null) return; // an import or pull runs: what it wrote is not indexed yet
    try {
      const records = Object.values(index.images);
      const ids = new Set(records.map((r) => digestHex(r.id, 'an image')));
      for (const hex of readdirSync(join(this.root, 'rootfs'))) if (HEX.test(hex) && !ids.has(hex)) this.removeRoot(hex);
      const kept = new Set(records.flatMap(blobsOf).map((d) => digestHex(d, 'a blob')));
      for (const hex of readdirSync(join(this.root, 'blobs', 'sha256'))) if (HEX.test(hex) && !kept.has(hex)) rmSync(join(this.root, 'blobs', 'sha256', hex), { force: true });
      for (const entry of readdirSync(join(this.root, 'tmp'))) this.removeTree(join(this.root, 'tmp', entry));
    } finally {
      closeSync(work);
    }
  }

  /** Whether a sandbox holds the lease on the image's root (see rootfs/ above). */
  private rootInUse(id: string): boolean {
    const fd = openDirectory(this.rootfsPath(id));
    if (fd === null) return false;
    try {
      return !requireNative().tryLock(fd, true);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Removes rootfs/HEX unless a sandbox holds its lease. Under our exclusive lock it is renamed into
   * tmp/ first: a sandbox that opened it meanwhile finds it gone (root-lease.ts), and a root half
   * removed (a killed tapbox) is never taken for an unpacked image.
   */
  private removeRoot(hex: string): void {
    const root = join(this.root, 'rootfs', hex);
    const fd = openDirectory(root);
    if (fd === null) return;
    let trash: string;
    try {
      if (!requireNative().tryLock(fd, true)) return; // in use: collected after its sandbox
      trash = this.tempDir('removed');
      renameSync(root, join(trash, hex));
    } finally {
      closeSync(fd);
    }
    this.removeTree(trash);
  }

  /** Deletes a tree collecting found: a root no name uses, or what an import or pull left in tmp/ (files of subordinate ids too). */
  private removeTree(path: string): void {
    removeOwnedTree(path);
  }

  private readIndex(): Index {
    const path = join(this.root, 'index.json');
    if (!existsSync(path)) return { images: {} };
    try {
      const index = JSON.parse(readFileSync(path, 'utf8')) as Index;
      if (typeof index.images !== 'object' || index.images === null) throw new Error('no "images" object');
      return index;
    } catch (err) {
      throw new TapboxError('EINTERNAL', `the image index ${path} is unreadable (${(err as Error).message}); remove it and import or pull your images again.`);
    }
  }

  private writeIndex(index: Index): void {
    const path = join(this.root, 'index.json');
    writeFileSync(`${path}.new`, `${JSON.stringify(index, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${path}.new`, path);
  }

  /** Runs fn holding index.lock, so that two tapbox processes don't lose each other's changes. */
  private withLock<T>(fn: () => T): T {
    const fd = this.lockFile('index.lock', true, 30_000);
    if (fd === null) throw new TapboxError('EUSAGE', `the image store ${this.root} has been locked for 30 s by another tapbox importing, pulling or removing an image; try again once it is done.`);
    try {
      return fn();
    } finally {
      closeSync(fd);
    }
  }

  /** Opens the store's lock file NAME and flocks it, waiting up to waitMs; the fd holding it, or null when it could not. */
  private lockFile(name: string, exclusive: boolean, waitMs: number): number | null {
    const fd = openSync(join(this.root, name), constants.O_RDWR | constants.O_CREAT, 0o600);
    const deadline = Date.now() + waitMs;
    while (!requireNative().tryLock(fd, exclusive)) {
      if (Date.now() >= deadline) {
        closeSync(fd);
        return null;
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
    return fd;
  }
}

/** An fd of the directory at path (to flock it), or null when there is none. */
function openDirectory(path: string): number | null {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
