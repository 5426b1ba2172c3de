// What the TCP and UDP forwarders share: the policy, the DNS proxy, the auditor, the flow limit, and
// the sandbox's own addresses (the resolver, the gateway).
import type { FlowId } from '../../../netstack/index.js';
import type { AskOutcome } from '../ask/asker.js';
import { flowRequest, type AskRequest } from '../ask/request.js';
import type { Attribution, AttributionMode, Attributor, Owner } from '../audit/attribution.js';
import type { Auditor } from '../audit/auditor.js';
import type { FlowEvent } from '../audit/events.js';
import type { DnsProxy } from '../dns/proxy.js';
import { canonicalIp, onFirstUse } from '../policy/address.js';
import { flowName, type FlowDecision, type Policy } from '../policy/policy.js';
import type { Proto } from '../policy/rule.js';
import { DEFAULT_MAX_FLOWS } from './defaults.js';
import { HOST_KEEPALIVE_MS, type ProxySpec } from './dialer.js';
import { isHostInternal, type HostLoopbackPort } from './host-loopback.js';

export interface SandboxAddresses {
  dns4: string;
  dns6: string;
  gateway4: string;
  gateway6: string;
}

export interface ForwarderOptions {
  policy: Policy;
  dns: DnsProxy;
  auditor: Auditor;
  sandbox: SandboxAddresses;
  /** Verify TLS SNI / HTTP Host / QUIC SNI on flows allowed only through a DNS pin. */
  sniCheck: boolean;
  /** Let checked plain-HTTP GET and HEAD requests carry a body. */
  httpAllowGetBody?: boolean;
  /** Host connect timeout, ms (default 10 s). */
  connectTimeoutMs?: number;
  /** TCP keepalive idle time of the relayed host sockets, ms (default HOST_KEEPALIVE_MS, 60 s). */
  keepAliveMs?: number;
  /** How long to wait for a full ClientHello / request head (default 5 s; on a port the rule names, counted from the client's first byte). */
  inspectTimeoutMs?: number;
  /** How many bytes to read at most looking for it (default 32 KiB). */
  inspectMaxBytes?: number;
  /** Ports of the host's loopback the sandbox may reach through the gateway address (--host-loopback). */
  hostLoopback?: HostLoopbackPort[];
  /** Allowed TCP flows leave through this proxy instead of a direct host socket (--upstream-proxy). */
  upstreamProxy?: ProxySpec;
  /** Ask mode (ask/asker.ts): asks about a flow no rule allows; the flow waits for the answer. */
  ask?: (request: AskRequest, allowedNow: () => boolean) => Promise<AskOutcome>;
  /** Names the sandbox process behind new flows and DNS queries (absent: --attribution off). */
  attributor?: Attributor;
  /** Which flows: 'all' (looked up at their start), or 'denied' (at their denial); default 'all'. */
  attribution?: Exclude<AttributionMode, 'off'>;
  /**
   * Refuse flows whose destination is loopback or unspecified before the policy is asked (default
   * true). Only unit tests that stand 127.0.0.1 in for a remote host turn it off.
   */
  refuseHostInternal?: boolean;
}

/** Where a new flow goes before the policy is asked. */
export type Route = 'dns' | 'resolver-closed' | 'gateway' | 'host-loopback' | 'host-internal' | 'policy';

/** A flow being relayed. */
export interface RelayedFlow {
  flow: FlowEvent;
  cut: (reason: string) => void;
  /** Bytes relayed so far: up from the sandbox, down to it. */
  bytes: () => { up: number; down: number };
}

export class ForwarderContext {
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly inspectTimeoutMs: number;
  readonly inspectMaxBytes: number;
  private nextFlowId = 1;
  private active = 0;
  /** Our addresses on the link (the resolver's, the gateway's), canonical; made on the first flow (IPv6: ip-address). */
  private readonly ownAddrs: () => { dns: Set<string>; gateway: Set<string> };
  private readonly hostLoopback: Set<string>;
  /** Closes every open flow and abandons every dial in progress (Egress.close). */
  readonly closers = new Set<() => void>();
  /** The flows being relayed, by flowId: how to cut one (a live deny rule, Egress.deny), and their bytes so far. */
  readonly relayed = new Map<number, RelayedFlow>();
  /** Set by Egress.close: host connections still being made are dropped when they complete. */
  closed = false;
  /** Who opened the recent flows, by 4-tuple (set at their start, read by `event`); bounded. */
  private readonly owners = new Map<string, Owner>();

  constructor(readonly o: ForwarderOptions) {
    this.connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
    this.keepAliveMs = o.keepAliveMs ?? HOST_KEEPALIVE_MS;
    this.inspectTimeoutMs = o.inspectTimeoutMs ?? 5_000;
    this.inspectMaxBytes = o.inspectMaxBytes ?? 32 * 1024;
    const canonical = (addrs: string[]) => new Set(addrs.map((a) => canonicalIp(a) ?? a));
    this.ownAddrs = onFirstUse(() => ({ dns: canonical([o.sandbox.dns4, o.sandbox.dns6]), gateway: canonical([o.sandbox.gateway4, o.sandbox.gateway6]) }));
    this.hostLoopback = new Set((o.hostLoopback ?? []).map((p) => `${p.proto}/${p.port}`));
  }

