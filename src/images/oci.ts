// The image formats tapbox reads (OCI image spec and Docker's v2 schema 2, which it mirrors): manifests,
// indexes, configs, which platform to pick, and how a layer file is decompressed and applied.
import { createReadStream, closeSync, openSync, readSync } from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { TapboxError } from '../errors.js';
import { Digester } from './store.js';
import { applyTar } from './unpack.js';
import type { Owners } from './owners.js';

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion?: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface Index {
  schemaVersion?: number;
  mediaType?: string;
  manifests: Descriptor[];
}

export interface ImageConfig {
  os?: string;
  architecture?: string;
  rootfs?: { type?: string; diff_ids?: string[] };
}

/** The platform names of this host, as images name them (GOARCH). */
export function hostPlatform(): { os: string; architecture: string } {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

export function parseJson<T>(bytes: Buffer | string, what: string): T {
  try {
    return JSON.parse(bytes.toString()) as T;
  } catch (err) {
    throw new TapboxError('EUSAGE', `${what} is not valid JSON (${(err as Error).message}); the image is damaged, so fetch or save it again.`);
  }
}

export function isIndex(doc: { mediaType?: string; manifests?: unknown }, contentType?: string): doc is Index {
  const type = doc.mediaType ?? contentType;
  return type === MEDIA.ociIndex || type === MEDIA.dockerList || (type === undefined && Array.isArray(doc.manifests));
}

/** Checks a manifest's shape: a config and a list of layers (schema 2). */
export function asManifest(doc: Partial<Manifest> & { schemaVersion?: number }, what: string): Manifest {
  if (doc.schemaVersion === 1) throw new TapboxError('EUSAGE', `${what} is an old Docker schema 1 manifest, which tapbox does not read; push the image again with a current docker, podman or skopeo.`);
  if (!doc.config || typeof doc.config.digest !== 'string' || !Array.isArray(doc.layers)) {
    throw new TapboxError('EUSAGE', `${what} is not an image manifest (no config or layers); point tapbox at an image.`);
  }
  return doc as Manifest;
}

/** From an index, the manifest for this host's platform (linux and its architecture). */
export function pickPlatform(index: Index, what: string): Descriptor {
  const want = hostPlatform();
  const images = index.manifests.filter((m) => m.platform?.os !== 'unknown'); // buildkit's attestations
  const match = images.find((m) => m.platform?.os === want.os && m.platform?.architecture === want.architecture);
  if (match) return match;
  if (images.length === 1 && images[0]!.platform === undefined) return images[0]!;
  const has = images.map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ');
  throw new TapboxError('EUSAGE', `${what} has no image for ${want.os}/${want.architecture} (it has ${has || 'none'}); use an image built for this platform.`);
}

const MAGIC = {
  gzip: Buffer.from([0x1f, 0x8b]),
  zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
  xz: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
  bzip2: Buffer.from('BZh'),
};

/** How a file is compressed, from its first bytes: gzip or none; anything else is refused. */
export function compressionOf(path: string, what: string): 'gzip' | 'none' {
  const head = Buffer.alloc(6);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const is = (magic: Buffer) => head.subarray(0, magic.length).equals(magic);
  if (is(MAGIC.gzip)) return 'gzip';
  for (const name of ['zstd', 'xz', 'bzip2'] as const) if (is(MAGIC[name])) unsupported(name, what);
  return 'none';
}

/** Refuses a layer tapbox can't decompress, before it is fetched when its media type says so (…tar+zstd). */
export function checkLayerType(layer: Descriptor, what: string): void {
  if (layer.mediaType?.endsWith('+zstd')) unsupported('zstd', what);
}

function unsupported(compression: string, what: string): never {
  throw new TapboxError('EUSAGE', `${what} is compressed with ${compression}, which tapbox can't unpack yet; use an image whose layers are gzip or uncompressed tar (e.g. convert with skopeo copy --dest-compress-format gzip).`);
}

/** A stream that passes data through and feeds it to a digester on the way. */
function digesting(d: Digester): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      d.update(chunk);
      done(null, chunk);
    },
  });
}

/**
 * Applies the layer file at path onto root (decompressing gzip) and returns the digest of the
 * uncompressed tar, the layer's "diff id", which the image config lists and the caller checks.
 */
export async function applyLayerFile(path: string, root: string, what: string, onSkip?: (name: string, why: string) => void, owners?: Owners): Promise<string> {
  const d = new Digester();
  await applyTar(tarStream(path, what, d), root, { source: what, whiteouts: true, onSkip, owners });
  return d.digest();
}

/** The tar inside the file at path (gunzipped when it is gzip), fed to `tap` on the way; every stage's error ends the stream. */
export function tarStream(path: string, what: string, tap?: Digester): Readable {
  const gzip = compressionOf(path, what) === 'gzip';
  let out: Readable = createReadStream(path);
  for (const next of [gzip && createGunzip(), tap && digesting(tap)]) {
    if (!next) continue;
    const prev = out;
    prev.on('error', (err) => next.destroy(err));
    out = prev.pipe(next);
  }
  return out;
}

/** Refuses a layer whose uncompressed digest is not the one the config lists for it. */
export function checkDiffId(config: ImageConfig, index: number, diffId: string, what: string): void {
  const want = config.rootfs?.diff_ids?.[index];
  if (want !== undefined && want !== diffId) {
    throw new TapboxError('EUSAGE', `${what} unpacks to ${diffId}, not the ${want} its image config names; the image is corrupt or was tampered with, so fetch it again from a source you trust.`);
  }
}
