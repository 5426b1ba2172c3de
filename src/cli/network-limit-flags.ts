// The --max-* flags: the egress path's resource limits (src/options/network-limits.ts) on the command line.
import { Option } from 'commander';
import { FLAGS, hasNetworkLimits, type NetworkLimitsOptions } from '../options/network-limits.js';
import { integer } from './flags.js';

export interface NetworkLimitFlags {
  maxFlows?: number;
  maxPendingDials?: number;
  maxUdpSessions?: number;
  maxDnsInFlight?: number;
  maxBuffer?: string;
}

/** The --max-* flags, for the program to add. */
export function networkLimitFlags(): Option[] {
  return [
    new Option('--max-flows <n>', 'at most N flows open at once, in and out (default 8192, or an allowlist\'s first-line number if smaller)').argParser(integer(FLAGS.flows, 100)),
    new Option('--max-pending-dials <n>', 'at most N TCP connections waiting for their host connection (default 1024; 256 per destination)').argParser(integer(FLAGS.pendingDials, 100)),
    new Option('--max-udp-sessions <n>', 'at most N UDP sessions (default 4096)').argParser(integer(FLAGS.udpSessions, 100)),
    new Option('--max-dns-in-flight <n>', 'at most N DNS queries waiting for the upstream; more are REFUSED (default 256)').argParser(integer(FLAGS.dnsInFlight, 100)),
    new Option('--max-buffer <size>', 'at most SIZE in all TCP buffers together, e.g. 64M (default 256M)'),
  ];
}

export function networkLimitsFromFlags(f: NetworkLimitFlags): NetworkLimitsOptions | undefined {
  const caps: NetworkLimitsOptions = { flows: f.maxFlows, pendingDials: f.maxPendingDials, udpSessions: f.maxUdpSessions, dnsInFlight: f.maxDnsInFlight, bufferBytes: f.maxBuffer };
  return hasNetworkLimits(caps) ? caps : undefined;
}
