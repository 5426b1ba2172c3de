// Images from a real registry: Debian's docker-registry, started here on loopback (and in a test host
// namespace, for the plain-HTTP rule) with a temporary config and storage, an image built from
// busybox-static and pushed with skopeo; then `tapbox image pull` and `tapbox --image ... -- busybox`
// as the unprivileged user, with its store in a directory of its own. Auth: the registry's htpasswd
// (Basic) and its token auth (Bearer, against a token server this file runs), anonymous and with
// credentials.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createSign, X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createConnection, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asTestUser, cliPath, isRoot, tapbox, testIds, userTempDir } from '../helpers/tapbox.js';
import { TestHost } from '../helpers/testhost.js';
import { multiPlatformLayout, ociLayout, tarOf } from '../helpers/images.js';
import { hostPlatform } from '../../src/images/oci.js';

const USER = 'puller';
const PASSWORD = 'correct horse battery staple';
const children: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
let work: string;
let open: string; // host:port of the registry without auth
let basic: string; // with htpasswd
let bearer: string; // with token auth
let host: TestHost;
let remote: string; // the test host's registry, plain HTTP, not on loopback
let manifestDigest: string;
let layerDigest: string;

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise((ok) => server.close(ok));
  return port;
}

/** A registry config: all of them serve the same storage, so the image is pushed once. */
function registryConfig(name: string, addr: string, auth = ''): string {
  const path = join(work, `${name}.yml`);
  writeFileSync(path, `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, 'storage')}\nhttp:\n  addr: ${addr}\n${auth}`);
  return path;
}

/** Waits for the registry to answer; its log (warnings and request errors) stays in its file unless it never does. */
async function waitFor(url: string, log?: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(url).then((r) => r.status < 500, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never answered${log ? `; its log:\n${readFileSync(log, 'utf8')}` : ''}`);
}

async function startRegistry(name: string, auth = ''): Promise<string> {
  const addr = `127.0.0.1:${await freePort()}`;
  const log = openSync(join(work, `${name}.log`), 'w');
  const child = spawn('docker-registry', ['serve', registryConfig(name, addr, auth)], { stdio: ['ignore', log, log] });
  closeSync(log);
  children.push(child);
  await waitFor(`http://${addr}/v2/`, join(work, `${name}.log`));
  return addr;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/**
 * A token server as Docker Hub's: Basic credentials get pull and push on any repository; anonymous
 * callers get pull on public/* only. Tokens are ES256 JWTs whose x5c is the certificate the registry trusts.
 */
async function startTokenServer(keyPem: string, certPem: string): Promise<{ url: string; server: Server }> {
  const key = createPrivateKey(keyPem);
  const x5c = [new X509Certificate(certPem).raw.toString('base64')];
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const auth = req.headers.authorization;
    const authed = auth === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
    if (auth !== undefined && !authed) {
      res.writeHead(401).end();
      return;
    }
    const access = url.searchParams.getAll('scope').map((s) => s.split(':')).filter(([type]) => type === 'repository').map(([, repo, actions]) => ({
      type: 'repository',
      name: repo!,
      actions: authed ? actions!.split(',') : repo!.startsWith('public/') ? ['pull'] : [],
    }));
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c }));
    const claims = b64url(JSON.stringify({ iss: 'tapbox-test-issuer', sub: authed ? USER : '', aud: 'tapbox-test', exp: now + 300, nbf: now - 10, iat: now, jti: String(Math.random()), access }));
    const signature = createSign('SHA256').update(`${header}.${claims}`).sign({ key, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${header}.${claims}.${b64url(signature)}` }));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/token`, server };
}

