// The sandbox's resolver (10.0.2.3 / fd00::3, and anything else on port 53). It is the policy's eyes:
//  - a question that is not a host name (names.ts) is REFUSED before the policy or the upstream sees it;
//  - a name no rule allows is never sent upstream (no exfiltration through lookups): NXDOMAIN, or
//    REFUSED for odd query types (ANY, zone transfers, classes other than IN);
//  - for an allowed name, A/AAAA/CNAME and the other plain record types are resolved upstream; the
//    addresses of the CNAME chain are pinned to the name that was asked (the chain's targets may be
//    outside the allowlist: the pin, and so the rule's ports, belong to the asked name);
//  - records that would route around the pins (HTTPS/SVCB: ECH configs, alternative endpoints) and
//    every type not listed below get an empty NOERROR;
//  - addresses pointing inside (rebinding.ts) are dropped from answers and logged.
import type { Duplex } from 'node:stream';
import type dnsPacket from 'dns-packet';
import type { UdpConn } from '../../../netstack/index.js';
import type { Attribution, Owner } from '../audit/attribution.js';
import type { AskOutcome } from '../ask/asker.js';
import { dnsRequest, type AskRequest } from '../ask/request.js';
import type { Policy } from '../policy/policy.js';
import { normalizeName } from '../policy/rule.js';
import { dnsCodec } from './codec.js';
import { isHostName, printable } from './names.js';
import { isRebindingTarget, type AddressSet } from './rebinding.js';
import type { UpstreamAnswer } from './upstream.js';

export type DnsVerdict = 'allow' | 'deny' | 'filter' | 'refuse' | 'fail';

export interface DnsEvent {
  name: string;
  type: string;
  verdict: DnsVerdict;
  rcode: string;
  /** Records given to the sandbox, as "A 192.0.2.1", "CNAME edge.example.net". */
  answers: string[];
  /** Addresses removed from the answer because they point inside. */
  dropped: string[];
  reason?: string;
  transport: 'udp' | 'tcp';
  /** The sandbox process that asked (attribution.ts); null: unknown. Absent when attribution is off. */
  by?: Attribution | null;
}

export interface DnsResolver {
  resolve(question: dnsPacket.Question): Promise<UpstreamAnswer | null>;
}

export interface DnsProxyOptions {
  policy: Policy;
  upstream: DnsResolver;
  /** The host's own addresses (rebinding.ts hostAddresses(), liveHostAddresses()). */
  hostAddrs: AddressSet;
  /** Upstream queries in flight at most; past it: REFUSED. Default 256. */
  maxInFlight?: number;
  onEvent?: (e: DnsEvent) => void;
  /** Ask mode (ask/asker.ts): asks about a name no rule allows; the query waits for the answer. */
  ask?: (request: AskRequest, allowedNow: () => boolean) => Promise<AskOutcome>;
  /** Told when a query is refused because `maxInFlight` queries wait for the upstream. */
  onLimit?: (limit: 'dns-in-flight' | 'dns-tcp', value: number, detail: string) => void;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
type Rcode = keyof typeof RCODE;

const FORWARDED_TYPES = new Set(['A', 'AAAA', 'CNAME', 'TXT', 'MX', 'SRV', 'CAA', 'NS', 'SOA', 'PTR']);
const ODD_TYPES = new Set(['ANY', 'AXFR', 'IXFR']);
const TYPE_NAMES: Record<string, string> = { UNKNOWN_64: 'SVCB', UNKNOWN_65: 'HTTPS' };
const MAX_TCP_MESSAGE = 0xffff;
/** DNS over TCP: connections open at once; beyond, the newest is reset. */
const MAX_TCP_CONNECTIONS = 64;
/** Per connection: queries being answered at once, and answer bytes the sandbox has not taken yet.
 * Past either, the connection is not read (its window closes): pipelining can't grow our memory. */
const MAX_TCP_PIPELINE = 16;
const MAX_TCP_UNSENT = 64 * 1024;

export class DnsProxy {
  private inFlight = 0;
  private readonly maxInFlight: number;
  private readonly tcpConns = new Set<Duplex>();

  constructor(private readonly opts: DnsProxyOptions) {
    this.maxInFlight = opts.maxInFlight ?? 256;
  }

