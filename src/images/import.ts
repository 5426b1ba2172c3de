// `tapbox image import FILE NAME`: a rootfs tarball (.tar, .tar.gz), an OCI image layout (a directory,
// or a tar of one), or a `docker save` archive (manifest.json; a tar, or a directory it was unpacked to).
//
// A tarball is unpacked once, by the same guarded code as every layer, into a fresh directory; what it
// holds then decides: an OCI layout (oci-layout) or a docker save archive (manifest.json) is read as an
// image, anything else is a root filesystem. Files named inside an archive or layout (manifest.json's
// paths, blobs/sha256/...) are found by resolving symlinks inside it, never outside: an archive can't
// make tapbox read a host file into the image.
import { accessSync, constants, createReadStream, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, renameSync, statSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { TapboxError } from '../errors.js';
import { asManifest, isIndex, parseJson, pickPlatform, type Descriptor, type ImageConfig, type Index, tarStream } from './oci.js';
import { imageId, keepOwners, skipWarnings, unpackLayers } from './layers.js';
import { Owners } from './owners.js';
import { removeTree } from '../idmap/launcher.js';
import { applyTar } from './unpack.js';
import { digestHex, type ImageRecord, type ImageStore } from './store.js';
import { checkName, tagOf } from './reference.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

export async function importImage(store: ImageStore, file: string, name: string, onWarning?: (message: string) => void): Promise<ImageRecord> {
  checkName(name);
  let st: Stats;
  try {
    st = statSync(file);
  } catch {
    throw new TapboxError('EUSAGE', `image import: ${file} does not exist; pass a tarball, an OCI layout directory or a docker save archive.`);
  }
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw new TapboxError('EUSAGE', `image import: ${file} is not readable by you; pass a file or directory you can read.`);
  }
  const source = resolve(file);
  if (st.isDirectory()) return importTree(store, file, source, name, onWarning);
  if (!st.isFile()) throw new TapboxError('EUSAGE', `image import: ${file} is not a file or directory; pass a tarball, an OCI layout directory or a docker save archive.`);

  const tmp = store.tempDir('import');
  try {
    const tree = join(tmp, 'tree');
    mkdirSync(tree, { mode: 0o755 });
    const skips = skipWarnings(file, onWarning);
    const owners = new Owners();
    await applyTar(tarStream(file, file), tree, { source: file, whiteouts: false, onSkip: skips.onSkip, owners });
    if (isImageTree(tree)) return await importTree(store, tree, source, name, onWarning);
    skips.flush();
    // A root filesystem: its tarball is its one layer.
    const { digest, size } = await store.writeBlob(createReadStream(file), file);
    const id = imageId(undefined, [digest]);
    if (!existsSync(store.rootfsPath(id))) {
      keepOwners(owners, tree, file, onWarning);
      renameSync(tree, store.rootfsPath(id));
    }
    return record(store, { name, id, source, layers: [digest], size });
  } finally {
    removeTree(tmp);
  }
}

function isImageTree(dir: string): boolean {
  return existsSync(join(dir, 'oci-layout')) || existsSync(join(dir, 'manifest.json'));
}

function record(store: ImageStore, r: Omit<ImageRecord, 'created'>): ImageRecord {
  const full = { ...r, created: new Date().toISOString() };
  store.save(full);
  return full;
}

/** An OCI layout or docker save tree (a directory of the user's, or an archive unpacked under tmp/). */
async function importTree(store: ImageStore, dir: string, source: string, name: string, onWarning?: (message: string) => void): Promise<ImageRecord> {
  if (existsSync(join(dir, 'oci-layout'))) return importLayout(store, dir, source, name, onWarning);
  if (existsSync(join(dir, 'manifest.json'))) return importDockerSave(store, dir, source, name, onWarning);
  throw new TapboxError('EUSAGE', `image import: ${source} is a directory but neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json); pass one of those, or a rootfs tarball.`);
}

async function importLayout(store: ImageStore, dir: string, source: string, name: string, onWarning?: (message: string) => void): Promise<ImageRecord> {
  const blob = (d: Descriptor, what: string) => fileInside(dir, `blobs/sha256/${digestHex(d.digest, what)}`, source);
  const readBlob = (d: Descriptor, what: string): Buffer => {
    const bytes = readFileSync(blob(d, what));
    const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (got !== d.digest) throw new TapboxError('EUSAGE', `${what} in ${source} does not match its digest ${d.digest}; the layout is damaged, so save it again.`);
    return bytes;
  };
  const top = parseJson<Index>(readFileSync(fileInside(dir, 'index.json', source)), `${source}: index.json`);
  let desc = chooseManifest(top, name, source);
  for (let depth = 0; isIndex(desc as { mediaType?: string }); depth++) {
    if (depth > 2) throw new TapboxError('EUSAGE', `${source}: its indexes nest too deep; save the image again.`);
    desc = pickPlatform(parseJson<Index>(readBlob(desc, 'an index'), `${source}: an index`), source);
  }
  const manifest = asManifest(parseJson(readBlob(desc, 'the manifest'), `${source}: its manifest`), `${source}: its manifest`);
  const configBytes = readBlob(manifest.config, 'the image config');
  const config = parseJson<ImageConfig>(configBytes, `${source}: its image config`);
  await store.writeBlob([configBytes], 'the image config', manifest.config);
  let size = 0;
  for (const [i, layer] of manifest.layers.entries()) {
    const what = `layer ${i + 1} of ${source}`;
    if (!store.hasBlob(layer.digest)) await store.writeBlob(createReadStream(blob(layer, what)), what, layer);
    size += layer.size ?? 0;
  }
  const layers = manifest.layers.map((l) => l.digest);
  const id = await unpackLayers(store, { digest: manifest.config.digest, doc: config }, layers, source, onWarning);
  return record(store, { name, id, source, config: manifest.config.digest, layers, size });
}

