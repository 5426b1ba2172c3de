// The image store: $XDG_DATA_HOME/tapbox (default ~/.local/share/tapbox), private to the user (0700).
//
//   blobs/sha256/HEX   layers and image configs, named by the sha256 of their bytes (checked as
//                      they are written: a blob is only ever renamed into place once its digest matched)
//   rootfs/ID/         an image unpacked: the root a box runs in (ID: the hex of the image's id)
//   index.json         names -> image records
//   tmp/               imports and downloads in progress (removed when they end)
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { TapboxError } from '../errors.js';
import { removeTree } from '../idmap/launcher.js';

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

  /** Adds or replaces the record under its name; the content it replaced is removed if no other name uses it. */
  save(record: ImageRecord): void {
    this.withLock(() => {
      const index = this.readIndex();
      const replaced = Object.hasOwn(index.images, record.name) ? index.images[record.name] : undefined;
      index.images[record.name] = record;
      this.writeIndex(index);
      if (replaced) this.collect(index, replaced);
    });
  }

  /** Removes the name, then its unpacked root and blobs if no other name uses them. */
  remove(name: string): ImageRecord | undefined {
    return this.withLock(() => {
      const index = this.readIndex();
      if (!Object.hasOwn(index.images, name)) return undefined;
      const record = index.images[name]!;
      delete index.images[name];
      this.writeIndex(index);
      this.collect(index, record);
      return record;
    });
  }

  /**
   * Removes the unpacked root and blobs of a record that left the index, those no remaining record
   * names. (Only the departed record's: an import or pull running meanwhile owns content not yet indexed.)
   */
  private collect(index: Index, departed: ImageRecord): void {
    const records = Object.values(index.images);
    if (!records.some((r) => r.id === departed.id)) removeTree(this.rootfsPath(departed.id));
    const kept = new Set(records.flatMap(blobsOf));
    for (const digest of blobsOf(departed)) if (!kept.has(digest)) rmSync(this.blobPath(digest), { force: true });
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
    const lock = join(this.root, 'index.lock');
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        closeSync(openSync(lock, 'wx', 0o600));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (Date.now() > deadline) {
          throw new TapboxError('EUSAGE', `the image store is locked by ${lock}; if no other tapbox is importing, pulling or removing an image, delete that file.`);
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
    }
    try {
      return fn();
    } finally {
      unlinkSync(lock);
    }
  }
}
