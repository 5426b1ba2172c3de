// IP addresses and subnets as numbers, so one engine matches IPv4 and IPv6. Parsing is ip-address's;
// an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries.
//
// ip-address is loaded on first use, not with this module: options checking imports this module on every
// run, and loading ip-address costs more than the rest of it (start-up, docs/architecture.md).
import { createRequire } from 'node:module';
import type * as IpAddress from 'ip-address';

const lib = onFirstUse(() => createRequire(import.meta.url)('ip-address') as typeof IpAddress);

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

/**
 * A value made from addresses on its first use, for module-level constants and the like: parsing an
 * IPv6 address loads ip-address, which a run that checks no address never needs (start-up).
 */
export function onFirstUse<T>(make: () => T): () => T {
  let made: { value: T } | undefined;
  return () => (made ??= { value: make() }).value;
}

/** Parses a literal address (no prefix); null when `text` is not one. */
export function parseIp(text: string): IpAddr | null {
  const v4 = parseDottedQuad(text);
  if (v4 !== null) return { family: 4, value: BigInt(v4) };
  const { Address4, Address6 } = lib();
  if (Address4.isValid(text) && !text.includes('/')) return { family: 4, value: new Address4(text).bigInt() };
  if (Address6.isValid(text) && !text.includes('/') && !text.includes('%')) {
    const value = new Address6(text).bigInt();
    if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
    return { family: 6, value };
  }
  return null;
}

/** An address's bytes in network order (4 or 16). */
export function ipBytes(ip: IpAddr): Buffer {
  const bytes = ip.family === 4 ? 4 : 16;
  return Buffer.from(ip.value.toString(16).padStart(bytes * 2, '0'), 'hex');
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
  if (ip.family === 4) {
    const v = Number(ip.value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  return lib().Address6.fromBigInt(ip.value).correctForm();
}

/**
 * The common case, on every new flow: "a.b.c.d" in canonical decimal (what the stack itself formats).
 * Anything else (leading zeros, other forms) is left to ip-address; null here means "not this form".
 */
function parseDottedQuad(text: string): number | null {
  let value = 0;
  let octet = -1;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (octet < 0 || ++dots > 3) return null;
      value = value * 256 + octet;
      octet = -1;
    } else if (c >= 48 && c <= 57) {
      if (octet === 0) return null; // a leading zero
      octet = octet < 0 ? c - 48 : octet * 10 + (c - 48);
      if (octet > 255) return null;
    } else {
      return null;
    }
  }
  if (dots !== 3 || octet < 0) return null;
  return value * 256 + octet;
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
