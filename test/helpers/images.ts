// Builds image archives in tests, byte by byte with tar-stream (as an attacker would, hostile members
// included): tar layers, OCI image layouts (directory or tar) and docker save archives.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { hostPlatform } from '../../src/images/oci.js';

export interface Member {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  data?: string | Buffer;
  linkname?: string;
  mode?: number;
  /** The owner the header gives (default 0:0). */
  uid?: number;
  gid?: number;
}

/** A tar archive of the members, in order. */
export async function tarOf(members: Member[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const m of members) {
    const type = m.type ?? 'file';
    const data = type === 'file' ? Buffer.from(m.data ?? '') : undefined;
    const mode = m.mode ?? (type === 'directory' ? 0o755 : 0o644);
    pack.entry({ name: m.name, type, mode, linkname: m.linkname, size: data?.length ?? 0, devmajor: 1, devminor: 3, uid: m.uid ?? 0, gid: m.gid ?? 0 }, data);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface BuiltImage {
  /** The uncompressed layers' digests (the config's diff ids). */
  diffIds: string[];
  config: Buffer;
}

function configFor(layers: Buffer[], diffIds?: string[]): BuiltImage {
  const ids = diffIds ?? layers.map(sha256);
  const config = Buffer.from(JSON.stringify({ ...hostPlatform(), config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: ids } }));
  return { diffIds: ids, config };
}

/**
 * Writes an OCI image layout of the layers (tar bytes, gzipped when gzip) into dir, with the ref name
 * as its tag. Returns the manifest's digest. rawLayers: the layer blobs as stored, when a test wants
 * them other than the (gzipped) layers, e.g. zstd-compressed.
 */
export function ociLayout(dir: string, layers: Buffer[], options: { gzip?: boolean; refName?: string; diffIds?: string[]; rawLayers?: Buffer[] } = {}): string {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const { config } = configFor(layers, options.diffIds);
  const stored = options.rawLayers ?? layers.map((l) => (options.gzip ? gzipSync(l) : l));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(config) },
    layers: stored.map((l) => ({ mediaType: `application/vnd.oci.image.layer.v1.tar${options.gzip ? '+gzip' : ''}`, ...put(l) })),
  }));
  const m = put(manifest);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': options.refName ?? 'latest' } }],
  }));
  return m.digest;
}

/** A `docker save` archive (legacy layout: ID/layer.tar, a config ID.json, manifest.json) of the layers. */
export async function dockerSave(layers: Buffer[], repoTag: string, extra: Member[] = []): Promise<Buffer> {
  const { config } = configFor(layers);
  const configName = `${sha256(config).slice(7)}.json`;
  const names = layers.map((l) => `${sha256(l).slice(7)}/layer.tar`);
  return tarOf([
    ...layers.flatMap((l, i): Member[] => [{ name: names[i]!.split('/')[0]!, type: 'directory' }, { name: names[i]!, data: l }]),
    ...extra,
    { name: configName, data: config },
    { name: 'manifest.json', data: JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: names }]) },
  ]);
}

/**
 * Writes an OCI layout whose one entry is an image index of several platforms (linux/ARCH, one layer
 * each, gzipped), as a multi-platform image is pushed. Returns the index's digest.
 */
export function multiPlatformLayout(dir: string, layers: Record<string, Buffer>, refName = '1'): string {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const manifests = Object.entries(layers).map(([architecture, layer]) => {
    const config = Buffer.from(JSON.stringify({ os: 'linux', architecture, rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }));
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(config) },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...put(gzipSync(layer)) }],
    }));
    return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...put(manifest), platform: { os: 'linux', architecture } };
  });
  const index = put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests })));
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', ...index, annotations: { 'org.opencontainers.image.ref.name': refName } }],
  }));
  return index.digest;
}
