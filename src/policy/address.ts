// IP addresses and subnets as numbers, so one engine matches IPv4 and IPv6. Parsing is ip-address's;
// an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries.
import { Address4, Address6 } from 'ip-address';

export interface IpAddr {
  family: 4 | 6;
  value: bigint;
}

export interface Subnet {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;

/** Parses a literal address (no prefix); null when `text` is not one. */
export function parseIp(text: string): IpAddr | null {
  if (Address4.isValid(text) && !text.includes('/')) return { family: 4, value: new Address4(text).bigInt() };
  if (Address6.isValid(text) && !text.includes('/') && !text.includes('%')) {
    const value = new Address6(text).bigInt();
    if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
    return { family: 6, value };
  }
  return null;
}

/** Parses `addr` or `addr/prefix`; null when `text` is neither. Host bits are cleared. */
export function parseSubnet(text: string): Subnet | null {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const bits = BITS[ip.family];
  let prefix: number = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) return null;
    prefix = Number(p);
  }
  return { family: ip.family, network: ip.value & mask(ip.family, prefix), prefix };
}

export function subnetContains(s: Subnet, ip: IpAddr): boolean {
  return s.family === ip.family && (ip.value & mask(s.family, s.prefix)) === s.network;
}

/** The canonical text of an address ("10.0.0.1", "2001:db8::1"), used as a map key and in logs. */
export function formatIp(ip: IpAddr): string {
  return ip.family === 4 ? Address4.fromBigInt(ip.value).correctForm() : Address6.fromBigInt(ip.value).correctForm();
}

/** Canonical text of an address given as text; null when it is not an address. */
export function canonicalIp(text: string): string | null {
  const ip = parseIp(text);
  return ip ? formatIp(ip) : null;
}

function mask(family: 4 | 6, prefix: number): bigint {
  const bits = BigInt(BITS[family]);
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n);
}
