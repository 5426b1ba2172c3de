// From layers in the store to the root a box runs in: each layer applied in order (whiteouts included)
// into a fresh directory under tmp/, checked against the config's diff ids, its files given their
// owners (owners.ts), then renamed into rootfs/.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { TapboxError } from '../errors.js';
import { applyLayerFile, checkDiffId, type ImageConfig } from './oci.js';
import type { ImageStore } from './store.js';
import { Owners } from './owners.js';
import { removeTree } from '../idmap/launcher.js';

/** An image's id: the sha256 of its config digest and layer digests, so equal content shares a root. */
export function imageId(config: string | undefined, layers: string[]): string {
  return `sha256:${createHash('sha256').update(JSON.stringify({ config: config ?? null, layers })).digest('hex')}`;
}

/** What a layer's skipped members become: one warning per layer. */
export function skipWarnings(what: string, onWarning?: (message: string) => void) {
  const skipped: string[] = [];
  return {
    onSkip: (name: string, why: string) => skipped.push(`${name} (${why})`),
    flush: () => {
      if (skipped.length === 0) return;
      const shown = skipped.slice(0, 3).join(', ') + (skipped.length > 3 ? `, and ${skipped.length - 3} more` : '');
      onWarning?.(`${what}: skipped ${skipped.length} member${skipped.length === 1 ? '' : 's'} tapbox does not create: ${shown}; the sandbox has its own /dev.`);
      skipped.length = 0;
    },
  };
}

/** Gives the unpacked root's files their owners (owners.ts), with the warning that may come of it. */
export function keepOwners(owners: Owners, root: string, what: string, onWarning?: (message: string) => void): void {
  const warning = owners.apply(root, what);
  if (warning !== null) onWarning?.(warning);
}

/** Unpacks the image's layers (blobs in the store) into its root, unless it is there already; returns its id. */
export async function unpackLayers(store: ImageStore, config: { digest: string; doc: ImageConfig }, layers: string[], what: string, onWarning?: (message: string) => void): Promise<string> {
  const diffIds = config.doc.rootfs?.diff_ids;
  if (diffIds !== undefined && diffIds.length !== layers.length) {
    throw new TapboxError('EUSAGE', `${what} has ${layers.length} layers but its config lists ${diffIds.length}; the image is damaged, so fetch or save it again.`);
  }
  const id = imageId(config.digest, layers);
  const target = store.rootfsPath(id);
  if (existsSync(target)) return id;
  const tmp = store.tempDir('unpack');
  try {
    const root = join(tmp, 'rootfs');
    mkdirSync(root, { mode: 0o755 });
    const owners = new Owners();
    for (const [i, digest] of layers.entries()) {
      const layer = `${what} layer ${i + 1} (${digest.slice(0, 19)})`;
      const skips = skipWarnings(layer, onWarning);
      const diffId = await applyLayerFile(store.blobPath(digest), root, layer, skips.onSkip, owners);
      skips.flush();
      checkDiffId(config.doc, i, diffId, layer);
    }
    // Unless another tapbox unpacked the same image first.
    if (!existsSync(target)) {
      keepOwners(owners, root, what, onWarning);
      renameSync(root, target);
    }
    return id;
  } finally {
    removeTree(tmp);
  }
}
