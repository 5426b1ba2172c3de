// The egress path's resource limits, which a user can set (README "Reliability"; README and the
// messages call them caps): `--max-flows`, `--max-pending-dials`, `--max-udp-sessions`,
// `--max-dns-in-flight`, `--max-buffer` on the command line (src/cli/network-limit-flags.ts),
// `caps: { flows, pendingDials, udpSessions, dnsInFlight, bufferBytes }` in SandboxOptions. Each is checked here once,
// for both, and then handed to the part that enforces it:
//
//   flows        the forwarder (src/egress/forwarder/context.ts), through the policy's flow limit: the smaller
//                of this and an allowlist's first-line number applies
//   pendingDials the stack's TCP (maxPendingRequests; per destination 256, or this when smaller)
//   bufferBytes  the stack's TCP (maxTotalBufferBytes)
//   udpSessions  the stack's UDP (maxSessions)
//   dnsInFlight  the DNS proxy (maxInFlight)
//
// The other caps (out-of-order memory, reassembly memory) keep their defaults.
import { UDP_DEFAULTS, defaultTcpConfig, type TcpConfigInput, type UdpOptions } from '../../netstack/defaults.js';
import { TapboxError } from '../errors.js';
import { parseSize, type Size } from '../units.js';
import { wholeNumber } from './hardening.js';
import { DEFAULT_MAX_FLOWS } from '../egress/forwarder/defaults.js';

export interface NetworkLimitsOptions {
  /** Flows open at once, TCP and UDP, out and in (-p); DNS excluded (`--max-flows`, default 8192). */
  flows?: number;
  /** TCP connections waiting for their host dial (`--max-pending-dials`, default 1024; 256 per destination). */
  pendingDials?: number;
  /** UDP sessions (`--max-udp-sessions`, default 4096). */
  udpSessions?: number;
  /** DNS queries waiting for the upstream (`--max-dns-in-flight`, default 256). */
  dnsInFlight?: number;
  /** Bytes in all TCP buffers together: a number or a size like '64M' (`--max-buffer`, default 256M). */
  bufferBytes?: Size;
}

export interface ResolvedNetworkLimits {
  /** Undefined: the allowlists' limit, else DEFAULT_MAX_FLOWS. */
  flows?: number;
  pendingDials: number;
  udpSessions: number;
  dnsInFlight: number;
  bufferBytes: number;
}

export const DEFAULT_DNS_IN_FLIGHT = 256;
/** The smallest TCP buffer budget taken: below it, a few connections would starve every other one. */
const MIN_BUFFER_BYTES = 1 << 20;

export const FLAGS = {
  flows: '--max-flows',
  pendingDials: '--max-pending-dials',
  udpSessions: '--max-udp-sessions',
  dnsInFlight: '--max-dns-in-flight',
  bufferBytes: '--max-buffer',
} as const;

const DEFAULTS = {
  flows: DEFAULT_MAX_FLOWS,
  pendingDials: defaultTcpConfig.maxPendingRequests,
  udpSessions: UDP_DEFAULTS.maxSessions,
  dnsInFlight: DEFAULT_DNS_IN_FLIGHT,
} as const;

function count(value: unknown, key: keyof typeof DEFAULTS): number | undefined {
  return wholeNumber(value, FLAGS[key], 1, `leave it out for the default, ${DEFAULTS[key]}`);
}

/** Checks the caps and fills in the defaults; throws TapboxError EUSAGE naming the fix on a bad one. */
export function resolveNetworkLimits(o: NetworkLimitsOptions = {}): ResolvedNetworkLimits {
  let bufferBytes = defaultTcpConfig.maxTotalBufferBytes;
  if (o.bufferBytes !== undefined) {
    bufferBytes = parseSize(o.bufferBytes, FLAGS.bufferBytes);
    if (bufferBytes < MIN_BUFFER_BYTES) throw new TapboxError('EUSAGE', `${FLAGS.bufferBytes} ${String(o.bufferBytes)} is too small; give at least 1M (the default is 256M).`);
  }
  return {
    flows: count(o.flows, 'flows'),
    pendingDials: count(o.pendingDials, 'pendingDials') ?? DEFAULTS.pendingDials,
    udpSessions: count(o.udpSessions, 'udpSessions') ?? DEFAULTS.udpSessions,
    dnsInFlight: count(o.dnsInFlight, 'dnsInFlight') ?? DEFAULTS.dnsInFlight,
    bufferBytes,
  };
}

/** True when any cap was given (they only mean something under --net tap). */
export function hasNetworkLimits(o: NetworkLimitsOptions | undefined): boolean {
  return o !== undefined && Object.values(o).some((v) => v !== undefined);
}

/** The stack's TCP configuration for these caps. */
export function tcpLimitsConfig(c: ResolvedNetworkLimits): TcpConfigInput {
  return {
    maxPendingRequests: c.pendingDials,
    maxPendingPerDestination: Math.min(defaultTcpConfig.maxPendingPerDestination, c.pendingDials),
    maxTotalBufferBytes: c.bufferBytes,
  };
}

/** The stack's UDP options for these caps. */
export function udpLimitsOptions(c: ResolvedNetworkLimits): Partial<UdpOptions> {
  return { maxSessions: c.udpSessions };
}