function push(layout: string, target: string, ...flags: string[]): void {
  execFileSync('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false', ...flags, `oci:${layout}:1`, `docker://${target}`], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** The test user's own store and working directory. */
function userDirs() {
  const { dir, cleanup } = userTempDir('tapbox-images-');
  cleanups.push(cleanup);
  return { cwd: dir, data: join(dir, 'data'), env: { ...process.env, XDG_DATA_HOME: join(dir, 'data'), TAPBOX_REGISTRY_AUTH: '' } };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'tapbox-registry-'));
  // The image: busybox-static, a /bin/sh link to it, and a file to tell it from the host's root.
  const layer = await tarOf([
    { name: 'bin', type: 'directory' },
    { name: 'bin/busybox', data: readFileSync('/bin/busybox'), mode: 0o755 },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    { name: 'etc/motd', data: 'from the registry\n' },
  ]);
  const layout = join(work, 'layout');
  const manifest = ociLayout(layout, [layer], { gzip: true, refName: '1' });
  layerDigest = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', manifest.slice(7)), 'utf8')).layers[0].digest;

  open = await startRegistry('open');
  push(layout, `${open}/tools/busybox:1`);
  push(layout, `${open}/public/busybox:1`);
  // A multi-platform image (an index of this host's platform and another), pushed whole (--all).
  const multi = join(work, 'layout-multi');
  const arch = hostPlatform().architecture;
  const busybox = (motd: string) => tarOf([{ name: 'bin/busybox', data: readFileSync('/bin/busybox'), mode: 0o755 }, { name: 'etc/motd', data: motd }]);
  multiPlatformLayout(multi, { [arch]: await busybox(`${arch}\n`), mips64le: await busybox('mips64le\n') });
  push(multi, `${open}/tools/multi:1`, '--all');
  // skopeo keeps a compressed layer as it is, and compresses an uncompressed one as asked.
  const plain = join(work, 'layout-plain');
  ociLayout(plain, [layer], { refName: '1' });
  push(plain, `${open}/tools/busybox-zstd:1`, '--dest-compress-format', 'zstd');
  const head = await fetch(`http://${open}/v2/tools/busybox/manifests/1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  manifestDigest = head.headers.get('docker-content-digest')!;

  execFileSync('htpasswd', ['-cbB', join(work, 'htpasswd'), USER, PASSWORD], { stdio: 'ignore' });
  basic = await startRegistry('basic', `auth:\n  htpasswd:\n    realm: tapbox-test\n    path: ${join(work, 'htpasswd')}\n`);

  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(work, 'token.key'), '-out', join(work, 'token.pem'), '-days', '1', '-subj', '/CN=tapbox-test-token'], { stdio: 'ignore' });
  const tokens = await startTokenServer(readFileSync(join(work, 'token.key'), 'utf8'), readFileSync(join(work, 'token.pem'), 'utf8'));
  cleanups.push(() => tokens.server.close());
  bearer = await startRegistry('bearer', `auth:\n  token:\n    realm: ${tokens.url}\n    service: tapbox-test\n    issuer: tapbox-test-issuer\n    rootcertbundle: ${join(work, 'token.pem')}\n`);

  host = new TestHost();
  remote = `${host.ip4}:5000`;
  host.spawnInside(['docker-registry', 'serve', registryConfig('remote', remote)]);
  await waitFor(`http://${remote}/v2/`);
}, 120_000);

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  host?.destroy();
  for (const cleanup of cleanups) cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('tapbox image pull from a local registry', () => {
  it('pulls as the unprivileged user into a private store, runs a box from it, lists and removes it', async () => {
    const { cwd, data, env } = userDirs();
    const ref = `${open}/tools/busybox:1`;
    const pulled = await tapbox(['image', 'pull', ref], { cwd, env });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout).toBe(`${ref} ${manifestDigest}\n`);
    expect(pulled.stderr).toMatch(/^tapbox: pulling layer 1\/1 of .*\ntapbox: unpacking /);
    const store = join(data, 'tapbox');
    expect(statSync(store).mode & 0o777).toBe(0o700);
    expect(statSync(store).uid).toBe(testIds.uid);

    const run = await tapbox(['--image', ref, '--', 'busybox', 'sh', '-c', 'busybox echo hi; busybox cat /etc/motd; busybox id -u; busybox stat -c %u /bin/busybox'], { cwd, env });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('hi\nfrom the registry\n0\n0\n'); // the user's files are root's inside
    expect(run.code).toBe(0);

    const ls = await tapbox(['image', 'ls'], { cwd, env });
    expect(ls.stdout).toMatch(new RegExp(`^NAME +ID +SIZE +CREATED \\(UTC\\) +SOURCE\\n${ref.replace(/\./g, '\\.')} +[0-9a-f]{12} +[\\d.]+ (KiB|MiB) +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +${ref.replace(/\./g, '\\.')}\\n$`));

    // By digest: the same image; a digest the registry's bytes don't hash to is refused.
    const byDigest = await tapbox(['image', 'pull', `${open}/tools/busybox@${manifestDigest}`], { cwd, env });
    expect(byDigest.code, byDigest.stderr).toBe(0);
    expect(readdirSync(join(store, 'rootfs'))).toHaveLength(1);

    const rm = await tapbox(['image', 'rm', ref, `${open}/tools/busybox@${manifestDigest}`], { cwd, env });
    expect(rm.code, rm.stderr).toBe(0);
    expect(readdirSync(join(store, 'rootfs'))).toEqual([]);
    expect(readdirSync(join(store, 'blobs', 'sha256'))).toEqual([]);
    const gone = await tapbox(['--image', ref, '--', 'busybox', 'true'], { cwd, env });
    expect(gone.code).toBe(2);
    expect(gone.stderr).toBe(`tapbox: there is no image "${ref}"; run tapbox image ls to see your images (tapbox image pull or import adds one).\n`);
  });

  it('picks this host\'s platform from a multi-platform image (an index), and keeps the index\'s digest', async () => {
    const { cwd, env } = userDirs();
    const ref = `${open}/tools/multi:1`;
    const pulled = await tapbox(['image', 'pull', ref], { cwd, env });
    expect(pulled.code, pulled.stderr).toBe(0);
    const head = await fetch(`http://${open}/v2/tools/multi/manifests/1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    expect(pulled.stdout).toBe(`${ref} ${head.headers.get('docker-content-digest')}\n`);
    const run = await tapbox(['--image', ref, '--', 'busybox', 'cat', '/etc/motd'], { cwd, env });
    expect(run.stdout).toBe(`${hostPlatform().architecture}\n`);
  });

  it('refuses an image the registry does not have, a reference that is not one, a zstd image and an unknown command, in one sentence', async () => {
    const { cwd, env } = userDirs();
    const missing = await tapbox(['image', 'pull', `${open}/tools/nothing:1`], { cwd, env });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`tapbox: ${open} has no image ${open}/tools/nothing:1 you may pull (HTTP 404); check the name and tag, and the credentials if it is private.\n`);
    const bad = await tapbox(['image', 'pull', `${open}/Tools/busybox`], { cwd, env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^tapbox: ".*" is not an image reference \("Tools" is not a lowercase repository name component\); write it as /);
    const zstd = await tapbox(['image', 'pull', `${open}/tools/busybox-zstd:1`], { cwd, env });
    expect(zstd.code).toBe(2);
    expect(zstd.stderr).toBe(`tapbox: layer 1/1 of ${open}/tools/busybox-zstd:1 is compressed with zstd, which tapbox can't unpack yet; use an image whose layers are gzip or uncompressed tar (e.g. convert with skopeo copy --dest-compress-format gzip).\n`);
    const none = await tapbox(['image', 'frob'], { cwd, env });
    expect(none.code).toBe(2);
    expect(none.stderr).toBe('tapbox: tapbox image has no command "frob": import, pull, ls or rm (tapbox image --help shows them).\n');
  });

  it('uses plain HTTP to a registry that is not on loopback only with --insecure', async () => {
    const { cwd, env } = userDirs();
    const ref = `${remote}/tools/busybox:1`;
    const refused = await tapbox(['image', 'pull', ref], { cwd, env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`^tapbox: can't reach ${remote.replace(/\./g, '\\.')} over HTTPS \\(.+\\); check the name and your network \\(plain HTTP only with --insecure, or for a registry on localhost\\)\\.\\n$`));
    const insecure = await tapbox(['image', 'pull', '--insecure', ref], { cwd, env });
    expect(insecure.code, insecure.stderr).toBe(0);
    expect(insecure.stdout).toBe(`${ref} ${manifestDigest}\n`);
  });
});