  /** Answers one DNS message; null when it deserves no answer (not a query, or unparseable). */
  async answer(message: Buffer, transport: 'udp' | 'tcp', owner: Owner = () => undefined): Promise<Buffer | null> {
    const who = (verdict: DnsVerdict) => {
      const by = owner(verdict === 'deny' || verdict === 'refuse');
      return by !== undefined ? { by } : {};
    };
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsCodec().decode(message);
    } catch {
      return message.length >= 12 ? dnsCodec().encode({ type: 'response', id: message.readUInt16BE(0), flags: RCODE.FORMERR }) : null;
    }
    if (query.type !== 'query') return null;
    if ((query as { opcode?: string }).opcode !== 'QUERY') return this.reply(query, 'NOTIMP', transport);
    const q = query.questions?.[0];
    if (!q || query.questions!.length !== 1) return this.reply(query, 'FORMERR', transport);

    const name = normalizeName(q.name);
    const type = TYPE_NAMES[q.type] ?? q.type;
    const odd = ODD_TYPES.has(q.type) || (q.class ?? 'IN') !== 'IN';
    const event = (verdict: DnsVerdict, rcode: Rcode, extra: Partial<DnsEvent> = {}) =>
      this.opts.onEvent?.({ name, type, verdict, rcode, answers: [], dropped: [], transport, ...extra, ...who(verdict) });

    // Not a host name (a control character, a space, a label too long...): refused before the policy
    // or the upstream sees it, and logged escaped (it would otherwise reach logs, the summary, --learn).
    if (!isHostName(name)) {
      this.opts.onEvent?.({ name: printable(name), type, verdict: 'refuse', rcode: 'REFUSED', answers: [], dropped: [], transport, reason: 'not a host name', ...who('refuse') });
      return this.reply(query, 'REFUSED', transport);
    }
    let verdict = this.opts.policy.resolvable(name);
    // Ask mode: a name only unlisted (no deny rule) is held here, never sent upstream before a yes.
    if (!verdict.allowed && verdict.askable && this.opts.ask && !odd) {
      const outcome = await this.opts.ask(dnsRequest(name, owner(true)), () => this.opts.policy.resolvable(name).allowed);
      const now = this.opts.policy.resolvable(name); // a deny rule added meanwhile still wins
      verdict = !outcome.allowed ? { allowed: false, reason: `${verdict.reason}; ${outcome.note}` } : now.allowed || now.askable ? { allowed: true, rule: null } : now;
    }
    if (!verdict.allowed) {
      const rcode = odd ? 'REFUSED' : 'NXDOMAIN';
      event('deny', rcode, { reason: verdict.reason });
      return this.reply(query, rcode, transport);
    }
    if (odd) {
      event('refuse', 'REFUSED', { reason: `query type ${type} class ${q.class ?? 'IN'} is not served` });
      return this.reply(query, 'REFUSED', transport);
    }
    if (!FORWARDED_TYPES.has(q.type)) {
      event('filter', 'NOERROR', { reason: `${type} records are filtered` });
      return this.reply(query, 'NOERROR', transport);
    }
    if (this.inFlight >= this.maxInFlight) {
      event('refuse', 'REFUSED', { reason: `more than ${this.maxInFlight} queries in flight` });
      this.opts.onLimit?.('dns-in-flight', this.maxInFlight, 'DNS queries waiting for the upstream at the cap: new query refused');
      return this.reply(query, 'REFUSED', transport);
    }

    this.inFlight++;
    let upstream: UpstreamAnswer | null;
    try {
      upstream = await this.opts.upstream.resolve({ name, type: q.type, class: 'IN' });
    } finally {
      this.inFlight--;
    }
    if (!upstream) {
      event('fail', 'SERVFAIL', { reason: 'no upstream resolver answered' });
      return this.reply(query, 'SERVFAIL', transport);
    }

    const { kept, dropped } = this.filterAnswers(name, q.type, upstream.answers ?? []);
    const rcode = rcodeName(upstream.flags ?? 0);
    const authorities = (upstream.authorities ?? []).filter((a) => a.type === 'SOA');
    event('allow', rcode, { answers: kept.map(describeRecord), dropped, reason: dropped.length ? 'internal addresses dropped (rebinding)' : undefined });
    return this.reply(query, rcode, transport, kept, authorities);
  }

  /** Serves DNS over one UDP session (any address, port 53); `by`: the process whose socket it is. */
  serveUdp(conn: UdpConn, owner?: Owner): void {
    conn.onMessage = (payload) => {
      void this.answer(payload, 'udp', owner).then((reply) => reply && conn.send(reply));
    };
  }

