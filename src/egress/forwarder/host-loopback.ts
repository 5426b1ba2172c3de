// The host's loopback, as the sandbox may (or may not) see it. By default the sandbox never reaches a
// service on the host's 127.0.0.1 / ::1: the gateway addresses lead nowhere, and a flow whose
// destination is itself loopback or unspecified (0.0.0.0 or :: mean "this host" to connect()) is
// refused before the policy is asked, so neither a rule (`--allow 0.0.0.0/0`, `--audit`) nor a DNS
// answer can open it. `--host-loopback PORT[/udp],...` is the one way in: a flow to the gateway
// (10.0.2.2 → 127.0.0.1, fd00::2 → ::1) on a listed port is connected to the host's loopback, and
// audited like any other flow.
import { TapboxError } from '../../errors.js';
import { onFirstUse, parseIp, parseSubnet, subnetContains } from '../policy/address.js';
import type { Proto } from '../policy/rule.js';

export interface HostLoopbackPort {
  proto: Proto;
  port: number;
}

/** Parses the values of `--host-loopback` ("8080", "5432,6379", "53/udp"); throws EUSAGE with the fix. */
export function parseHostLoopback(values: readonly (string | number)[]): HostLoopbackPort[] {
  const out: HostLoopbackPort[] = [];
  for (const value of values) {
    for (const item of String(value).split(',')) {
      const m = /^\s*(\d{1,5})(?:\/(tcp|udp))?\s*$/.exec(item);
      const port = m ? Number(m[1]) : NaN;
      if (!m || port < 1 || port > 65535) {
        throw new TapboxError('EUSAGE', `--host-loopback "${item}" is not a port; give ports from 1 to 65535 separated by commas, with /udp for UDP, e.g. --host-loopback 8080,53/udp.`);
      }
      const proto = (m[2] ?? 'tcp') as Proto;
      if (!out.some((p) => p.port === port && p.proto === proto)) out.push({ proto, port });
    }
  }
  return out;
}

const internalSubnets = onFirstUse(() => ['127.0.0.0/8', '0.0.0.0/8', '::1/128', '::/128'].map((s) => parseSubnet(s)!));

/** Does `addr` mean the host itself when a host socket connects to it (loopback or unspecified)? */
export function isHostInternal(addr: string): boolean {
  const ip = parseIp(addr); // maps ::ffff:a.b.c.d to IPv4
  return ip !== null && internalSubnets().some((s) => subnetContains(s, ip));
}

/** The host loopback address a flow to the gateway of `family` goes to. */
export function hostLoopbackFor(family: 4 | 6): string {
  return family === 4 ? '127.0.0.1' : '::1';
}
