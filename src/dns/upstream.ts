// The DNS proxy's upstream: the host's resolvers (from /etc/resolv.conf, loopback stubs such as
// systemd-resolved's 127.0.0.53 included) or the ones given with `dnsUpstream`. Each question goes out
// as a fresh query (new random id, new socket, so a spoofed answer must guess both), over UDP, and over
// TCP when the UDP answer is truncated. Attempts rotate across the upstreams; when all time out the
// caller answers SERVFAIL.
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { TapboxError } from '../errors.js';
import { canonicalIp, parseIp } from '../policy/address.js';

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

export class Upstream {
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private next = 0;
  private closed = false;
  private readonly open = new Set<dgram.Socket | net.Socket>();

  constructor(private readonly opts: UpstreamOptions) {
    if (opts.servers.length === 0) throw new TapboxError('ENETCFG', 'no DNS upstream to forward to.');
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.attempts = opts.attempts ?? Math.max(2, opts.servers.length);
  }

  /** Resolves one question; null when every attempt failed (the caller answers SERVFAIL). */
  async resolve(question: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    for (let i = 0; i < this.attempts && !this.closed; i++) {
      const server = this.opts.servers[this.next++ % this.opts.servers.length];
      const answer = await this.tryServer(server, question).catch(() => null);
      if (answer) return answer;
    }
    return null;
  }

  /** Stops every query in flight (they resolve to null). */
  close(): void {
    this.closed = true;
    for (const s of this.open) {
      if (s instanceof net.Socket) s.destroy();
      else s.close();
    }
    this.open.clear();
  }

  private async tryServer(server: UpstreamServer, question: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    const id = randomInt(0, 0x10000);
    const query = dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [question],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    });
    const udp = await this.viaUdp(server, query, id, question);
    if (udp && !udp.flag_tc) return udp;
    if (!udp) return null;
    return this.viaTcp(server, query, id, question);
  }

  private viaUdp(server: UpstreamServer, query: Buffer, id: number, q: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    return new Promise((resolve) => {
      const socket = dgram.createSocket(server.family === 4 ? 'udp4' : 'udp6');
      this.open.add(socket);
      const finish = (answer: UpstreamAnswer | null) => {
        clearTimeout(timer);
        if (this.open.delete(socket)) socket.close();
        resolve(answer);
      };
      const timer = setTimeout(() => finish(null), this.timeoutMs);
      socket.on('error', () => finish(null));
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(null);
      });
      socket.on('message', (msg, rinfo) => {
        if (canonicalIp(rinfo.address) !== server.host || rinfo.port !== server.port) return;
        const answer = decodeMatching(msg, id, q);
        if (answer) finish(answer);
      });
      socket.connect(server.port, server.host, () => socket.send(query));
    });
  }

  private viaTcp(server: UpstreamServer, query: Buffer, id: number, q: dnsPacket.Question): Promise<UpstreamAnswer | null> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: server.host, port: server.port });
      this.open.add(socket);
      let buffered = Buffer.alloc(0);
      const finish = (answer: UpstreamAnswer | null) => {
        if (this.open.delete(socket)) socket.destroy();
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
    answer = dnsPacket.decode(msg);
  } catch {
    return null;
  }
  const aq = answer.questions?.[0];
  if (answer.type !== 'response' || answer.id !== id || !aq) return null;
  if (aq.type !== q.type || aq.name.toLowerCase() !== q.name.toLowerCase()) return null;
  return answer;
}
