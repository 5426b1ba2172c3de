// On-link neighbours: which addresses of the sandbox's own prefixes the stack answers ARP requests and
// neighbour solicitations for, besides its own (gateway, DNS, gateway link-local).
//
// Theory of operation
//
// The sandbox's kernel resolves an on-link destination (10.0.2.50, fd00::50) with ARP / NDP before it
// sends a single packet there; with nobody answering, connect() hangs for ~3 s and then fails with
// "No route to host", and the policy never gets a say. So the stack answers for every address of the
// sandbox's on-link prefixes (taken from the stack's config: sandbox4 = "10.0.2.100/24", sandbox6 =
// "fd00::100/64") with its own MAC, like a proxy-ARP router. The flow then reaches the promiscuous
// transports and the Forwarder, which refuses it at once (RST / ICMP admin-prohibited, audited) or
// forwards it if a rule allows it.
//
// Never answered, because the address is, or may be, the sandbox's own:
// - the sandbox's configured addresses, and every on-link or link-local address it has been seen using
//   or claiming (IP sources, ARP senders, the targets of its ARP probes and duplicate address detection
//   probes): learned, at most MAX_LEARNED per family; past that the family is no longer answered at
//   all (we would no longer know which addresses are its own);
// - IPv6 interface identifiers that are the modified EUI-64 of the sandbox's MAC (configured or learned),
//   in either prefix, the identifier its kernel derives by default;
// - the IPv4 network and broadcast addresses of the prefix (not hosts).
// The callers (arp.ts, ndp.ts) also never answer for these addresses a duplicate address detection
// probe (NS from ::), an ARP probe (sender 0.0.0.0) or a gratuitous ARP (sender == target).
//
// Link-local (fe80::/64) targets other than ours: answered, but only once the sandbox's own link-local
// address is known, from its duplicate address detection probe (~1 s after tap0 comes up) or a packet
// it sent from it. Its kernel may derive that address opaquely (addr_gen_mode stable_privacy / random),
// so until then we cannot tell which fe80:: address is its own, and answer none (a connect to
// fe80::x%tap0 that early is answered on the kernel's next solicitation, a second later); from then on
// it gets the policy's refusal at once instead of a timeout.
import type { Family } from '../tcpip.js';
import { parseIpv4 } from '../header/ipv4.js';
import { parseIpv6 } from '../header/ipv6.js';

/** Sandbox addresses learned per family before we stop answering for that family. */
export const MAX_LEARNED = 8;

/** A small fixed set of addresses, preallocated: learning allocates nothing. */
class AddressSet {
  private readonly addrs: Uint8Array[];
  private count = 0;
  /** More addresses were seen than fit: the set no longer knows all of the sandbox's addresses. */
  overflowed = false;

  constructor(private readonly length: number) {
    this.addrs = Array.from({ length: MAX_LEARNED }, () => new Uint8Array(length));
  }

  has(buf: Uint8Array, off: number): boolean {
    for (let i = 0; i < this.count; i++) if (equalAt(buf, off, this.addrs[i]!)) return true;
    return false;
  }

  add(buf: Uint8Array, off: number): void {
    if (this.overflowed || this.has(buf, off)) return;
    if (this.count === MAX_LEARNED) {
      this.overflowed = true;
      return;
    }
    const slot = this.addrs[this.count++]!;
    for (let i = 0; i < this.length; i++) slot[i] = buf[off + i]!;
  }
}

interface Prefix {
  addr: Uint8Array;
  length: number;
}

export class OnLinkNeighbors {
  private readonly prefix4: Prefix;
  private readonly prefix6: Prefix;
  private readonly sandbox4 = new AddressSet(4);
  private readonly sandbox6 = new AddressSet(16);
  private linkLocalSeen = false;

  /**
   * `sandbox4`/`sandbox6`: the sandbox's addresses with their prefix length ("10.0.2.100/24");
   * without one, the prefix is the address alone and no other address is answered.
   * `sandboxMacs`: the sandbox's MACs (the configured one, and the stack's learned one, which it updates in place).
   */
  constructor(
    sandbox4: string,
    sandbox6: string,
    private readonly sandboxMacs: readonly Uint8Array[],
  ) {
    this.prefix4 = parsePrefix(sandbox4, 4);
    this.prefix6 = parsePrefix(sandbox6, 6);
    this.sandbox4.add(this.prefix4.addr, 0);
    this.sandbox6.add(this.prefix6.addr, 0);
  }

