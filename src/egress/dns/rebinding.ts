// DNS rebinding: an allowed name whose answer points inside (loopback, the LAN, the cloud metadata
// service, the host itself) must not open that address. The proxy drops such records; only an explicit
// IP/subnet rule opens these addresses.
import os from 'node:os';
import { formatIp, onFirstUse, parseIp, parseSubnet, subnetContains, type IpAddr, type Subnet } from '../policy/address.js';

const INTERNAL_SUBNETS = onFirstUse((): Subnet[] =>
  [
    '0.0.0.0/8', // "this network", unspecified
    '10.0.0.0/8', // RFC 1918
    '100.64.0.0/10', // CGNAT
    '127.0.0.0/8', // loopback
    '169.254.0.0/16', // link-local, 169.254.169.254 metadata included
    '172.16.0.0/12', // RFC 1918
    '192.168.0.0/16', // RFC 1918
    '224.0.0.0/4', // multicast
    '240.0.0.0/4', // reserved, broadcast included
    '::/128', // unspecified
    '::1/128', // loopback
    'fc00::/7', // ULA, fd00:ec2::254 metadata included
    'fe80::/10', // link-local
    'ff00::/8', // multicast
  ].map((s) => parseSubnet(s)!),
);

const NAT64 = onFirstUse(() => parseSubnet('64:ff9b::/96')!);

// The benchmarking and documentation ranges are not internal: test hosts (ours included) live there,
// and fake-IP DNS proxies hand them out as the way out. The host's own addresses in them still are.
const NEVER_INTERNAL = onFirstUse(() => ['198.18.0.0/15', '2001:db8::/32'].map((s) => parseSubnet(s)!));

/** The host's own addresses, which a sandbox must not reach through a name. */
export function hostAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      const ip = parseIp(a.address.replace(/%.*$/, ''));
      if (ip) out.add(formatIp(ip));
    }
  }
  return out;
}

/** A set of addresses: the host's own (a Set, or liveHostAddresses()). */
export interface AddressSet {
  has(addr: string): boolean;
}

/**
 * The host's own addresses, kept current: interfaces come and go during a long run (a container
 * bridge, a VPN), so the list is read again when it is more than `maxAgeMs` old.
 */
export function liveHostAddresses(maxAgeMs = 1000): AddressSet {
  // Read on the first question, not now: they include IPv6 addresses, whose parsing loads ip-address.
  let addrs = new Set<string>();
  let readAt = -Infinity;
  return {
    has(addr: string): boolean {
      if (Date.now() - readAt > maxAgeMs) {
        addrs = hostAddresses();
        readAt = Date.now();
      }
      return addrs.has(addr);
    },
  };
}

/** True when a DNS answer must not open `addr`; `host`: the host's own addresses (hostAddresses()). */
export function isRebindingTarget(addr: string, host: AddressSet): boolean {
  const ip = parseIp(addr);
  if (!ip) return true;
  // A NAT64 address reaches the IPv4 address embedded in its last 32 bits.
  const target: IpAddr = subnetContains(NAT64(), ip) ? { family: 4, value: ip.value & 0xffffffffn } : ip;
  // The host's own addresses first: whatever range they are in, a name never opens them.
  if (host.has(formatIp(ip)) || host.has(formatIp(target))) return true;
  if (NEVER_INTERNAL().some((s) => subnetContains(s, target))) return false;
  return INTERNAL_SUBNETS().some((s) => subnetContains(s, target));
}
