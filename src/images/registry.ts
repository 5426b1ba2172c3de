// A client of the OCI distribution API (v2), enough to pull: manifests and blobs, with the two auth
// schemes registries use (a Bearer token from the realm named in WWW-Authenticate, anonymous or with
// credentials; or Basic). HTTPS always, except plain HTTP to a loopback registry or with --insecure
// (certificates are verified either way). Redirects (blob storage) are followed by hand, so that each
// hop passes the same scheme rule and credentials never go to another origin. Every request has its own
// timeouts (undici's defaults are 300 s): connecting (TLS included), waiting for the response headers,
// and a body that sends nothing (the idle timeout); each fails with one sentence naming it.
import { Agent, fetch, type Response } from 'undici';
import { TapboxError } from '../errors.js';
import type { Reference } from './reference.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface RegistryOptions {
  /** Allow plain HTTP to a registry that is not on loopback. */
  insecure?: boolean;
  credentials?: Credentials;
  /** Seconds to wait for a connection, for an answer, and between two reads of a body (default 30). */
  timeout?: number;
}

const DEFAULT_TIMEOUT = 30;

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(:\d+)?$/;

/** Whether plain HTTP may be used for this host (host[:port], IPv6 bracketed). */
function httpAllowed(host: string, insecure: boolean): boolean {
  return insecure || LOOPBACK.test(host);
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (quoted values may hold commas). */
function parseChallenge(header: string): Challenge | null {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return null;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}

export class Registry {
  private base: string | undefined;
  private authorization: string | undefined;
  private readonly host: string;
  private readonly timeout: number;
  private readonly agent: Agent;

  constructor(
    private readonly ref: Reference,
    private readonly options: RegistryOptions = {},
  ) {
    this.host = ref.registry === 'docker.io' ? 'registry-1.docker.io' : ref.registry;
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT;
    if (!(this.timeout >= 1 && this.timeout <= 86_400)) throw new TapboxError('EUSAGE', `a registry timeout of ${this.timeout} s makes no sense; give from 1 to 86400 seconds.`);
    const ms = this.timeout * 1000;
    this.agent = new Agent({ connect: { timeout: ms }, headersTimeout: ms, bodyTimeout: ms });
  }

  /** Closes the connections kept open for the next request. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }

  /**
   * Why reading a body from the registry (a manifest, a config, a layer: `what`) failed, in one
   * sentence: the idle timeout, or the download broke off. A TapboxError is passed on as it is.
   */
  readFailed(err: unknown, what: string): TapboxError {
    if (err instanceof TapboxError) return err;
    return this.timedOut(err, this.ref.registry, what) ?? new TapboxError('EUSAGE', `the download of ${what} broke off (${causeOf(err)}); pull again (the layers fetched so far are kept).`);
  }

  /** A timeout of ours under a fetch error (of host; reading `what`), as one sentence naming it and how to allow longer; else null. */
  private timedOut(err: unknown, host: string, what = 'its answer'): TapboxError | null {
    const s = `${this.timeout} s`;
    const longer = 'or allow longer with --timeout SECONDS';
    switch ((err as { cause?: { code?: string } }).cause?.code) {
      case 'UND_ERR_CONNECT_TIMEOUT':
        return new TapboxError('EUSAGE', `can't connect to ${host} within ${s} (the connect timeout) while pulling ${this.name}; check the name and your network, ${longer}.`);
      case 'UND_ERR_HEADERS_TIMEOUT':
        return new TapboxError('EUSAGE', `${host} did not answer within ${s} (the response timeout) while tapbox was pulling ${this.name}; try again later, ${longer}.`);
      case 'UND_ERR_BODY_TIMEOUT':
        return new TapboxError('EUSAGE', `${host} sent nothing more of ${what} for ${s} (the idle timeout); pull again (the layers fetched so far are kept), ${longer}.`);
      default:
        return null;
    }
  }

  private get name(): string {
    return `${this.ref.registry}/${this.ref.repository}`;
  }

  /** GET /v2/REPO/PATH with auth; the response is ok (2xx) or a TapboxError was thrown. */
  async get(path: string, accept?: string[]): Promise<Response> {
    const base = await this.origin();
    const url = `${base}/v2/${this.ref.repository}/${path}`;
    const headers: Record<string, string> = accept ? { accept: accept.join(', ') } : {};
    let res = await this.fetchFollowing(url, headers);
    if (res.status === 401) {
      await res.body?.cancel();
      await this.authenticate(res.headers.get('www-authenticate'));
      res = await this.fetchFollowing(url, headers);
      if (res.status === 401) {
        await res.body?.cancel();
        throw new TapboxError('EUSAGE', this.options.credentials
          ? `${this.ref.registry} refused the credentials for ${this.name}; check the user and password in TAPBOX_REGISTRY_AUTH or --creds-file.`
          : `${this.ref.registry} wants credentials to pull ${this.name}; pass them as TAPBOX_REGISTRY_AUTH=USER:PASSWORD or --creds-file FILE.`);
      }
    }
    if (res.status === 404 || res.status === 403) {
      await res.body?.cancel();
      throw new TapboxError('EUSAGE', `${this.ref.registry} has no ${path.startsWith('manifests/') ? `image ${this.name}:${path.slice('manifests/'.length)}` : `blob ${path.slice('blobs/'.length)} for ${this.name}`} you may pull (HTTP ${res.status}); check the name and tag, and the credentials if it is private.`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new TapboxError('EUSAGE', `${this.ref.registry} answered HTTP ${res.status} to ${path}; try again later, or check the registry.`);
    }
    return res;
  }

  /** https://HOST, or http://HOST when HTTPS does not answer and plain HTTP is allowed for this host. */
  private async origin(): Promise<string> {
    if (this.base) return this.base;
    try {
      const res = await fetch(`https://${this.host}/v2/`, { redirect: 'manual', dispatcher: this.agent });
      await res.body?.cancel();
      this.base = `https://${this.host}`;
    } catch (err) {
      if (!httpAllowed(this.host, this.options.insecure ?? false)) {
        throw this.timedOut(err, this.ref.registry) ?? new TapboxError('EUSAGE', `can't reach ${this.ref.registry} over HTTPS (${causeOf(err)}); check the name and your network (plain HTTP only with --insecure, or for a registry on localhost).`);
      }
      this.base = `http://${this.host}`;
    }
    return this.base;
  }

  private async authenticate(header: string | null): Promise<void> {
    const challenge = header === null ? null : parseChallenge(header);
    const creds = this.options.credentials;
    if (challenge?.scheme === 'basic') {
      if (!creds) throw new TapboxError('EUSAGE', `${this.ref.registry} wants credentials to pull ${this.name}; pass them as TAPBOX_REGISTRY_AUTH=USER:PASSWORD or --creds-file FILE.`);
      this.authorization = `Basic ${basic(creds)}`;
      return;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) {
      throw new TapboxError('EUSAGE', `${this.ref.registry} asked for an authentication tapbox does not speak (${header ?? 'no WWW-Authenticate header'}); pull from a registry that uses Bearer tokens or Basic auth.`);
    }
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm);
    } catch {
      throw new TapboxError('EUSAGE', `${this.ref.registry} named a token server that is not a URL (${challenge.params.realm}); check the registry.`);
    }
    this.checkScheme(realm, 'its token server');
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', challenge.params.scope ?? `repository:${this.ref.repository}:pull`);
    const res = await fetch(realm, { headers: creds ? { authorization: `Basic ${basic(creds)}` } : {}, redirect: 'error', dispatcher: this.agent }).catch((err: unknown) => {
      throw this.timedOut(err, `the token server of ${this.ref.registry} (${realm.host})`) ?? new TapboxError('EUSAGE', `can't reach the token server of ${this.ref.registry} at ${realm.origin} (${causeOf(err)}); check your network.`);
    });
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw new TapboxError('EUSAGE', creds
        ? `the token server of ${this.ref.registry} refused the credentials; check the user and password in TAPBOX_REGISTRY_AUTH or --creds-file.`
        : `${this.ref.registry} wants credentials to pull ${this.name}; pass them as TAPBOX_REGISTRY_AUTH=USER:PASSWORD or --creds-file FILE.`);
    }
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!res.ok || typeof token !== 'string') throw new TapboxError('EUSAGE', `the token server of ${this.ref.registry} gave no token (HTTP ${res.status}); try again later, or check the registry.`);
    this.authorization = `Bearer ${token}`;
  }

  private checkScheme(url: URL, what: string): void {
    if (url.protocol === 'https:') return;
    if (url.protocol === 'http:' && httpAllowed(url.host, this.options.insecure ?? false)) return;
    throw new TapboxError('EUSAGE', `${this.ref.registry} sent tapbox to ${what} at ${url.origin}, which is not HTTPS; pass --insecure only if you trust that network path.`);
  }

  /** fetch, following up to 5 redirects: each hop over an allowed scheme, the Authorization header only to the registry's origin. */
  private async fetchFollowing(start: string, headers: Record<string, string>): Promise<Response> {
    const origin = new URL(start).origin;
    let url = new URL(start);
    for (let hop = 0; hop <= 5; hop++) {
      const auth: Record<string, string> = this.authorization && url.origin === origin ? { authorization: this.authorization } : {};
      const res = await fetch(url, { headers: { ...headers, ...auth }, redirect: 'manual', dispatcher: this.agent }).catch((err: unknown) => {
        throw this.timedOut(err, url.host) ?? new TapboxError('EUSAGE', `can't reach ${url.origin} while pulling ${this.name} (${causeOf(err)}); check your network and try again.`);
      });
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || location === null) return res;
      await res.body?.cancel();
      url = new URL(location, url);
      this.checkScheme(url, 'a redirect');
    }
    throw new TapboxError('EUSAGE', `${this.ref.registry} redirected more than 5 times while pulling ${this.name}; check the registry.`);
  }
}

const basic = (c: Credentials) => Buffer.from(`${c.username}:${c.password}`).toString('base64');

/** What went wrong under a fetch error ("fetch failed" says nothing): its cause's code or message. */
export function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}
