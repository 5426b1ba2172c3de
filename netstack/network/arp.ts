// ARP (RFC 826): answer requests for the addresses the stack owns (gateway and DNS) with our MAC.
// Requests for any other address get no answer; the sandbox's MAC is learned by the stack from the
// source of every frame, ARP included.
import { ARP_LENGTH, ArpOp, ArpView, emitArp, validateArp } from '../header/arp.js';
import { emitEthernet, ETHERNET_HEADER_LENGTH, EtherType } from '../header/ethernet.js';
import type { Family } from '../stack/forwarding.js';

export interface ArpHost {
  drop(reason: string): void;
  isOwnAddress(family: Family, buf: Uint8Array, off: number): boolean;
  writeFrame(frame: Uint8Array): void;
}

export class ArpResponder {
  private readonly arp = new ArpView();
  /** The one reply frame, reused. */
  private readonly reply = Buffer.alloc(ETHERNET_HEADER_LENGTH + ARP_LENGTH);

  constructor(
    private readonly host: ArpHost,
    private readonly mac: Uint8Array,
  ) {}

  /** Handles the ARP packet at `off` in `frame`. */
  handle(frame: Buffer, off: number): void {
    const reason = validateArp(frame, off, frame.length - off);
    if (reason) return this.host.drop(reason);
    const arp = this.arp.of(frame, off);
    if (arp.op !== ArpOp.Request || !this.host.isOwnAddress(4, frame, arp.targetIpOffset)) return;
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
