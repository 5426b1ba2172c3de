// Published ports (-p, src/egress/publish.ts) as flows: each connection (TCP) or session (UDP) carried into the
// sandbox takes a slot under the open-flow cap like an outbound flow, and is audited the same way: a
// 'flow' event with `direction: 'inbound'` (or a denied one at the cap, with a 'flows' limit hit) and
// a 'flowEnd'. So the egress summary and report (verdict 'inbound'), --progress and the library's
// events count them; the learned allowlist does not (nothing went out).
//
// Fields of an inbound flow: src/srcPort the host client, dst/port the sandbox's address and port;
// bytesUp what the sandbox sent (to the client), bytesDown what it received, as on tap0.
import type { FlowEvent } from '../audit/events.js';
import type { Proto } from '../policy/rule.js';
import type { ForwarderContext } from './context.js';

export interface Endpoint {
  addr: string;
  port: number;
}

export interface InboundFlow {
  /** Releases the slot and audits the end; once only. */
  end(bytesUp: number, bytesDown: number, error?: string): void;
}

export interface InboundFlows {
  /** Admits a flow from the host's `from` to the sandbox's `to`; null when the flow cap refused it. */
  open(proto: Proto, from: Endpoint, to: Endpoint, reason: string): InboundFlow | null;
}

export function inboundFlows(ctx: ForwarderContext): InboundFlows {
  return {
    open(proto, from, to, reason) {
      const event = (verdict: 'allow' | 'deny', why: string): FlowEvent => ({
        flowId: ctx.flowId(),
        proto,
        src: from.addr,
        srcPort: from.port,
        dst: to.addr,
        port: to.port,
        name: null,
        verdict,
        reason: why,
        direction: 'inbound',
      });
      if (ctx.closed || !ctx.acquire()) {
        ctx.o.auditor.flow(event('deny', ctx.closed ? 'tapbox is shutting down' : `already ${ctx.maxFlows} flows open (the connection limit)`));
        return null;
      }
      const flow = event('allow', reason);
      ctx.o.auditor.flow(flow);
      const started = Date.now();
      let ended = false;
      return {
        end(bytesUp, bytesDown, error) {
          if (ended) return;
          ended = true;
          ctx.release();
          ctx.o.auditor.flowEnd({
            flowId: flow.flowId,
            proto,
            dst: to.addr,
            port: to.port,
            name: null,
            bytesUp,
            bytesDown,
            durationMs: Date.now() - started,
            error,
            direction: 'inbound',
          });
        },
      };
    },
  };
}
