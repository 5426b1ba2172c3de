// `tapbox image pull REF`: the manifest (from an index, this host's platform), the config and the layers
// from the registry, each checked against its digest before it enters the store; layers already in the
// store are not fetched again. The image is known by its full reference (docker.io/library/busybox:latest).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { TapboxError } from '../errors.js';
import { formatBytes } from '../units.js';
import { MEDIA, asManifest, checkLayerType, isIndex, parseJson, pickPlatform, type Descriptor, type ImageConfig } from './oci.js';
import { unpackLayers } from './layers.js';
import { formatReference, parseReference, type Reference } from './reference.js';
import { Registry, type RegistryOptions } from './registry.js';
import type { ImageRecord, ImageStore } from './store.js';

const ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest];
/** Manifests and configs are small; a bigger one is refused rather than read into memory. */
const MAX_DOCUMENT = 4 << 20;

export interface PullHooks {
  onProgress?: (message: string) => void;
  onWarning?: (message: string) => void;
}

export async function pull(store: ImageStore, refText: string, options: RegistryOptions & PullHooks = {}): Promise<ImageRecord> {
  const ref = parseReference(refText);
  const name = formatReference(ref);
  const registry = new Registry(ref, options);
  try {
    return await pullWith(registry, store, refText, name, ref, options);
  } finally {
    await registry.close();
  }
}

async function pullWith(registry: Registry, store: ImageStore, refText: string, name: string, ref: Reference, options: PullHooks): Promise<ImageRecord> {
  // The manifest, by tag or digest; by digest it must hash to that digest. Its digest is what the tag
  // named (for a multi-platform image, the index's), as `docker pull` shows it.
  let doc = await document(registry, `manifests/${ref.digest ?? ref.tag}`, ref.digest, name);
  const digest = doc.digest;
  if (isIndex(doc.json, doc.contentType)) {
    const chosen: Descriptor = pickPlatform(doc.json, name);
    doc = await document(registry, `manifests/${chosen.digest}`, chosen.digest, name);
  }
  const manifest = asManifest(doc.json, `the manifest of ${name}`);
  const configDoc = await document(registry, `blobs/${manifest.config.digest}`, manifest.config.digest, name);
  await store.writeBlob([configDoc.bytes], `the config of ${name}`, manifest.config);

  let size = 0;
  for (const [i, layer] of manifest.layers.entries()) {
    const what = `layer ${i + 1}/${manifest.layers.length} of ${name}`;
    size += layer.size ?? 0;
    checkLayerType(layer, what);
    if (store.hasBlob(layer.digest)) continue;
    options.onProgress?.(`pulling ${what} (${layer.digest.slice(7, 19)}, ${layer.size === undefined ? 'size unknown' : formatBytes(layer.size)})`);
    const res = await registry.get(`blobs/${layer.digest}`);
    try {
      await store.writeBlob(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), what, layer);
    } catch (err) {
      throw registry.readFailed(err, what);
    }
  }
  options.onProgress?.(`unpacking ${name}`);
  const layers = manifest.layers.map((l) => l.digest);
  const config = parseJson<ImageConfig>(configDoc.bytes, `the config of ${name}`);
  const id = await unpackLayers(store, { digest: manifest.config.digest, doc: config }, layers, name, options.onWarning);
  const record: ImageRecord = { name, id, source: refText, digest, config: manifest.config.digest, layers, size, created: new Date().toISOString() };
  store.save(record);
  return record;
}

interface Document {
  bytes: Buffer;
  digest: string;
  contentType?: string;
  json: { mediaType?: string; manifests?: Descriptor[] } & Record<string, unknown>;
}

/** A manifest or config: read whole (capped), hashed, checked against the digest it was asked by. */
async function document(registry: Registry, path: string, expected: string | undefined, name: string): Promise<Document> {
  const res = await registry.get(path, path.startsWith('manifests/') ? ACCEPT : undefined);
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of Readable.fromWeb(res.body as WebReadableStream<Uint8Array>)) {
      length += (chunk as Buffer).length;
      if (length > MAX_DOCUMENT) throw new TapboxError('EUSAGE', `${path} of ${name} is larger than ${MAX_DOCUMENT >> 20} MiB, too big for a manifest or config; check the registry.`);
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    throw registry.readFailed(err, `${path} of ${name}`);
  }
  const bytes = Buffer.concat(chunks);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const header = res.headers.get('docker-content-digest');
  for (const want of [expected, header?.startsWith('sha256:') ? header : undefined]) {
    if (want !== undefined && want !== digest) {
      throw new TapboxError('EUSAGE', `${path} of ${name} does not match its digest ${want} (got ${digest}); the registry or the network path is tampering with it, so pull from a source you trust.`);
    }
  }
  const contentType = res.headers.get('content-type')?.split(';')[0]?.trim();
  return { bytes, digest, contentType, json: parseJson(bytes, `${path} of ${name}`) };
}
