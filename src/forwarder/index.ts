// The Forwarder the stack calls for every flow the sandbox opens (netstack/stack/forwarding.ts).
import type { Forwarder, TcpForwarderRequest, UdpForwarderRequest } from '../../netstack/stack/forwarding.js';
import { ForwarderContext, type ForwarderOptions } from './context.js';
import { forwardTcp } from './tcp.js';
import { forwardUdp } from './udp.js';

export type { ForwarderOptions, SandboxAddresses } from './context.js';

export interface EgressForwarder extends Forwarder {
  /** Closes every open flow (host sockets and sandbox connections). */
  close(): void;
}

export function createForwarder(o: ForwarderOptions): EgressForwarder {
  const ctx = new ForwarderContext(o);
  return {
    tcp: (req: TcpForwarderRequest) => forwardTcp(ctx, req),
    udp: (req: UdpForwarderRequest) => forwardUdp(ctx, req),
    close() {
      ctx.closed = true;
      for (const close of [...ctx.closers]) close();
    },
  };
}