  /**
   * Port 53 anywhere goes to the DNS proxy (never forwarded); other ports on the resolver address are
   * closed. The gateway addresses lead to the host's loopback only on the ports --host-loopback
   * lists; other flows to them are refused, and so are flows to loopback or unspecified addresses,
   * whatever the policy says (see host-loopback.ts).
   */
  route(id: FlowId, proto: Proto): Route {
    const dst = canonicalIp(id.dstAddr) ?? id.dstAddr;
    if (id.dstPort === 53) return 'dns';
    const own = this.ownAddrs();
    if (own.dns.has(dst)) return 'resolver-closed';
    if (own.gateway.has(dst)) return this.hostLoopback.has(`${proto}/${id.dstPort}`) ? 'host-loopback' : 'gateway';
    if (this.o.refuseHostInternal !== false && isHostInternal(dst)) return 'host-internal';
    return 'policy';
  }

  /**
   * The sandbox process behind a flow that starts now (its first SYN or datagram): looked up at once
   * in 'all' mode, while its socket still exists, else at the flow's first denial (attribution.ts);
   * the flow's events carry it.
   */
  attribute(proto: Proto, id: FlowId): Owner {
    const attributor = this.o.attributor;
    if (!attributor) return () => undefined;
    let looked = false;
    let found: Attribution | null = null;
    const get = () => {
      if (!looked) [looked, found] = [true, attributor.lookup({ proto, src: id.srcAddr, srcPort: id.srcPort, dst: id.dstAddr, dstPort: id.dstPort })];
      return found;
    };
    const all = (this.o.attribution ?? 'all') === 'all';
    // A flow refused by its route is refused before its event is made, and the refusal closes the
    // sandbox's socket: look it up now, while it exists (decide() does the same for policy denials).
    const route = this.route(id, proto);
    if (all || route === 'resolver-closed' || route === 'gateway' || route === 'host-internal') get();
    const owner: Owner = (denied) => (all || denied ? get() : undefined);
    const key = tupleKey(proto, id);
    this.owners.delete(key);
    if (this.owners.size >= MAX_REMEMBERED_OWNERS) this.owners.delete(this.owners.keys().next().value!);
    this.owners.set(key, owner);
    return owner;
  }

  /**
   * The policy's decision about a new flow. In ask mode a flow denied only because no rule allows it is
   * asked about (a promise: the flow is held meanwhile): "once" allows this flow alone (via 'ask'),
   * "for this run" / "save" add a rule and the policy decides again; no, or no answer, denies it.
   */
  decide(proto: Proto, id: FlowId, by: Owner): FlowDecision | Promise<FlowDecision> {
    const q = { proto, addr: id.dstAddr, port: id.dstPort };
    const d = this.o.policy.decide(q);
    // Denied: the owner is looked up now, before the refusal closes the sandbox's socket.
    if (d.verdict === 'deny') by(true);
    if (d.verdict === 'allow' || !d.askable || !this.o.ask) return d;
    return this.o.ask(flowRequest(proto, d.addr, id.dstPort, d.names, by(true)), () => this.o.policy.decide(q).verdict === 'allow').then((outcome): FlowDecision => {
      if (!outcome.allowed) return { verdict: 'deny', addr: d.addr, names: d.names, reason: `${d.reason}; ${outcome.note}` };
      // Decided again: a rule added meanwhile ("for this run", or a deny rule, which still wins).
      const again = this.o.policy.decide(q);
      if (again.verdict === 'allow' || !again.askable) return again;
      return { verdict: 'allow', via: 'ask', addr: d.addr, names: d.names, explicitPort: true };
    });
  }

  /** The limit on open flows: the policy's (allowlist files, options), else DEFAULT_MAX_FLOWS. */
  get maxFlows(): number {
    return this.o.policy.maxFlows ?? DEFAULT_MAX_FLOWS;
  }

  /** Takes a slot for a new flow; false past the limit (a 'flows' cap hit). Release it with `release`. */
  acquire(): boolean {
    const max = this.maxFlows;
    if (this.active >= max) {
      this.o.auditor.limitHit('flows', max, 'open flows at the limit: new flow refused');
      return false;
    }
    this.active++;
    return true;
  }

  release(): void {
    this.active--;
  }

  flowId(): number {
    return this.nextFlowId++;
  }

  /** A flow event for `id`; `name` defaults to the decision's last name (names come in the order each was first pinned). */
  event(flowId: number, proto: Proto, id: FlowId, verdict: 'allow' | 'deny', reason: string, decision?: FlowDecision, name?: string | null): FlowEvent {
    const via = decision?.verdict === 'allow' ? decision.via : undefined;
    const names = decision?.names ?? [];
    return {
      flowId,
      proto,
      src: id.srcAddr,
      srcPort: id.srcPort,
      dst: canonicalIp(id.dstAddr) ?? id.dstAddr,
      port: id.dstPort,
      name: name !== undefined ? name : flowName(names),
      verdict,
      reason,
      via,
      ...withOwner(this.owners.get(tupleKey(proto, id))?.(verdict === 'deny')),
    };
  }

  deny(proto: Proto, id: FlowId, reason: string, decision?: FlowDecision): void {
    this.o.auditor.flow(this.event(this.flowId(), proto, id, 'deny', reason, decision));
  }
}

/** `{ by }` when the flow is attributed, else nothing (the field stays absent). */
const withOwner = (by: Attribution | null | undefined) => (by !== undefined ? { by } : {});

/** Flows whose owner is remembered for their later events (far more than are ever open at once). */
const MAX_REMEMBERED_OWNERS = 16_384;

const tupleKey = (proto: Proto, id: FlowId) => `${proto} ${id.srcAddr} ${id.srcPort} ${id.dstAddr} ${id.dstPort}`;

export function allowReason(d: FlowDecision & { verdict: 'allow' }): string {
  if (d.via === 'audit') return 'audit mode';
  if (d.via === 'ip-rule') return 'address rule';
  if (d.via === 'ask') return 'allowed once when asked';
  return 'allowed name';
}
