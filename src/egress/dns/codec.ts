// dns-packet, loaded with the first DNS message instead of with the egress side: it is one of the
// slowest modules of a --net tap run to load, and a run that never looks a name up never needs it
// (start-up, docs/architecture.md).
import { createRequire } from 'node:module';
import type DnsPacket from 'dns-packet';

let codec: typeof DnsPacket | undefined;

/** The dns-packet module. */
export const dnsCodec = (): typeof DnsPacket => (codec ??= createRequire(import.meta.url)('dns-packet') as typeof DnsPacket);