  /** An address the sandbox used or claimed (an IP source, an ARP sender, a probe's target): never answered for afterwards. */
  learn(family: Family, buf: Uint8Array, off: number): void {
    if (family === 4) {
      if (inPrefix(buf, off, this.prefix4)) this.sandbox4.add(buf, off);
    } else if (isLinkLocal(buf, off)) {
      this.sandbox6.add(buf, off);
      this.linkLocalSeen = true;
    } else if (inPrefix(buf, off, this.prefix6)) {
      this.sandbox6.add(buf, off);
    }
  }

  /** Whether the stack answers ARP / NDP for the on-link address at `off` in `buf` (not one of its own). */
  answers(family: Family, buf: Uint8Array, off: number): boolean {
    return family === 4 ? this.answers4(buf, off) : this.answers6(buf, off);
  }

  private answers4(buf: Uint8Array, off: number): boolean {
    const prefix = this.prefix4;
    if (!inPrefix(buf, off, prefix) || this.sandbox4.overflowed || this.sandbox4.has(buf, off)) return false;
    if (prefix.length > 30) return true;
    // The host part all zeros (the network) or all ones (the broadcast address) names no host.
    const host = ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
    const hostMask = 0xffffffff >>> prefix.length;
    return (host & hostMask) !== 0 && (host & hostMask) !== hostMask;
  }

  private answers6(buf: Uint8Array, off: number): boolean {
    if (isLinkLocal(buf, off)) {
      if (!this.linkLocalSeen) return false;
    } else if (!inPrefix(buf, off, this.prefix6)) {
      return false;
    }
    if (this.sandbox6.overflowed || this.sandbox6.has(buf, off)) return false;
    for (const mac of this.sandboxMacs) if (isEui64Of(buf, off, mac)) return false;
    return true;
  }
}

function parsePrefix(text: string, family: Family): Prefix {
  const bits = family === 4 ? 32 : 128;
  const [address, length, extra] = text.split('/');
  if (extra !== undefined || (length !== undefined && !/^\d{1,3}$/.test(length))) throw new Error(`not an address/prefix: ${text}`);
  const prefixLength = length === undefined ? bits : Number(length);
  if (prefixLength < 1 || prefixLength > bits) throw new Error(`prefix length out of range: ${text}`);
  return { addr: family === 4 ? parseIpv4(address!) : parseIpv6(address!), length: prefixLength };
}

function inPrefix(buf: Uint8Array, off: number, prefix: Prefix): boolean {
  const whole = prefix.length >> 3;
  for (let i = 0; i < whole; i++) if (buf[off + i] !== prefix.addr[i]) return false;
  const rest = prefix.length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (buf[off + whole]! & mask) === (prefix.addr[whole]! & mask);
}

/** fe80::/64 (RFC 4291 2.5.6: the 54 bits after fe80/10 are zero). */
function isLinkLocal(buf: Uint8Array, off: number): boolean {
  if (buf[off] !== 0xfe || buf[off + 1] !== 0x80) return false;
  for (let i = 2; i < 8; i++) if (buf[off + i] !== 0) return false;
  return true;
}

/** Whether the interface identifier of the IPv6 address at `off` is the modified EUI-64 of `mac`. */
function isEui64Of(buf: Uint8Array, off: number, mac: Uint8Array): boolean {
  return (
    buf[off + 8] === (mac[0]! ^ 0x02) &&
    buf[off + 9] === mac[1] &&
    buf[off + 10] === mac[2] &&
    buf[off + 11] === 0xff &&
    buf[off + 12] === 0xfe &&
    buf[off + 13] === mac[3] &&
    buf[off + 14] === mac[4] &&
    buf[off + 15] === mac[5]
  );
}

function equalAt(buf: Uint8Array, off: number, addr: Uint8Array): boolean {
  for (let i = 0; i < addr.length; i++) if (buf[off + i] !== addr[i]) return false;
  return true;
}
