// The sandbox's network under --net tap: the egress policy (allowlists, DNS proxy, forwarder) is built
// before the launcher starts, so a bad rule stops everything; the stack attaches to the TAP fd when the
// launcher hands it over.
import type { Usage } from './cgroup.js';
import type { EventEmitter } from 'node:events';
import { createEgress, type Egress, type EgressSummary } from '../egress/index.js';
import { callbackPrompter } from '../egress/ask/asker.js';
import { terminalPrompter } from './terminal-prompt.js';
import { SANDBOX_NET, type ResolvedOptions } from '../options/options.js';
import { FaultyEndpoint, SnifferEndpoint, Stack, TapEndpoint, createTcp, realClock, type LinkEndpoint, type TcpProtocol } from '../../netstack/index.js';
import { startStats, statsIntervalFromEnv } from '../egress/audit/stats.js';
import { Publisher } from '../egress/publish.js';
import { requireNative } from '../../native/addon/index.js';
import { tcpLimitsConfig, udpLimitsOptions } from '../options/network-limits.js';

export interface Network {
  egress: Egress;
  attach(tapFd: number): void;
  /** Bytes of the frames the sandbox sent on tap0 (up) and was sent (down), so far; 0 before attach. */
  traffic(): { bytesUp: number; bytesDown: number };
  /** Ends the stack and the egress; `usage` (from the sandbox's cgroup) goes into the report. Resolves with the egress summary. */
  close(usage?: Usage | null): Promise<EgressSummary>;
}

/** `launcherPid`: the launcher's pid once it runs (attribution finds the sandbox's processes from it). */
export async function startNetwork(o: ResolvedOptions, events: EventEmitter, launcherPid: () => number | undefined = () => undefined): Promise<Network> {
  const egress = await createEgress({
    ...o,
    launcherPid: o.attribution !== 'off' ? launcherPid : undefined,
    attribution: o.attribution !== 'off' ? o.attribution : undefined,
    ask: o.ask
      ? { prompt: o.onRequest ? callbackPrompter(o.onRequest) : terminalPrompter(o.askTimeout * 1000, o.askSave), timeoutMs: o.askTimeout * 1000, saveFile: o.askSave }
      : undefined,
    sandbox: { dns4: SANDBOX_NET.dns4, dns6: SANDBOX_NET.dns6, gateway4: SANDBOX_NET.gateway4, gateway6: SANDBOX_NET.gateway6 },
  });
  for (const name of ['dns', 'flow', 'deny', 'flowEnd', 'limit', 'policy', 'ask'] as const) egress.on(name, (e: unknown) => events.emit(name, e));
  let link: LinkEndpoint | null = null;
  let stack: Stack | null = null;
  let tcp: TcpProtocol | null = null;
  let tapEndpoint: TapEndpoint | null = null;
  // Published ports (-p) listen before the sandbox starts: a busy port stops the run here.
  let publisher: Publisher | null = null;
  if (o.publish.length) {
    const target = {
      gateway4: SANDBOX_NET.gateway4,
      gateway6: SANDBOX_NET.gateway6,
      sandbox4: SANDBOX_NET.ip4.split('/')[0]!,
      sandbox6: SANDBOX_NET.ip6.split('/')[0]!,
    };
    try {
      publisher = await Publisher.start(o.publish, target, egress.logger, { flows: egress.inbound });
    } catch (e) {
      await egress.close();
      throw e;
    }
  }
  // TAPBOX_STATS_MS: the supervisor's RSS, fds, event-loop delay and the stack's gauges in the log.
  const statsMs = statsIntervalFromEnv();
  const stopStats = statsMs
    ? startStats(egress.logger, statsMs, () =>
        stack && tcp
          ? {
              tcpConnections: tcp.connectionCount,
              tcpPending: tcp.pendingCount,
              tcpBufferedBytes: tcp.budget.used,
              udpSessions: stack.udp.sessionCount,
              reassemblyBytes: stack.ipv4.reassembler.bytesInUse + stack.ipv6.reassembler.bytesInUse,
              drops: { ...stack.counters.drops },
              tapDroppedOut: tapEndpoint?.stats.droppedOut ?? 0,
              udpRelayedIn: tapEndpoint?.stats.relayedIn ?? 0,
              udpRelayedOut: tapEndpoint?.stats.relayedOut ?? 0,
            }
          : null,
      )
    : null;
  return {
    egress,
    traffic() {
      const s = tapEndpoint?.stats;
      return { bytesUp: s?.bytesIn ?? 0, bytesDown: s?.bytesOut ?? 0 };
    },
    attach(tapFd) {
      // The launcher asks for the virtio-net header (useVnetHdr) and falls back to a plain TAP where
      // the kernel refuses it: the device says which it got.
      const tap = new TapEndpoint(tapFd, { mtu: o.mtu, vnetHdr: requireNative().tapHasVnetHdr(tapFd) });
      tapEndpoint = tap;
      const faulty = o.linkFaults ? new FaultyEndpoint(tap, o.linkFaults) : tap;
      link = o.pcap ? new SnifferEndpoint(faulty, o.pcap) : faulty;
      stack = new Stack({
        link,
        clock: realClock,
        forwarder: egress.forwarder,
        mtu: o.mtu,
        sandboxMac: SANDBOX_NET.sandboxMac,
        sandbox4: SANDBOX_NET.ip4,
        sandbox6: SANDBOX_NET.ip6,
        gateway4: SANDBOX_NET.gateway4,
        dns4: SANDBOX_NET.dns4,
        gateway6: SANDBOX_NET.gateway6,
        dns6: SANDBOX_NET.dns6,
        udp: udpLimitsOptions(o.caps),
        // Cap hits (UDP sessions, reassembly memory; below, TCP's) become rate-limited 'limit' audit events.
        onLimit: egress.auditor.limitHit,
      });
      tcp = createTcp({ clock: realClock, sender: stack, forwarder: egress.forwarder, onLimit: egress.auditor.limitHit }, tcpLimitsConfig(o.caps));
      stack.registerTransport(tcp);
      publisher?.attach({ tcp, udp: stack.udp });
    },
    async close(usage) {
      publisher?.close();
      stopStats?.();
      stack?.close();
      link?.close();
      return egress.close({ usage: usage ?? null });
    },
  };
}
