// Image references read the way docker reads them: the registry, Docker Hub's library/, tags, digests.
import { describe, expect, it } from 'vitest';
import { formatReference, parseReference } from '../../src/images/reference.js';

describe('image references', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['debian:12', 'docker.io/library/debian:12'],
    ['index.docker.io/owner/app:v1.2', 'docker.io/owner/app:v1.2'],
    ['ghcr.io/owner/repo/sub:tag', 'ghcr.io/owner/repo/sub:tag'],
    ['127.0.0.1:5000/busybox', '127.0.0.1:5000/busybox:latest'],
    ['localhost/x:1', 'localhost/x:1'],
    ['[::1]:5000/tools/busybox:1', '[::1]:5000/tools/busybox:1'],
    [`quay.io/o/r@sha256:${'a'.repeat(64)}`, `quay.io/o/r@sha256:${'a'.repeat(64)}`],
    [`r:t@sha256:${'b'.repeat(64)}`, `docker.io/library/r:t@sha256:${'b'.repeat(64)}`],
  ])('%s is %s', (ref, full) => {
    expect(formatReference(parseReference(ref))).toBe(full);
  });

  it('reads a first component with a dot or a port as the registry, and anything else as a Docker Hub name', () => {
    expect(parseReference('owner/app').registry).toBe('docker.io');
    expect(parseReference('my.registry:443/app').registry).toBe('my.registry:443');
  });

  it.each([
    ['Busybox', '"Busybox" is not a lowercase repository name component'],
    ['busybox:bad tag', 'the tag "bad tag" has characters a tag can\'t have'],
    ['busybox@sha256:abc', 'the digest is not sha256:<64 hex digits>'],
    ['a//b', '"" is not a lowercase repository name component'],
  ])('refuses %s in one sentence', (ref, why) => {
    expect(() => parseReference(ref)).toThrow(`"${ref}" is not an image reference (${why}); write it as [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. debian:12 or 127.0.0.1:5000/busybox:latest.`);
  });
});
