// The sandbox's network under --net tap: the egress policy (allowlists, DNS proxy, forwarder) is built
// before the launcher starts, so a bad rule stops everything; the stack attaches to the TAP fd when the
// launcher hands it over.
import type { EventEmitter } from 'node:events';
import { createEgress, type Egress, type EgressSummary } from './egress.js';
import { SANDBOX_NET, type ResolvedOptions } from './options.js';
import { Stack } from '../netstack/stack/stack.js';
import { TapEndpoint } from '../netstack/link/tap.js';
import { SnifferEndpoint } from '../netstack/link/sniffer.js';
import { FaultyEndpoint } from '../netstack/link/faults.js';
import { createTcp, type TcpProtocol } from '../netstack/transport/tcp/index.js';
import type { UdpProtocol } from '../netstack/transport/udp/index.js';
import { realClock } from '../netstack/stack/transport.js';
import type { LinkEndpoint } from '../netstack/link/endpoint.js';

export interface Network {
  egress: Egress;
  attach(tapFd: number): void;
  /** The stack's transports once attached: published ports (-p) dial the sandbox through them. */
  readonly tcp: TcpProtocol | null;
  readonly udp: UdpProtocol | null;
  /** Stops the stack and the egress; resolves with the egress summary. */
  close(): Promise<EgressSummary>;
}

export async function startNetwork(o: ResolvedOptions, events: EventEmitter): Promise<Network> {
  const egress = await createEgress({
    allowFiles: o.allowFiles,
    allow: o.allow,
    dnsUpstream: o.dnsUpstream,
    sniCheck: o.sniCheck,
    audit: o.audit,
    learn: o.learn,
    report: o.report,
    logLevel: o.logLevel,
    logFormat: o.logFormat,
    logFile: o.logFile,
    summary: o.summary,
    sandbox: { dns4: SANDBOX_NET.dns4, dns6: SANDBOX_NET.dns6, gateway4: SANDBOX_NET.gateway4, gateway6: SANDBOX_NET.gateway6 },
  });
  for (const name of ['dns', 'flow', 'deny', 'flowEnd'] as const) egress.on(name, (e: unknown) => events.emit(name, e));
  let link: LinkEndpoint | null = null;
  let stack: Stack | null = null;
  let tcp: TcpProtocol | null = null;
  return {
    egress,
    get tcp() {
      return tcp;
    },
    get udp() {
      return stack?.udp ?? null;
    },
    attach(tapFd) {
      const tap = new TapEndpoint(tapFd, { mtu: o.mtu });
      const faulty = o.linkFaults ? new FaultyEndpoint(tap, o.linkFaults) : tap;
      link = o.pcap ? new SnifferEndpoint(faulty, o.pcap) : faulty;
      stack = new Stack({
        link,
        clock: realClock,
        forwarder: egress.forwarder,
        mtu: o.mtu,
        sandboxMac: SANDBOX_NET.sandboxMac,
        gateway4: SANDBOX_NET.gateway4,
        dns4: SANDBOX_NET.dns4,
        gateway6: SANDBOX_NET.gateway6,
        dns6: SANDBOX_NET.dns6,
      });
      tcp = createTcp({ clock: realClock, sender: stack, forwarder: egress.forwarder });
      stack.registerTransport(tcp);
    },
    async close() {
      stack?.close();
      link?.close();
      return egress.close();
    },
  };
}