  /**
   * Serves DNS over one TCP connection: two-byte length-prefixed messages, answered as they complete,
   * with bounded memory (MAX_TCP_PIPELINE, MAX_TCP_UNSENT; the sandbox's unread answers pause reading).
   */
  serveTcp(conn: Duplex, owner?: Owner): void {
    if (this.tcpConns.size >= MAX_TCP_CONNECTIONS) {
      this.opts.onLimit?.('dns-tcp', MAX_TCP_CONNECTIONS, 'DNS-over-TCP connections at the cap: new connection reset');
      conn.destroy();
      return;
    }
    this.tcpConns.add(conn);
    let buffered: Buffer = Buffer.alloc(0);
    let pending = 0;
    let ended = false;
    const complete = () => buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0);
    const busy = () => pending >= MAX_TCP_PIPELINE || conn.writableLength >= MAX_TCP_UNSENT;
    const pump = () => {
      while (!busy() && complete()) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        pending++;
        void this.answer(message, 'tcp', owner).then((reply) => {
          pending--;
          if (reply && reply.length <= MAX_TCP_MESSAGE && !conn.destroyed) {
            const length = Buffer.alloc(2);
            length.writeUInt16BE(reply.length);
            conn.write(Buffer.concat([length, reply]));
          }
          pump();
        });
      }
      // Read on only while there is room and no whole message waits: a paused connection's bytes stay
      // in the stack's receive buffer, whose window then closes on the sandbox.
      if (busy() || complete()) conn.pause();
      else if (!ended) conn.resume();
      if (ended && pending === 0 && !complete()) conn.end();
    };
    conn.on('data', (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      pump();
    });
    conn.on('drain', pump);
    conn.on('end', () => {
      ended = true;
      pump();
    });
    conn.on('error', () => conn.destroy());
    conn.on('close', () => this.tcpConns.delete(conn));
  }

  close(): void {
    for (const conn of this.tcpConns) conn.destroy();
  }

  /**
   * Keeps the records of the CNAME chain that starts at the asked name, drops internal addresses,
   * and pins the remaining addresses to the asked name.
   */
  private filterAnswers(name: string, qtype: string, answers: dnsPacket.Answer[]): { kept: dnsPacket.Answer[]; dropped: string[] } {
    const chain = new Set([name]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const a of answers) {
        if (a.type === 'CNAME' && chain.has(normalizeName(a.name)) && !chain.has(normalizeName(a.data))) {
          chain.add(normalizeName(a.data));
          grew = true;
        }
      }
    }
    const kept: dnsPacket.Answer[] = [];
    const dropped: string[] = [];
    for (const a of answers) {
      if (!chain.has(normalizeName(a.name)) || (a.type !== 'CNAME' && a.type !== qtype)) continue;
      if (a.type === 'A' || a.type === 'AAAA') {
        if (isRebindingTarget(a.data, this.opts.hostAddrs)) {
          dropped.push(a.data);
          continue;
        }
        this.opts.policy.pin(name, a.data, a.ttl ?? 0);
      }
      kept.push(a);
    }
    return { kept, dropped };
  }

  private reply(query: dnsPacket.DecodedPacket, rcode: Rcode, transport: 'udp' | 'tcp', answers: dnsPacket.Answer[] = [], authorities: dnsPacket.Answer[] = []): Buffer {
    const opt = query.additionals?.find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
    const edns: dnsPacket.Answer[] = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [];
    const codec = dnsCodec();
    const flags = (query.flag_rd ? codec.RECURSION_DESIRED : 0) | codec.RECURSION_AVAILABLE | RCODE[rcode];
    const packet = { type: 'response' as const, id: query.id, flags, questions: query.questions, answers, authorities, additionals: edns };
    const encoded = codec.encode(packet);
    const limit = transport === 'tcp' ? MAX_TCP_MESSAGE : Math.max(512, opt?.udpPayloadSize ?? 512);
    if (encoded.length <= limit) return encoded;
    // Too big for the client's UDP buffer: truncated, so it asks again over TCP.
    return codec.encode({ ...packet, flags: flags | codec.TRUNCATED_RESPONSE, answers: [], authorities: [] });
  }
}

function rcodeName(flags: number): Rcode {
  const code = flags & 0xf;
  return (Object.keys(RCODE) as Rcode[]).find((k) => RCODE[k] === code) ?? 'SERVFAIL';
}

function describeRecord(a: dnsPacket.Answer): string {
  return typeof (a as { data?: unknown }).data === 'string' ? `${a.type} ${(a as dnsPacket.StringAnswer).data}` : a.type;
}