/**
 * A registry in the middle, as a hostile mirror or an attacker on the path would be: it wants Basic
 * credentials, forwards to the open registry, and does to the layer's blob what `attack` says.
 */
async function startHostileRegistry(attack: { kind: 'corrupt' } | { kind: 'redirect'; to: string }): Promise<{ addr: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.headers.authorization !== `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="hostile"' }).end();
      return;
    }
    if (req.url!.endsWith(`/blobs/${layerDigest}`) && attack.kind === 'redirect') {
      res.writeHead(307, { location: `${attack.to}${req.url}` }).end();
      return;
    }
    void fetch(`http://${open}${req.url}`, { headers: { accept: req.headers.accept ?? '*/*' } }).then(async (upstream) => {
      const body = Buffer.from(await upstream.arrayBuffer());
      if (req.url!.endsWith(`/blobs/${layerDigest}`)) body[body.length >> 1]! ^= 0xff;
      const headers: Record<string, string> = {};
      for (const h of ['content-type', 'docker-content-digest']) if (upstream.headers.has(h)) headers[h] = upstream.headers.get(h)!;
      res.writeHead(upstream.status, headers).end(body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  cleanups.push(() => server.close());
  return { addr: `127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

describe('a hostile registry', () => {
  const creds = { TAPBOX_REGISTRY_AUTH: `${USER}:${PASSWORD}` };

  it('a layer that does not match its digest is refused, and nothing of it is kept', async () => {
    const { cwd, data, env } = userDirs();
    const { addr } = await startHostileRegistry({ kind: 'corrupt' });
    const r = await tapbox(['image', 'pull', `${addr}/tools/busybox:1`], { cwd, env: { ...env, ...creds } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`\ntapbox: layer 1/1 of ${addr}/tools/busybox:1 does not match its digest ${layerDigest} (got sha256:`);
    expect(r.stderr).toMatch(/ bytes\); the image is corrupt or was tampered with, so fetch it again from a source you trust\.\n$/);
    expect(readdirSync(join(data, 'tapbox', 'blobs', 'sha256'))).not.toContain(layerDigest.slice(7));
    expect(readdirSync(join(data, 'tapbox', 'rootfs'))).toEqual([]);
    expect(readdirSync(join(data, 'tapbox', 'tmp'))).toEqual([]);
  });

  it('a redirect to plain HTTP off loopback is refused; one to another origin gets no credentials', async () => {
    const { cwd, env } = userDirs();
    const toRemote = await startHostileRegistry({ kind: 'redirect', to: `http://${remote}` });
    const refused = await tapbox(['image', 'pull', `${toRemote.addr}/tools/busybox:1`], { cwd, env: { ...env, ...creds } });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`\ntapbox: ${toRemote.addr} sent tapbox to a redirect at http://${remote}, which is not HTTPS; pass --insecure only if you trust that network path.\n`);

    const seen: (string | undefined)[] = [];
    const elsewhere = createServer((req, res) => {
      seen.push(req.headers.authorization);
      void fetch(`http://${open}${req.url}`).then(async (upstream) => res.writeHead(upstream.status).end(Buffer.from(await upstream.arrayBuffer())));
    });
    await new Promise<void>((ok) => elsewhere.listen(0, '127.0.0.1', ok));
    cleanups.push(() => elsewhere.close());
    const toOther = await startHostileRegistry({ kind: 'redirect', to: `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}` });
    const pulled = await tapbox(['image', 'pull', `${toOther.addr}/tools/busybox:1`], { cwd, env: { ...env, ...creds } });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(seen).toEqual([undefined]); // the blob came from the other origin, without the registry's credentials
  });
});

