// ARP (RFC 826): answer requests for the addresses the stack owns (gateway and DNS) with our MAC, and
// for the other hosts of the sandbox's on-link prefix (neighbors.ts), so that a connect to 10.0.2.50
// reaches the Forwarder at once instead of waiting for the sandbox's ARP to fail. Never answered for
// an on-link address: ARP probes (sender 0.0.0.0), gratuitous ARP (sender == target), the sandbox's own
// addresses. The sender address of every request (the target of a probe) is learned as one of the
// sandbox's; its MAC is learned by the stack from the source of every frame, ARP included.
import { ARP_LENGTH, ArpOp, ArpView, emitArp, validateArp } from '../header/arp.js';
import { emitEthernet, ETHERNET_HEADER_LENGTH, EtherType } from '../header/ethernet.js';
import type { NetworkHost } from './host.js';
import type { OnLinkNeighbors } from './neighbors.js';

export class ArpResponder {
  private readonly arp = new ArpView();
  /** The one reply frame, reused. */
  private readonly reply = Buffer.alloc(ETHERNET_HEADER_LENGTH + ARP_LENGTH);

  constructor(
    private readonly host: NetworkHost,
    private readonly mac: Uint8Array,
    private readonly neighbors: OnLinkNeighbors,
  ) {}

  /** Handles the ARP packet at `off` in `frame`. */
  handle(frame: Buffer, off: number): void {
    const reason = validateArp(frame, off, frame.length - off);
    if (reason) return this.host.drop(reason);
    const arp = this.arp.of(frame, off);
    if (arp.op !== ArpOp.Request) return;
    const sender = arp.senderIpOffset;
    const target = arp.targetIpOffset;
    // The sender's address is the sandbox's; so is the target of a probe (RFC 5227: it is about to take it).
    this.neighbors.learn(4, frame, isZero4(frame, sender) ? target : sender);
    if (!this.host.isOwnAddress(4, frame, target) && (isZero4(frame, sender) || equal4(frame, sender, target) || !this.neighbors.answers(4, frame, target))) return;
    const senderMac = frame.subarray(arp.senderMacOffset, arp.senderMacOffset + 6);
    emitEthernet(this.reply, 0, senderMac, this.mac, EtherType.ARP);
    emitArp(
      this.reply,
      ETHERNET_HEADER_LENGTH,
      ArpOp.Reply,
      this.mac,
      frame.subarray(arp.targetIpOffset, arp.targetIpOffset + 4),
      senderMac,
      frame.subarray(arp.senderIpOffset, arp.senderIpOffset + 4),
    );
    this.host.writeFrame(this.reply);
  }
}

function isZero4(buf: Uint8Array, off: number): boolean {
  return buf[off] === 0 && buf[off + 1] === 0 && buf[off + 2] === 0 && buf[off + 3] === 0;
}

function equal4(buf: Uint8Array, a: number, b: number): boolean {
  return buf[a] === buf[b] && buf[a + 1] === buf[b + 1] && buf[a + 2] === buf[b + 2] && buf[a + 3] === buf[b + 3];
}
