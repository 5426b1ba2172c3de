// Image names and references: `busybox`, `debian:12`, `ghcr.io/o/r@sha256:...`, `127.0.0.1:5000/x:tag`,
// read the way docker reads them (no registry: Docker Hub; one path component there: library/).
import { TapboxError } from '../errors.js';

export interface Reference {
  /** The registry as written: docker.io, ghcr.io, 127.0.0.1:5000, [::1]:5000. */
  registry: string;
  /** The repository path: library/busybox, o/r. */
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._\-/:@[\]]{0,254}$/;

export function parseReference(ref: string): Reference {
  const bad = (why: string): never => {
    throw new TapboxError('EUSAGE', `"${ref}" is not an image reference (${why}); write it as [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. debian:12 or 127.0.0.1:5000/busybox:latest.`);
  };
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) bad('the digest is not sha256:<64 hex digits>');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`the tag "${tag}" has characters a tag can't have`);
  }
  const parts = rest.split('/');
  let registry = 'docker.io';
  if (parts.length > 1 && (/[.:]/.test(parts[0]!) || parts[0] === 'localhost' || parts[0]!.startsWith('['))) registry = parts.shift()!;
  if (registry === 'index.docker.io') registry = 'docker.io';
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  for (const p of parts) if (!COMPONENT.test(p)) bad(`"${p}" is not a lowercase repository name component`);
  return { registry, repository: parts.join('/'), ...(tag === undefined && digest === undefined ? { tag: 'latest' } : tag !== undefined ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The full form a pulled image is known by: docker.io/library/busybox:latest. */
export function formatReference(r: Reference): string {
  return `${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** The tag of a name (after its last ":" past the last "/"), or "latest". */
export function tagOf(name: string): string {
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(colon + 1) : 'latest';
}

/** Refuses a local image name that would be awkward on a command line or in the index. */
export function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new TapboxError('EUSAGE', `"${name}" can't name an image; use letters, digits and . _ - / : (up to 255), starting with a letter or digit, e.g. mydebian:12.`);
  }
}