describe('registry credentials', () => {
  it('Basic auth (htpasswd): refused without credentials or with wrong ones; pulls with TAPBOX_REGISTRY_AUTH or --creds-file', async () => {
    const { cwd, env } = userDirs();
    const ref = `${basic}/tools/busybox:1`;
    const anonymous = await tapbox(['image', 'pull', ref], { cwd, env });
    expect(anonymous.code).toBe(2);
    expect(anonymous.stderr).toBe(`tapbox: ${basic} wants credentials to pull ${basic}/tools/busybox; pass them as TAPBOX_REGISTRY_AUTH=USER:PASSWORD or --creds-file FILE.\n`);
    const wrong = await tapbox(['image', 'pull', ref], { cwd, env: { ...env, TAPBOX_REGISTRY_AUTH: `${USER}:wrong` } });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toBe(`tapbox: ${basic} refused the credentials for ${basic}/tools/busybox; check the user and password in TAPBOX_REGISTRY_AUTH or --creds-file.\n`);
    const right = await tapbox(['image', 'pull', ref], { cwd, env: { ...env, TAPBOX_REGISTRY_AUTH: `${USER}:${PASSWORD}` } });
    expect(right.code, right.stderr).toBe(0);
    const file = join(cwd, 'creds');
    writeFileSync(file, `${USER}:${PASSWORD}\n`, { mode: 0o600 });
    if (isRoot) chownSync(file, testIds.uid, testIds.gid);
    const fromFile = await tapbox(['image', 'pull', '--creds-file', file, ref], { cwd, env });
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const run = await tapbox(['--image', ref, '--', 'busybox', 'cat', '/etc/motd'], { cwd, env });
    expect(run.stdout).toBe('from the registry\n');
  });

  it('Bearer tokens: anonymous for a public repository, with credentials for a private one, refused otherwise', async () => {
    const { cwd, env } = userDirs();
    const pub = await tapbox(['image', 'pull', `${bearer}/public/busybox:1`], { cwd, env });
    expect(pub.code, pub.stderr).toBe(0);
    expect(pub.stdout).toBe(`${bearer}/public/busybox:1 ${manifestDigest}\n`);
    const anonymous = await tapbox(['image', 'pull', `${bearer}/tools/busybox:1`], { cwd, env });
    expect(anonymous.code).toBe(2);
    expect(anonymous.stderr).toBe(`tapbox: ${bearer} wants credentials to pull ${bearer}/tools/busybox; pass them as TAPBOX_REGISTRY_AUTH=USER:PASSWORD or --creds-file FILE.\n`);
    const wrong = await tapbox(['image', 'pull', `${bearer}/tools/busybox:1`], { cwd, env: { ...env, TAPBOX_REGISTRY_AUTH: `${USER}:wrong` } });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toBe(`tapbox: the token server of ${bearer} refused the credentials; check the user and password in TAPBOX_REGISTRY_AUTH or --creds-file.\n`);
    const authed = await tapbox(['image', 'pull', `${bearer}/tools/busybox:1`], { cwd, env: { ...env, TAPBOX_REGISTRY_AUTH: `${USER}:${PASSWORD}` } });
    expect(authed.code, authed.stderr).toBe(0);
    const run = await tapbox(['--image', `${bearer}/tools/busybox:1`, '--', 'busybox', 'echo', 'hi'], { cwd, env });
    expect(run.stdout).toBe('hi\n');
  });
});