/** The image among the layout's: the only one, the one whose ref name is NAME's tag, or this platform's. */
function chooseManifest(index: Index, name: string, source: string): Descriptor {
  const all = Array.isArray(index.manifests) ? index.manifests : [];
  if (all.length === 1) return all[0]!;
  const named = all.filter((m) => [name, tagOf(name)].includes(m.annotations?.[REF_NAME] ?? '\0'));
  if (named.length === 1) return named[0]!;
  if (all.length > 1 && all.every((m) => m.platform !== undefined)) return pickPlatform(index, source);
  const refs = all.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
  throw new TapboxError('EUSAGE', `${source} holds ${all.length} images${refs.length ? ` (${refs.join(', ')})` : ''}; name the one you want as NAME's tag, e.g. tapbox image import ${source} myimage:${refs[0] ?? 'TAG'}.`);
}

interface DockerSaveEntry {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

async function importDockerSave(store: ImageStore, dir: string, source: string, name: string, onWarning?: (message: string) => void): Promise<ImageRecord> {
  const entries = parseJson<DockerSaveEntry[]>(readFileSync(fileInside(dir, 'manifest.json', source)), `${source}: manifest.json`);
  if (!Array.isArray(entries) || entries.length === 0) throw new TapboxError('EUSAGE', `${source}: manifest.json lists no image; save the image again with docker save.`);
  let entry = entries[0]!;
  if (entries.length > 1) {
    const tags = entries.flatMap((e) => e.RepoTags ?? []);
    const match = entries.filter((e) => (e.RepoTags ?? []).some((t) => t === name || tagOf(t) === tagOf(name)));
    if (match.length !== 1) throw new TapboxError('EUSAGE', `${source} holds ${entries.length} images (${tags.join(', ')}); import it under one of those names, or docker save just the one you want.`);
    entry = match[0]!;
  }
  if (typeof entry.Config !== 'string' || !Array.isArray(entry.Layers)) throw new TapboxError('EUSAGE', `${source}: manifest.json has no Config or Layers; save the image again with docker save.`);
  const configBytes = readFileSync(fileInside(dir, entry.Config, source));
  const config = parseJson<ImageConfig>(configBytes, `${source}: ${entry.Config}`);
  const { digest: configDigest } = await store.writeBlob([configBytes], 'the image config');
  const layers: string[] = [];
  let size = 0;
  for (const [i, path] of entry.Layers.entries()) {
    const what = `layer ${i + 1} of ${source}`;
    // docker save's layers are uncompressed: their digest is the diff id the config lists.
    const { digest, size: bytes } = await store.writeBlob(createReadStream(fileInside(dir, path, source)), what);
    layers.push(digest);
    size += bytes;
  }
  const id = await unpackLayers(store, { digest: configDigest, doc: config }, layers, source, onWarning);
  return record(store, { name, id, source, config: configDigest, layers, size });
}

/**
 * The regular file at rel inside root, following symlinks only while they stay inside root (as if
 * root were "/", except that absolute targets are refused: in an archive they mean the host's files).
 */
export function fileInside(root: string, rel: string, source: string): string {
  const refuse = (why: string): never => {
    throw new TapboxError('EUSAGE', `refusing ${source}: "${rel}" ${why}; an image must stay inside its own root, so get a clean one from its publisher.`);
  };
  const stack: string[] = [];
  let pending = rel.split('/');
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) refuse('points outside the archive');
      stack.pop();
      continue;
    }
    const path = join(root, ...stack, part);
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch {
      throw new TapboxError('EUSAGE', `${source}: "${rel}" is missing; the archive is incomplete, so save the image again.`);
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) refuse('goes through too many symlinks');
      const target = readlinkSync(path);
      if (target.startsWith('/')) refuse(`goes through a symlink to the absolute path ${target}`);
      pending = [...target.split('/'), ...pending];
      continue;
    }
    stack.push(part);
  }
  const path = join(root, ...stack);
  if (!lstatSync(path).isFile()) refuse('is not a regular file');
  return path;
}
