// Images as a library: import a tarball, OCI layout or docker save archive, pull from a registry, list,
// remove, and resolve a name to the root directory a sandbox runs in (SandboxOptions.rootfs).
//
//   const record = await images.pull('debian:12');
//   await run(['cat', '/etc/debian_version'], { rootfs: images.resolve('debian:12') });
import { existsSync } from 'node:fs';
import { TapboxError } from '../errors.js';
import { formatReference, parseReference } from './reference.js';
import { defaultStoreRoot, ImageStore, type ImageRecord } from './store.js';
import type { Credentials } from './registry.js';
// import.js and pull.js (tar-stream, zlib, the registry client) are loaded by importImage and pull only:
// resolve() runs on every --image (start-up time).

export type { ImageRecord } from './store.js';
export type { Credentials } from './registry.js';

export interface ImageStoreOptions {
  /** The store's directory (default $XDG_DATA_HOME/tapbox, or ~/.local/share/tapbox). */
  store?: string;
  /** A warning a user should see (members skipped while unpacking). */
  onWarning?: (message: string) => void;
}

export interface PullOptions extends ImageStoreOptions {
  /** Allow plain HTTP to a registry that is not on loopback (certificates are always verified over HTTPS). */
  insecure?: boolean;
  /** For a private image (Basic auth, or a Bearer token asked for with them). */
  credentials?: Credentials;
  /** Seconds to wait for the registry: to connect, for an answer, and between two reads of a download (default 30). */
  timeout?: number;
  /** Progress lines ("pulling layer 1/3 ..."). */
  onProgress?: (message: string) => void;
}

const open = (o: ImageStoreOptions = {}) => ImageStore.open(o.store);

/** The record under name: as given, or as a reference written in full (busybox → docker.io/library/busybox:latest). */
function find(store: ImageStore, name: string): ImageRecord | undefined {
  const exact = store.find(name);
  if (exact) return exact;
  try {
    return store.find(formatReference(parseReference(name)));
  } catch {
    return undefined; // not a reference: only the exact name could have matched
  }
}

function unknown(name: string): never {
  throw new TapboxError('EUSAGE', `there is no image "${name}"; run tapbox image ls to see your images (tapbox image pull or import adds one).`);
}

export const images = {
  /** Imports a rootfs tarball (.tar, .tar.gz), an OCI image layout (directory or tar) or a docker save archive as NAME. */
  async importImage(file: string, name: string, options: ImageStoreOptions = {}): Promise<ImageRecord> {
    const { importImage } = await import('./import.js');
    const store = open(options);
    return store.working(() => importImage(store, file, name, options.onWarning));
  },
  /** Pulls REF from its registry; the image is then known by its full reference. */
  async pull(ref: string, options: PullOptions = {}): Promise<ImageRecord> {
    const { pull } = await import('./pull.js');
    const store = open(options);
    return store.working(() => pull(store, ref, options));
  },
  /** The images in the store, by name. */
  list(options: ImageStoreOptions = {}): ImageRecord[] {
    return open(options).records();
  },
  /**
   * Removes the name; its unpacked root and blobs go too when no other name uses them. Refused while a
   * sandbox runs on that root (stop or remove the box first).
   */
  remove(name: string, options: ImageStoreOptions = {}): ImageRecord {
    const store = open(options);
    const record = find(store, name) ?? unknown(name);
    return store.remove(record.name) ?? unknown(name);
  },
  /**
   * Removes what no name uses and no sandbox runs on: the root of an image imported or pulled again
   * while a box ran on it (once the box ended), blobs of a failed pull, leftovers of a killed import or
   * pull. Import, pull and remove do it too; nothing is made when there is no store yet.
   */
  collect(options: ImageStoreOptions = {}): void {
    if (existsSync(options.store ?? defaultStoreRoot())) open(options).collect();
  },
  /** The unpacked root directory of the image called name, for SandboxOptions.rootfs. */
  resolve(name: string, options: ImageStoreOptions = {}): string {
    const store = open(options);
    const record = find(store, name) ?? unknown(name);
    const root = store.rootfsPath(record.id);
    if (!existsSync(root)) throw new TapboxError('EUSAGE', `the image "${name}" has lost its unpacked root ${root}; remove it (tapbox image rm ${record.name}) and import or pull it again.`);
    return root;
  },
};