describe('tapbox image import', () => {
  it('imports an OCI layout as the unprivileged user and runs it; a hostile tarball leaves nothing behind', async () => {
    const { cwd, data, env } = userDirs();
    const layout = join(cwd, 'layout');
    ociLayout(layout, [await tarOf([{ name: 'bin/busybox', data: readFileSync('/bin/busybox'), mode: 0o755 }, { name: 'etc/motd', data: 'imported\n' }])], { gzip: true });
    execFileSync('chown', ['-R', `${testIds.uid}:${testIds.gid}`, layout]);
    const imported = await tapbox(['image', 'import', layout, 'local/busybox'], { cwd, env });
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toMatch(/^local\/busybox sha256:[0-9a-f]{64}\n$/);
    const run = await tapbox(['--image', 'local/busybox', '--', '/bin/busybox', 'cat', '/etc/motd'], { cwd, env });
    expect(run.stdout).toBe('imported\n');
    const both = await tapbox(['--image', 'local/busybox', '--rootfs', layout, '--', 'true'], { cwd, env });
    expect(both.code).toBe(2);
    expect(both.stderr).toBe('tapbox: --image and --rootfs each choose the sandbox\'s root; give one.\n');
    const withX = await tapbox(['-x', '--image', 'local/busybox', '--', 'true'], { cwd, env });
    expect(withX.code).toBe(2);
    expect(withX.stderr).toBe('tapbox: --image and -x each choose the sandbox\'s root; give one.\n');

    const victim = join(cwd, 'victim');
    mkdirSync(victim);
    if (isRoot) chownSync(victim, testIds.uid, testIds.gid);
    const evil = join(cwd, 'evil.tar');
    writeFileSync(evil, await tarOf([{ name: 'escape', type: 'symlink', linkname: victim }, { name: 'escape/planted', data: 'pwned' }]));
    chmodSync(evil, 0o644);
    const refused = await tapbox(['image', 'import', evil, 'evil'], { cwd, env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`tapbox: refusing ${evil}: its member "escape/planted" would be written through the symlink "escape"; an image must stay inside its own root, so get a clean one from its publisher.\n`);
    expect(readdirSync(victim)).toEqual([]);
    expect(readdirSync(join(data, 'tapbox', 'tmp'))).toEqual([]);
  });
});

/**
 * A registry that stalls in the middle of a layer: it forwards to the open registry, but of a blob
 * larger than 64 KiB (a layer: configs are small) it sends the headers and the first half, then
 * nothing more, with the connection left open. `stalled` resolves once that half is out.
 */
async function startStallingRegistry(): Promise<{ addr: string; stalled: Promise<void> }> {
  let onStall: () => void;
  const stalled = new Promise<void>((ok) => (onStall = ok));
  const server = createServer((req, res) => {
    void fetch(`http://${open}${req.url}`, { headers: { accept: req.headers.accept ?? '*/*' } }).then(async (upstream) => {
      const body = Buffer.from(await upstream.arrayBuffer());
      const headers: Record<string, string> = { 'content-length': String(body.length) };
      for (const h of ['content-type', 'docker-content-digest']) if (upstream.headers.has(h)) headers[h] = upstream.headers.get(h)!;
      res.writeHead(upstream.status, headers);
      if (!req.url!.includes('/blobs/') || body.length <= 64 << 10) return void res.end(body);
      res.write(body.subarray(0, body.length >> 1), () => onStall());
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { addr: `127.0.0.1:${(server.address() as { port: number }).port}`, stalled };
}

describe('a registry that stalls, and pulls that fail or are killed', () => {
  /** The blobs of the image pulled as ref: its config and layers (hex), from the store's index. */
  const blobsOf = (data: string, ref: string) => {
    const index = JSON.parse(readFileSync(join(data, 'tapbox', 'index.json'), 'utf8')) as { images: Record<string, { config: string; layers: string[] }> };
    return [index.images[ref]!.config, ...index.images[ref]!.layers].map((d) => d.slice(7)).sort();
  };

  it('a pull SIGKILLed in the middle of a layer: what it left is gone after the next pull', async () => {
    const { cwd, data, env } = userDirs();
    const { addr, stalled } = await startStallingRegistry();
    const store = join(data, 'tapbox');
    const argv = asTestUser([process.execPath, cliPath, 'image', 'pull', `${addr}/tools/multi:1`]);
    // A process group of its own: runuser and the tapbox under it are killed together.
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: 'ignore', detached: true });
    const exited = new Promise((ok) => child.once('exit', ok));
    await stalled;
    // Half the layer is written to its temporary file once tapbox has read it.
    const partial = () => (existsSync(join(store, 'tmp')) ? readdirSync(join(store, 'tmp')).filter((d) => d.startsWith('blob-')) : []);
    for (let i = 0; i < 200 && !partial().some((d) => existsSync(join(store, 'tmp', d, 'data')) && statSync(join(store, 'tmp', d, 'data')).size > 0); i++) await new Promise((r) => setTimeout(r, 50));
    process.kill(-child.pid!, 'SIGKILL');
    await exited;
    expect(partial()).toHaveLength(1);
    expect(readdirSync(join(store, 'blobs', 'sha256'))).toHaveLength(1); // the image's config
    expect(existsSync(join(store, 'index.json'))).toBe(false);

    const ref = `${open}/tools/busybox:1`;
    const next = await tapbox(['image', 'pull', ref], { cwd, env });
    expect(next.code, next.stderr).toBe(0);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    expect(readdirSync(join(store, 'blobs', 'sha256')).sort()).toEqual(blobsOf(data, ref));
    expect(readdirSync(join(store, 'rootfs'))).toHaveLength(1);
  });

  it('a registry silent in the middle of a layer fails the pull at the idle timeout, in one sentence; the next pull collects what it left', async () => {
    const { cwd, data, env } = userDirs();
    const { addr } = await startStallingRegistry();
    const ref = `${addr}/tools/busybox:1`;
    const r = await tapbox(['image', 'pull', '--timeout', '1', ref], { cwd, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^tapbox: pulling layer 1\/1 of /);
    expect(r.stderr).toContain(`\ntapbox: ${addr} sent nothing more of layer 1/1 of ${ref} for 1 s (the idle timeout); pull again (the layers fetched so far are kept), or allow longer with --timeout SECONDS.\n`);
    const store = join(data, 'tapbox');
    expect(readdirSync(join(store, 'blobs', 'sha256'))).toHaveLength(1); // the config, kept for a pull again
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);

    const other = `${open}/tools/multi:1`;
    const next = await tapbox(['image', 'pull', other], { cwd, env });
    expect(next.code, next.stderr).toBe(0);
    expect(readdirSync(join(store, 'blobs', 'sha256')).sort()).toEqual(blobsOf(data, other));
  });

  it('a registry that accepts but never answers fails at the response timeout, in one sentence', async () => {
    const { cwd, env } = userDirs();
    const silent = createNetServer(() => undefined);
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
    cleanups.push(() => silent.close());
    const addr = `127.0.0.1:${(silent.address() as { port: number }).port}`;
    const r = await tapbox(['image', 'pull', '--timeout', '1', `${addr}/tools/busybox:1`], { cwd, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`tapbox: ${addr} did not answer within 1 s (the response timeout) while tapbox was pulling ${addr}/tools/busybox; try again later, or allow longer with --timeout SECONDS.\n`);
    const zero = await tapbox(['image', 'pull', '--timeout', '0', `${addr}/tools/busybox:1`], { cwd, env });
    expect(zero.code).toBe(2);
    expect(zero.stderr).toBe('tapbox: a registry timeout of 0 s makes no sense; give from 1 to 86400 seconds.\n');
  });

  it('a registry that takes no connection fails at the connect timeout, in one sentence', async () => {
    const { cwd, env } = userDirs();
    // A listener that never accepts, with a backlog of 0 filled by one connection: the kernel drops
    // the SYNs of any other, which never connects.
    const listener = spawn('python3', ['-c', 'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(600)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(listener);
    const port = await new Promise<number>((ok) => listener.stdout!.once('data', (d) => ok(Number(String(d).trim()))));
    const filler = createConnection(port, '127.0.0.1');
    cleanups.push(() => filler.destroy());
    await new Promise((ok) => filler.once('connect', ok));
    const addr = `127.0.0.1:${port}`;
    const r = await tapbox(['image', 'pull', '--timeout', '1', `${addr}/tools/busybox:1`], { cwd, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`tapbox: can't connect to ${addr} within 1 s (the connect timeout) while pulling ${addr}/tools/busybox; check the name and your network, or allow longer with --timeout SECONDS.\n`);
  });
});
