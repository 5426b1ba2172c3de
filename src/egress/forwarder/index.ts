// The Forwarder the stack calls for every flow the sandbox opens (netstack/forwarding.ts).
import type { Forwarder, TcpForwarderRequest, UdpForwarderRequest } from '../../../netstack/index.js';
import { ForwarderContext, type ForwarderOptions, type RelayedFlow } from './context.js';
import { forwardTcp } from './tcp.js';
import { forwardUdp } from './udp.js';
import { inboundFlows, type InboundFlows } from './inbound.js';

export type { ForwarderOptions, SandboxAddresses } from './context.js';

export interface EgressForwarder extends Forwarder {
  /** Counts published connections (-p) under the flow cap and in the audit (inbound.ts). */
  inbound: InboundFlows;
  /** Closes every open flow (host sockets and sandbox connections). */
  close(): void;
  /** The flows being relayed now, each with a way to cut it (reset TCP, ICMP-refuse UDP). */
  relayedFlows(): RelayedFlow[];
}

export function createForwarder(o: ForwarderOptions): EgressForwarder {
  const ctx = new ForwarderContext(o);
  return {
    tcp: (req: TcpForwarderRequest) => forwardTcp(ctx, req),
    udp: (req: UdpForwarderRequest) => forwardUdp(ctx, req),
    inbound: inboundFlows(ctx),
    relayedFlows: () => [...ctx.relayed.values()],
    close() {
      ctx.closed = true;
      for (const close of [...ctx.closers]) close();
    },
  };
}
