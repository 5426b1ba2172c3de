// What the supervisor asks of the launcher for the TAP: the offloads (--vnet-hdr) at every MTU, where
// they measured a gain (netstack/link/tap.ts), never under link faults.
import { describe, expect, it } from 'vitest';
import { launcherArgs } from '../../src/supervisor/launcher.js';
import { resolveOptions } from '../../src/options/options.js';

function args(options: Parameters<typeof resolveOptions>[0]): string[] {
  const all = launcherArgs(resolveOptions(options), ['true']);
  return all.slice(0, all.indexOf('--'));
}

describe('launcher arguments for the TAP offloads', () => {
  it('asks for --vnet-hdr at every MTU, the default (65520) included', () => {
    expect(args({ net: 'tap', mtu: 1500 })).toContain('--vnet-hdr');
    expect(args({ net: 'tap', mtu: 9000 })).toContain('--vnet-hdr');
    expect(args({ net: 'tap' })).toContain('--vnet-hdr');
    expect(args({ net: 'tap', mtu: 65520 })).toContain('--vnet-hdr');
  });

  it('not under link faults (corrupted frames must fail their checksums), nor without a TAP', () => {
    expect(args({ net: 'tap', mtu: 1500, linkFaults: { inbound: { corrupt: 0.01 } } })).not.toContain('--vnet-hdr');
    expect(args({ net: 'none', mtu: 1500 })).not.toContain('--vnet-hdr');
  });
});
